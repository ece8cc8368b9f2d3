"""Forward + backward time of each keras_dml loss, eager / graph / XLA, beside the peers.

Workload (`bench.common.loss_batch`, the same for the peers in `bench/peers.py`): L2-normalised 512-d embeddings, 64
classes with batch/64 samples each; the step is the loss and its gradient with respect
to the embeddings, no network. Median of repeated runs.

    python bench/losses.py --batches 256 1024 \
        --pml-python /path/to/peer-pml/bin/python --tfsim-python /path/to/peer-tfsim/bin/python
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import loss_batch, machine, median_seconds, run_peer  # noqa: E402
from keras_dml import losses  # noqa: E402

CASES = {
    "triplet_easy_semihard": lambda: losses.TripletLoss(margin=0.2, positive="easy", negative="semihard"),
    "triplet_all": lambda: losses.TripletLoss(margin=0.2),
    "contrastive_all": lambda: losses.ContrastiveLoss(pos_margin=0.0, neg_margin=0.5),
    "npair_all": lambda: losses.NPairLoss(),
    "multisimilarity": lambda: losses.MultiSimilarityLoss(),
    "circle": lambda: losses.CircleLoss(),
    "supcon": lambda: losses.SupConLoss(),
    "ntxent": lambda: losses.NTXentLoss(),
    "lifted": lambda: losses.LiftedStructureLoss(),
    "generalized_lifted": lambda: losses.GeneralizedLiftedStructureLoss(),
    "margin": lambda: losses.MarginLoss(learn_beta=False),
    "fastap": lambda: losses.FastAPLoss(),
    "multiple_triplet_circle": lambda: losses.MultipleLosses(
        [losses.TripletLoss(margin=0.2, positive="easy", negative="semihard"), losses.CircleLoss()]),
    "memory_circle_4096": lambda: losses.CrossBatchMemory(losses.CircleLoss(), memory_size=4096),
}


def time_loss(loss, x, y, mode, repeats):
    emb, labels = tf.Variable(x), tf.constant(y)

    def step():
        with tf.GradientTape() as tape:
            value = loss(labels, emb)
        return tape.gradient(value, emb)

    if mode != "eager":
        step = tf.function(step, jit_compile=(mode == "xla"))
    return 1000 * median_seconds(lambda: step().numpy(), repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="*", default=[256, 1024])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--modes", nargs="*", default=["eager", "graph", "xla"], choices=["eager", "graph", "xla"])
    parser.add_argument("--pml-python", help="interpreter of a venv with pytorch-metric-learning (bench/peers.py header)")
    parser.add_argument("--tfsim-python", help="interpreter of a venv with tensorflow-similarity (bench/peers.py header)")
    args = parser.parse_args()

    print(f"machine: {machine()}; TF {tf.__version__}, {tf.config.threading.get_intra_op_parallelism_threads() or 'default'} intra-op threads")
    print(f"sizes: batch {args.batches}, dim 512, 64 classes; forward+backward of the loss alone, median of {args.repeats}")
    ours = {}
    for n in args.batches:
        x, y = loss_batch(n)
        for name in args.cases:
            for mode in args.modes:
                ours[f"{name}/{mode}@{n}"] = time_loss(CASES[name](), x, y, mode, args.repeats)
                print(f"  keras_dml {name:<24} {mode:<5} batch {n:>5}: {ours[f'{name}/{mode}@{n}']:8.2f} ms", flush=True)

    peer_args = ["--batches", *map(str, args.batches), "--eval-sizes", "--repeats", str(args.repeats)]
    pml = {"loss_ms": {}}
    for name in args.cases:  # one process a case: a case the peer cannot run (memory) costs only itself
        result = run_peer(args.pml_python, "pml", [*peer_args, "--cases", name])
        pml["loss_ms"].update((result or {}).get("loss_ms", {}))
    tfsim = run_peer(args.tfsim_python, "tfsim", peer_args)
    print("\nside by side (ms; ratio = keras_dml XLA / peer):")
    print(f"{'case':<26}{'batch':>6}{'keras_dml xla':>15}{'pml':>10}{'ratio':>8}{'tfsim':>10}{'tfsim xla':>11}")
    for n in args.batches:
        for name in args.cases:
            mine = ours.get(f"{name}/xla@{n}", float("nan"))
            peer = (pml or {}).get("loss_ms", {}).get(f"{name}@{n}")
            sim = (tfsim or {}).get("loss_ms", {})
            ratio = f"{mine / peer:.2f}" if isinstance(peer, (int, float)) else "-"
            print(f"{name:<26}{n:>6}{mine:>15.2f}{peer if peer is not None else '-':>10}{ratio:>8}"
                  f"{sim.get(f'{name}@{n}', '-'):>10}{sim.get(f'{name}_xla@{n}', '-'):>11}")


if __name__ == "__main__":
    main()
