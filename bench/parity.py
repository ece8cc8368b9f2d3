"""keras_dml's losses against pytorch-metric-learning's: value and gradient, case by case.

Each case computes the same quantity in both libraries on `bench.common.parity_batch()`
(128 Gaussian rows, 32-d, 8 classes of 16; both libraries normalise): keras_dml in
float32 under TensorFlow, the peer in float64 (`bench/peers.py pml --parity`). A case
passes when the value agrees to 1e-4 (relative, or absolute below 1) and the gradient
with respect to the embeddings to 1e-4 of its largest entry.

    python bench/parity.py --pml-python /path/to/peer-pml/bin/python
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import PARITY_MEMORY_SIZE, PARITY_MEMORY_STEPS, parity_batch, run_peer  # noqa: E402
from keras_dml import losses  # noqa: E402

TOLERANCE = 1e-4

# keras_dml's side of each case of bench/peers.py `pml_parity_cases`, by the same name.
CASES = {
    "triplet@margin0.2-mean": lambda: losses.TripletLoss(margin=0.2),
    "triplet@cosine-margin0.1-mean": lambda: losses.TripletLoss(margin=0.1, distance="cosine"),
    "multisimilarity@defaults+miner": lambda: losses.MultiSimilarityLoss(),
    "multisimilarity@no-mining-alpha1-beta10": lambda: losses.MultiSimilarityLoss(alpha=1.0, beta=10.0, base=0.3,
                                                                                  epsilon=10.0),
    "circle@defaults": lambda: losses.CircleLoss(),
    "circle@m0.25-gamma256": lambda: losses.CircleLoss(m=0.25, gamma=256.0),
    "supcon@defaults": lambda: losses.SupConLoss(),
    "supcon@temperature0.5": lambda: losses.SupConLoss(temperature=0.5),
    "ntxent@defaults": lambda: losses.NTXentLoss(),
    "ntxent@temperature0.2": lambda: losses.NTXentLoss(temperature=0.2),
    "lifted@defaults": lambda: losses.LiftedStructureLoss(),
    "lifted@neg0.5-pos0.1": lambda: losses.LiftedStructureLoss(neg_margin=0.5, pos_margin=0.1),
    "generalized_lifted@defaults": lambda: losses.GeneralizedLiftedStructureLoss(),
    "generalized_lifted@neg0.5-pos0.1": lambda: losses.GeneralizedLiftedStructureLoss(neg_margin=0.5, pos_margin=0.1),
    "margin@defaults": lambda: losses.MarginLoss(learn_beta=False),
    "margin@learn-beta-nu0.1-margin0.1": lambda: losses.MarginLoss(margin=0.1, nu=0.1, learn_beta=True),
    "fastap@defaults": lambda: losses.FastAPLoss(),
    "fastap@bins20": lambda: losses.FastAPLoss(num_bins=20),
}
MEMORY_CASES = {
    "memory_circle": lambda: losses.CircleLoss(),
    "memory_multisimilarity": lambda: losses.MultiSimilarityLoss(epsilon=10.0),  # PML's memory case has no miner
}


def value_and_grad(loss, x, y):
    embeddings = tf.Variable(x)
    with tf.GradientTape() as tape:
        value = loss(tf.constant(y), embeddings)
    return float(value), tape.gradient(value, embeddings).numpy()


def ours():
    x, y = parity_batch()
    results = {name: value_and_grad(make(), x, y) for name, make in CASES.items()}
    for name, make in MEMORY_CASES.items():
        memory = losses.CrossBatchMemory(make(), memory_size=PARITY_MEMORY_SIZE)
        for step in range(PARITY_MEMORY_STEPS):
            result = value_and_grad(memory, *parity_batch(seed=step))
        results[f"{name}@step{PARITY_MEMORY_STEPS}"] = result
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pml-python", required=True, help="interpreter of a venv with pytorch-metric-learning")
    args = parser.parse_args()
    peer = run_peer(args.pml_python, "pml", ["--parity"])
    if peer is None:
        sys.exit("the peer did not run")
    print(f"keras_dml (float32, TF {tf.__version__}) vs {peer['peer']} (float64) on bench.common.parity_batch()")
    print(f"{'case':<44}{'keras_dml':>14}{'pml':>14}{'value diff':>12}{'grad diff':>11}  result")
    failures = 0
    for name, (value, grad) in ours().items():
        theirs = peer["parity"][name]
        peer_grad = np.asarray(theirs["grad"])
        value_diff = abs(value - theirs["value"]) / max(1.0, abs(theirs["value"]))
        grad_diff = np.abs(grad - peer_grad).max() / max(np.abs(peer_grad).max(), 1e-12)
        ok = value_diff <= TOLERANCE and grad_diff <= TOLERANCE
        failures += not ok
        print(f"{name:<44}{value:>14.6f}{theirs['value']:>14.6f}{value_diff:>12.1e}{grad_diff:>11.1e}  "
              f"{'ok' if ok else 'DIFFERS'}")
    print(f"{len(CASES) + len(MEMORY_CASES) - failures} of {len(CASES) + len(MEMORY_CASES)} cases agree to {TOLERANCE}")


if __name__ == "__main__":
    main()
