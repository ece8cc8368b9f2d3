"""Retrieval metrics of the deep-metric-learning protocol (METHODS.md section 6).

Every sample is a query; the gallery is the same set without the query itself. For a
query whose class has `R` other samples:

- Recall@K: 1 if any of its K nearest neighbours shares its label (the DML convention).
- R-Precision: correct items among the top R, divided by R.
- MAP@R: `(1/R) sum_{i<=R} P(i) rel(i)`, with `P(i)` the precision at rank i.

Queries with `R = 0` are skipped and counted. Ties in distance go to the lower gallery
index. The distance matrix is never held whole: queries are processed in chunks.

Example:

>>> import numpy as np
>>> from keras_dml.evaluation import retrieval_metrics
>>> x = np.array([[0.0, 1.0], [0.0, 0.9], [1.0, 0.0], [0.9, 0.0]], "float32")
>>> retrieval_metrics(x, np.array([0, 0, 1, 1]), k=(1,))["recall@1"]
1.0
"""
import numpy as np


def _check(embeddings, labels, k):
    embeddings = np.asarray(embeddings, dtype="float32")
    labels = np.asarray(labels).reshape(-1)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must have shape (n, dim); got {embeddings.shape}.")
    if len(labels) != len(embeddings):
        raise ValueError(f"labels has {len(labels)} entries but embeddings has {len(embeddings)} rows.")
    if len(embeddings) < 2:
        raise ValueError(f"retrieval metrics need at least 2 samples; got {len(embeddings)}.")
    if not np.all(np.isfinite(embeddings)):
        raise ValueError("embeddings contains NaN or inf values.")
    ks = tuple(int(v) for v in k)
    if any(v < 1 or v > len(embeddings) - 1 for v in ks):
        raise ValueError(f"every k must be in [1, {len(embeddings) - 1}] (the gallery size); got k={ks}.")
    return embeddings, labels, ks


def retrieval_metrics(embeddings, labels, k=(1, 2, 4, 8), chunk_size=1024):
    """Recall@K, R-Precision and MAP@R of a labelled set of embeddings.

    Returns a dict with `recall@K` for each K, `r_precision`, `map_at_r`, and
    `num_queries` / `skipped_queries` (queries whose class has no other sample).
    """
    embeddings, labels, ks = _check(embeddings, labels, k)
    n = len(embeddings)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    relevant = counts[inverse] - 1
    depth = min(n - 1, max(max(ks), int(relevant.max())))
    squared_norms = np.einsum("ij,ij->i", embeddings, embeddings)
    hits = {kk: [] for kk in ks}
    r_precision, map_at_r = [], []
    for start in range(0, n, chunk_size):
        rows = np.arange(start, min(start + chunk_size, n))
        dist = squared_norms[rows, None] + squared_norms[None, :] - 2.0 * embeddings[rows] @ embeddings.T
        dist[np.arange(len(rows)), rows] = np.inf
        top = np.argpartition(dist, depth - 1, axis=1)[:, :depth] if depth < n - 1 else np.argsort(dist, axis=1)[:, :depth]
        top_dist = np.take_along_axis(dist, top, axis=1)
        order = np.lexsort((top, top_dist), axis=1)
        neighbours = np.take_along_axis(top, order, axis=1)
        correct = labels[neighbours] == labels[rows, None]
        r = relevant[rows]
        keep = r > 0
        for kk in ks:
            hits[kk].append(correct[keep, :kk].any(axis=1))
        ranks = np.arange(1, depth + 1)
        within_r = ranks[None, :] <= r[:, None]
        correct_r = correct & within_r
        precision_at_i = np.cumsum(correct_r, axis=1) / ranks[None, :]
        r_safe = np.maximum(r, 1)
        r_precision.append((correct_r.sum(axis=1) / r_safe)[keep])
        map_at_r.append(((precision_at_i * correct_r).sum(axis=1) / r_safe)[keep])
    result = {f"recall@{kk}": float(np.concatenate(hits[kk]).mean()) for kk in ks}
    result["r_precision"] = float(np.concatenate(r_precision).mean())
    result["map_at_r"] = float(np.concatenate(map_at_r).mean())
    result["num_queries"] = int((relevant > 0).sum())
    result["skipped_queries"] = int((relevant == 0).sum())
    return result
