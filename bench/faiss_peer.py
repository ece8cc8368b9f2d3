#!/usr/bin/env python3
"""Runner for `bench/index.py`: times faiss `IndexFlatL2.search` on arrays saved as .npy.

Runs in the peer's own virtual environment (faiss-cpu and numpy only; keras_dml is not
imported):

    python3 -m venv /work/peers/faiss && /work/peers/faiss/bin/pip install faiss-cpu numpy
    /work/peers/faiss/bin/python bench/faiss_peer.py GALLERY.npy QUERIES.npy K REPEATS OUT_PREFIX

Writes `OUT_PREFIX.json` (`{"seconds": [...], "cpu_seconds": [...], "faiss": version,
"threads": n}`: wall and CPU time of each search after one warm-up, index built once)
and `OUT_PREFIX.ids.npy`.
"""
import json
import sys
import time

import faiss
import numpy as np


def main(gallery_path, queries_path, k, repeats, out_prefix):
    gallery, queries = np.load(gallery_path), np.load(queries_path)
    index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(gallery)
    _, ids = index.search(queries, int(k))  # warm-up
    seconds, cpu_seconds = [], []
    for _ in range(int(repeats)):
        start, cpu_start = time.perf_counter(), time.process_time()
        _, ids = index.search(queries, int(k))
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    np.save(out_prefix + ".ids.npy", ids.astype(np.int64))
    with open(out_prefix + ".json", "w") as f:
        json.dump({"seconds": seconds, "cpu_seconds": cpu_seconds, "faiss": faiss.__version__,
                   "threads": faiss.omp_get_max_threads()}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
