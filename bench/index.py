#!/usr/bin/env python3
"""`keras_dml.search.Index.search` (exact) side by side with faiss `IndexFlatL2`, in one run.

    python3 -m venv /work/peers/faiss && /work/peers/faiss/bin/pip install faiss-cpu numpy
    python bench/index.py --peer-python /work/peers/faiss/bin/python [--sizes 200000 1000000]

Workload: a gallery of N x 128 float32 standard normal rows and 2,000 queries of the same
law (seed 0), k = 10, euclidean. faiss runs in its own virtual environment through
`bench/faiss_peer.py` on the same arrays (saved to a temporary folder); each library's
index is built once and searched `--repeats` times after a warm-up, and the two take
turns for `--rounds` rounds so both see the same load. Reported: median wall seconds of
each, the ratio keras_dml / faiss, median CPU seconds, and the agreement of the ids (keras_dml's are exact, ties
by lower index; faiss ranks by its own float32 keys, so a near-tie may differ).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench.common import machine  # noqa: E402
from keras_dml.search import Index  # noqa: E402

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faiss_peer.py")


def workload(n, dim=128, num_queries=2000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim), dtype=np.float32), rng.standard_normal((num_queries, dim), dtype=np.float32)


def time_keras_dml(index, queries, k, repeats):
    ids, _ = index.search(queries, k)  # warm-up (builds the search form of the gallery)
    seconds, cpu_seconds = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        ids, _ = index.search(queries, k)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    return seconds, cpu_seconds, ids


def time_faiss(peer_python, folder, k, repeats):
    out = os.path.join(folder, "faiss")
    subprocess.run([peer_python, RUNNER, os.path.join(folder, "gallery.npy"), os.path.join(folder, "queries.npy"),
                    str(k), str(repeats), out], check=True)
    with open(out + ".json") as f:
        result = json.load(f)
    return result, np.load(out + ".ids.npy")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-python", required=True, help="python of the faiss virtual environment")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200000])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    for n in args.sizes:
        gallery, queries = workload(n)
        index = Index()
        index.add(gallery)
        ours, theirs, our_cpu, their_cpu = [], [], [], []
        with tempfile.TemporaryDirectory() as folder:
            np.save(os.path.join(folder, "gallery.npy"), gallery)
            np.save(os.path.join(folder, "queries.npy"), queries)
            for _ in range(args.rounds):
                seconds, cpu_seconds, ids = time_keras_dml(index, queries, args.k, args.repeats)
                ours, our_cpu = ours + seconds, our_cpu + cpu_seconds
                peer, peer_ids = time_faiss(args.peer_python, folder, args.k, args.repeats)
                theirs, their_cpu = theirs + peer["seconds"], their_cpu + peer["cpu_seconds"]
        mine, peer_median = statistics.median(ours), statistics.median(theirs)
        same_rows = float(np.mean(np.all(ids == peer_ids, axis=1)))
        same_sets = float(np.mean([set(a) == set(b) for a, b in zip(ids, peer_ids)]))
        print(f"gallery {n} x {gallery.shape[1]}, {len(queries)} queries, k={args.k}: "
              f"keras_dml {mine:.3f} s (min {min(ours):.3f}), faiss {peer['faiss']} IndexFlatL2 "
              f"({peer['threads']} threads) {peer_median:.3f} s (min {min(theirs):.3f}), "
              f"ratio {mine / peer_median:.2f}x; CPU seconds keras_dml {statistics.median(our_cpu):.2f}, "
              f"faiss {statistics.median(their_cpu):.2f} (faiss's threads spin while waiting); same ids {same_rows:.4f} of queries "
              f"(same sets {same_sets:.4f}); load average now {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
