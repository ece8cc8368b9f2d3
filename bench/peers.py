#!/usr/bin/env python3
"""The peers' side of the benchmarks: times a peer library on the workloads of `bench/common.py`.

Runs in the peer's own virtual environment (each conflicts with keras_dml's); it imports
only NumPy, the peer and `bench/common.py` (standard library at import), never keras_dml:

    pytorch-metric-learning 2.9:
        python3 -m venv /work/peers/pml
        /work/peers/pml/bin/pip install torch==2.13.0 pytorch-metric-learning==2.9.0 faiss-cpu numpy
    (pin a CPU build of torch: an unpinned `torch` can pull a CUDA build of several GB)
    tensorflow-similarity 0.17.1 (it trains only under legacy Keras 2):
        python3 -m venv /work/peers/tfsim
        /work/peers/tfsim/bin/pip install tensorflow-cpu tf-keras tensorflow-similarity==0.17.1 numpy

`bench/losses.py --pml-python ... --tfsim-python ...` and `bench/evaluation.py
--peer-python ...` call it (`bench.common.run_peer`); by hand:

    /work/peers/pml/bin/python bench/peers.py pml --batches 256 1024 --eval-sizes 10000 --json out.json

Loss step: forward and backward of the loss alone on `common.loss_batch(n)`, median of
`--repeats` runs after warm-up. Parity (`pml --parity`): the value and the gradient with
respect to the embeddings of each case of `pml_parity_cases` on `common.parity_batch()`,
which `bench/parity.py` compares with keras_dml's. Evaluation: Precision@1 (= Recall@1), R-Precision and
MAP@R on `common.eval_set(n)` with the query left out, one timed call.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench.common import (  # noqa: E402
    PARITY_MEMORY_SIZE, PARITY_MEMORY_STEPS, eval_set, loss_batch, median_seconds, parity_batch,
)


def pml_losses(batches, repeats, only=None):
    import torch
    from pytorch_metric_learning import losses, miners

    def cases(dim):
        return {
            "triplet_easy_semihard": (losses.TripletMarginLoss(margin=0.2),
                                      miners.BatchEasyHardMiner(pos_strategy="easy", neg_strategy="semihard")),
            "contrastive_all": (losses.ContrastiveLoss(pos_margin=0.0, neg_margin=0.5), None),
            "multisimilarity": (losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5), None),
            "proxy_anchor": (losses.ProxyAnchorLoss(num_classes=64, embedding_size=dim), None),
            "circle": (losses.CircleLoss(), None),
            "supcon": (losses.SupConLoss(), None),
            "ntxent": (losses.NTXentLoss(), None),
            "lifted": (losses.LiftedStructureLoss(), None),
            "generalized_lifted": (losses.GeneralizedLiftedStructureLoss(), None),
            "margin": (losses.MarginLoss(), None),
            "fastap": (losses.FastAPLoss(), None),
            "multiple_triplet_circle": (losses.MultipleLosses(
                [losses.TripletMarginLoss(margin=0.2), losses.CircleLoss()],
                miners=[miners.BatchEasyHardMiner(pos_strategy="easy", neg_strategy="semihard"), None]), None),
            "memory_circle_4096": (losses.CrossBatchMemory(losses.CircleLoss(), embedding_size=dim,
                                                           memory_size=4096), None),
        }

    times = {}
    for n in batches:
        x, y = loss_batch(n)
        embeddings = torch.from_numpy(x).requires_grad_(True)
        labels = torch.from_numpy(y.astype("int64"))
        for name, (loss, miner) in cases(x.shape[1]).items():
            if only and name not in only:
                continue

            def step():
                mined = miner(embeddings, labels) if miner is not None else None
                (loss(embeddings, labels, mined) if mined is not None else loss(embeddings, labels)).backward()
                embeddings.grad = None

            times[f"{name}@{n}"] = round(1000 * median_seconds(step, repeats), 2)
    return {"peer": f"pytorch-metric-learning (torch {torch.__version__})", "threads": torch.get_num_threads(),
            "loss_ms": times}


def pml_parity_cases():
    """pytorch-metric-learning's side of each parity case: `(loss, miner or None)` by case name.

    The names match `bench/parity.py`'s; `@defaults` is the peer's defaults, the other
    suffix one other setting.
    """
    from pytorch_metric_learning import distances, losses, miners, reducers

    mean = reducers.MeanReducer
    return {
        "triplet@margin0.2-mean": (losses.TripletMarginLoss(margin=0.2, reducer=mean()), None),
        "triplet@cosine-margin0.1-mean": (losses.TripletMarginLoss(margin=0.1, distance=distances.CosineSimilarity(),
                                                                   reducer=mean()), None),
        "multisimilarity@defaults+miner": (losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner()),
        "multisimilarity@no-mining-alpha1-beta10": (losses.MultiSimilarityLoss(alpha=1, beta=10, base=0.3), None),
        "circle@defaults": (losses.CircleLoss(), None),
        "circle@m0.25-gamma256": (losses.CircleLoss(m=0.25, gamma=256), None),
        "supcon@defaults": (losses.SupConLoss(), None),
        "supcon@temperature0.5": (losses.SupConLoss(temperature=0.5), None),
        "ntxent@defaults": (losses.NTXentLoss(), None),
        "ntxent@temperature0.2": (losses.NTXentLoss(temperature=0.2), None),
        "lifted@defaults": (losses.LiftedStructureLoss(), None),
        "lifted@neg0.5-pos0.1": (losses.LiftedStructureLoss(neg_margin=0.5, pos_margin=0.1), None),
        "generalized_lifted@defaults": (losses.GeneralizedLiftedStructureLoss(), None),
        "generalized_lifted@neg0.5-pos0.1": (losses.GeneralizedLiftedStructureLoss(neg_margin=0.5, pos_margin=0.1),
                                             None),
        "margin@defaults": (losses.MarginLoss(), None),
        "margin@learn-beta-nu0.1-margin0.1": (losses.MarginLoss(margin=0.1, nu=0.1, learn_beta=True), None),
        "fastap@defaults": (losses.FastAPLoss(), None),
        "fastap@bins20": (losses.FastAPLoss(num_bins=20), None),
    }


def pml_parity():
    """Value and gradient of each parity case, and of a cross-batch memory after a few steps."""
    import torch
    from pytorch_metric_learning import losses

    def value_and_grad(loss, miner, x, y):
        embeddings = torch.from_numpy(x.astype("float64")).requires_grad_(True)
        labels = torch.from_numpy(y.astype("int64"))
        value = loss(embeddings, labels, miner(embeddings, labels)) if miner else loss(embeddings, labels)
        value.backward()
        return {"value": float(value), "grad": embeddings.grad.numpy().tolist()}

    x, y = parity_batch()
    results = {name: value_and_grad(loss.double(), miner, x, y) for name, (loss, miner) in pml_parity_cases().items()}
    for name, inner in (("memory_circle", losses.CircleLoss()), ("memory_multisimilarity", losses.MultiSimilarityLoss())):
        memory = losses.CrossBatchMemory(inner, embedding_size=x.shape[1], memory_size=PARITY_MEMORY_SIZE).double()
        for step in range(PARITY_MEMORY_STEPS):
            xs, ys = parity_batch(seed=step)
            embeddings = torch.from_numpy(xs.astype("float64")).requires_grad_(True)
            value = memory(embeddings, torch.from_numpy(ys.astype("int64")))
            value.backward()
        results[f"{name}@step{PARITY_MEMORY_STEPS}"] = {"value": float(value), "grad": embeddings.grad.numpy().tolist()}
    return {"peer": f"pytorch-metric-learning (torch {torch.__version__})", "parity": results}


def pml_evaluation(sizes):
    import time

    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    results = {}
    for n in sizes:
        x, y = eval_set(n)
        calculator = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
                                        k="max_bin_count")
        start = time.perf_counter()
        values = calculator.get_accuracy(torch.from_numpy(x), torch.from_numpy(y), ref_includes_query=True)
        results[str(n)] = {"seconds": round(time.perf_counter() - start, 3),
                           **{key: round(float(value), 6) for key, value in values.items()}}
    return {"eval_s": results}


def tfsim_losses(batches, repeats):
    import tensorflow as tf
    from tensorflow_similarity.losses import MultiSimilarityLoss, TripletLoss

    cases = {
        "triplet_easy_semihard": lambda: TripletLoss(positive_mining_strategy="easy",
                                                     negative_mining_strategy="semi-hard", margin=0.2),
        "multisimilarity": MultiSimilarityLoss,
    }
    times = {}
    for n in batches:
        x, y = loss_batch(n)
        embeddings, labels = tf.Variable(x), tf.constant(y)
        for name, make in cases.items():
            loss = make()
            for jit in (False, True):
                @tf.function(jit_compile=jit)
                def step():
                    with tf.GradientTape() as tape:
                        value = tf.reduce_mean(loss(labels, embeddings))
                    return tape.gradient(value, embeddings)

                key = f"{name}{'_xla' if jit else ''}@{n}"
                try:
                    times[key] = round(1000 * median_seconds(lambda: step().numpy(), repeats), 2)
                except Exception as error:  # a peer that cannot compile is a result, not a crash
                    times[key] = f"failed: {type(error).__name__}"
    return {"peer": f"tensorflow-similarity (TF {tf.__version__})", "loss_ms": times}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=["pml", "tfsim"])
    parser.add_argument("--batches", type=int, nargs="*", default=[256, 1024])
    parser.add_argument("--eval-sizes", type=int, nargs="*", default=[10000, 30000])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cases", nargs="*", help="pml: time only these loss cases (default: all)")
    parser.add_argument("--parity", action="store_true", help="pml: values and gradients for bench/parity.py only")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.peer == "pml" and args.parity:
        result = pml_parity()
    elif args.peer == "pml":
        result = {**pml_losses(args.batches, args.repeats, args.cases), **pml_evaluation(args.eval_sizes)}
    else:
        result = tfsim_losses(args.batches, args.repeats)
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
