#!/usr/bin/env python3
"""Time and peak memory of `keras_dml.evaluation.retrieval_metrics` at benchmark scale,
side by side with pytorch-metric-learning's `AccuracyCalculator` (faiss) on the same
embeddings, measured in the same run.

    python bench/evaluation.py --peer-python /path/to/peer-pml/bin/python \\
        [--sizes 10000 30000] [--sop]

Embeddings: `bench.common.eval_set` (N / 50 classes of 50, Gaussian centres plus noise
of scale 1.5, 512-d, L2-normalised, seed 0), so both libraries see identical arrays and
their P@1 / R-Precision / MAP@R must agree. They are stored class by class, which lets
the search tighten its bounds early; keras_dml is also timed once on the same set
shuffled (the peer's brute force does not depend on order). `--sop` adds keras_dml alone at SOP's test
size (60,502 points in 11,316 classes) with Recall@1/10/100/1000. Each round also times
`retrieval_metrics(..., exact=True)` (the certified ranking, ties to the lower index at
every scale) right after the default, to give what certifying costs. Peak memory is the
largest allocation traced by `tracemalloc` during the call, beyond the embeddings. The
peer runs in its own virtual environment (see the header of `bench/peers.py`).
"""
import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench.common import eval_set, machine, run_peer  # noqa: E402
from keras_dml.evaluation import retrieval_metrics  # noqa: E402

PEER_NAMES = {"precision_at_1": "recall@1", "r_precision": "r_precision",
              "mean_average_precision_at_r": "map_at_r"}


def sop_like_set(n=60502, classes=11316, dim=512, seed=0):
    """SOP's test-set shape: 60,502 points in 11,316 classes of 2 to 12 (mostly ~5)."""
    rng = np.random.default_rng(seed)
    sizes = np.full(classes, 2)
    sizes += np.bincount(rng.choice(classes, n - sizes.sum()), minlength=classes)
    sizes = np.minimum(sizes, 12)
    y = np.repeat(np.arange(classes), sizes)
    y = np.concatenate([y, rng.choice(classes, n - len(y))])  # the few clipped away
    centres = rng.standard_normal((classes, dim)).astype("float32")
    x = centres[y] + 1.5 * rng.standard_normal((n, dim)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, y


def time_once(x, y, k, exact=False):
    start, cpu = time.perf_counter(), time.process_time()
    result = retrieval_metrics(x, y, k=k, exact=exact)
    return result, time.perf_counter() - start, time.process_time() - cpu


def peak_memory_mb(x, y, k):
    """Largest traced allocation during one call, beyond what existed before (the embeddings)."""
    tracemalloc.start()
    retrieval_metrics(x, y, k=k)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return peak


def pml_figures(python, n):
    """pytorch-metric-learning's figures for size `n`, from `bench/peers.py` in its own venv."""
    peer = run_peer(python, "pml", ["--batches", "--eval-sizes", str(n)])
    if peer is None:
        raise RuntimeError("the pytorch-metric-learning peer failed; see the message above.")
    return {"threads": peer["threads"], **peer["eval_s"][str(n)]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10000, 30000])
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per size; each times keras_dml once, then the peer once")
    parser.add_argument("--peer-python", help="python of the pytorch-metric-learning venv")
    parser.add_argument("--sop", action="store_true", help="also time SOP's test size, R@1/10/100/1000")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    report = {"machine": machine(), "load_before": os.getloadavg(), "sizes": {}}
    print(f"machine: {report['machine']}")
    for n in args.sizes:  # alternate the two libraries so both see the same load drift
        x, y = eval_set(n)
        row = {"keras_dml_runs": [], "pml_runs": [], "cpu_runs": [], "exact_runs": [], "exact_cpu_runs": []}
        for _ in range(args.rounds):
            result, seconds, cpu = time_once(x, y, (1,))
            row["keras_dml_runs"].append(seconds)
            row["cpu_runs"].append(cpu)
            exact, seconds, cpu = time_once(x, y, (1,), exact=True)
            row["exact_runs"].append(seconds)
            row["exact_cpu_runs"].append(cpu)
            row["exact_metrics_equal"] = all(exact[name] == result[name] for name in PEER_NAMES.values())
            if args.peer_python:
                row["pml_runs"].append(pml_figures(args.peer_python, n))
        # The workload is stored class by class; the same set shuffled shows what order costs.
        order = np.random.default_rng(1).permutation(n)
        row["keras_dml_shuffled_s"] = time_once(x[order], y[order], (1,))[1]
        row["exact_shuffled_s"] = time_once(x[order], y[order], (1,), exact=True)[1]
        row["keras_dml"] = {"seconds": statistics.median(row["keras_dml_runs"]),
                            "peak_mb": peak_memory_mb(x, y, (1,)), **result}
        if row["pml_runs"]:
            row["pml"] = {**row["pml_runs"][-1],
                          "seconds": statistics.median(r["seconds"] for r in row["pml_runs"])}
        report["sizes"][n] = row
    if args.sop:
        x, y = sop_like_set()
        result, seconds, _ = time_once(x, y, (1, 10, 100, 1000))
        report["sop"] = {"n": len(x), "classes": int(len(np.unique(y))), "seconds": seconds,
                         "peak_mb": peak_memory_mb(x, y, (1, 10, 100, 1000)),
                         "embeddings_mb": x.nbytes / 2**20, **result}
    report["load_after"] = os.getloadavg()

    print(f"\nretrieval metrics, D = 512, N / 50 classes; median of {args.rounds} alternating runs each; "
          f"load average after: {report['load_after'][0]:.2f}")
    print(f"{'N':>7} {'keras_dml s':>12} {'peak MiB':>8} {'PML s':>8} {'ratio':>6}   "
          f"{'P@1':>15} {'R-Precision':>15} {'MAP@R':>15}")
    for n, row in report["sizes"].items():
        ours, pml = row["keras_dml"], row.get("pml")
        theirs = f"{pml['seconds']:8.2f} {ours['seconds'] / pml['seconds']:6.2f}" if pml else f"{'-':>8} {'-':>6}"
        runs = " ".join(f"{t:.2f}" for t in row["keras_dml_runs"])
        if pml:
            runs += " | PML " + " ".join(f"{r['seconds']:.2f}" for r in row["pml_runs"])
        values = "".join(
            f" {ours[name]:.5f}/{pml[peer_name]:.5f}" if pml else f" {ours[name]:15.5f}"
            for peer_name, name in PEER_NAMES.items())
        print(f"{n:>7} {ours['seconds']:12.2f} {ours['peak_mb']:8.0f} {theirs}  {values}")
        print(f"{'':>7} runs (s): keras_dml {runs}")
        print(f"{'':>7} keras_dml on the same set shuffled: {row['keras_dml_shuffled_s']:.2f} s "
              f"(exact=True {row['exact_shuffled_s']:.2f} s)")
        median = statistics.median
        print(f"{'':>7} exact=True: median {median(row['exact_runs']):.2f} s, "
              f"{median(row['exact_runs']) / ours['seconds']:.2f}x the default; CPU s median "
              f"{median(row['exact_cpu_runs']):.2f} vs {median(row['cpu_runs']):.2f} "
              f"({median(row['exact_cpu_runs']) / median(row['cpu_runs']):.2f}x); metrics "
              f"{'equal' if row['exact_metrics_equal'] else 'differ'}")
        if pml:
            row["max_metric_difference"] = max(abs(ours[name] - pml[p]) for p, name in PEER_NAMES.items())
            print(f"{'':>7} keras_dml/PML metric values; largest difference {row['max_metric_difference']:.2e}")
    if args.sop:
        sop = report["sop"]
        print(f"\nSOP-sized: N = {sop['n']}, {sop['classes']} classes, R@1/10/100/1000 + MAP@R: "
              f"{sop['seconds']:.1f} s, peak {sop['peak_mb']:.0f} MiB beyond the {sop['embeddings_mb']:.0f} MiB "
              f"of embeddings; R@1 {sop['recall@1']:.4f}, R@1000 {sop['recall@1000']:.4f}, "
              f"MAP@R {sop['map_at_r']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
