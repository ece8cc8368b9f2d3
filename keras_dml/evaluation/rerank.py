"""Re-ranking search results with a learned pair scorer such as a trained `PDDM` unit.

A plain k-NN search ranks candidates by one global distance; a PDDM unit scores each
(query, candidate) pair from its difference and its position, so it can re-order the
nearest `top_k` candidates (docs/methods.md section 6). A `PDDM` layer is itself a valid
scorer for `keras_dml.index.Index.search(..., rerank=pddm)`.

Example:

>>> import numpy as np
>>> from keras_dml.layers.pddm import PDDM
>>> from keras_dml.evaluation.rerank import rerank
>>> rng = np.random.default_rng(0)
>>> queries = rng.normal(size=(2, 4)).astype("float32")
>>> candidates = rng.normal(size=(2, 3, 4)).astype("float32")
>>> ids, scores = rerank(PDDM(), queries, candidates, np.array([[7, 8, 9], [4, 5, 6]]))
>>> ids.shape, bool(np.all(np.diff(scores, axis=1) <= 0))
((2, 3), True)
"""
import keras
import numpy as np

from keras_dml.evaluation import knn, metrics


def rerank(pddm, query_embeddings, candidate_embeddings, candidate_ids):
    """Each query's candidates re-ordered by score, highest first (ties keep their order).

    Args:
        pddm: a scorer `pddm(a, b) -> (...)` on `(..., D)` pairs, higher = more similar
            (e.g. a trained `keras_dml.layers.PDDM`).
        query_embeddings: `(q, D)`.
        candidate_embeddings: `(q, k, D)`, the top-k candidates of each query.
        candidate_ids: `(q, k)`, their ids.

    Returns:
        `(ids (q, k), scores (q, k))`, both re-ordered.
    """
    queries = knn.check_embeddings(query_embeddings, "query_embeddings")
    candidates = np.asarray(candidate_embeddings, np.float32)
    ids = np.asarray(candidate_ids)
    if candidates.ndim != 3 or candidates.shape[0] != len(queries) or candidates.shape[2] != queries.shape[1]:
        raise ValueError(
            f"candidate_embeddings must have shape (num_queries, k, dim) = ({len(queries)}, k, {queries.shape[1]}); "
            f"got shape {candidates.shape}."
        )
    if ids.shape != candidates.shape[:2]:
        raise ValueError(f"candidate_ids must have shape {candidates.shape[:2]}; got shape {ids.shape}.")
    pairs = np.broadcast_to(queries[:, None, :], candidates.shape)
    scores = keras.ops.convert_to_numpy(pddm(pairs, candidates)).astype(np.float32)
    if scores.shape != ids.shape:
        raise ValueError(f"the scorer must return scores of shape {ids.shape}; got {scores.shape}.")
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)


def retrieval_metrics_reranked(embeddings, labels, pddm, top_k=10, k=(1, 2, 4, 8), distance="euclidean",
                               chunk_size=1024):
    """Recall@K after re-ranking each query's `top_k` nearest neighbours with `pddm`.

    The same protocol as `keras_dml.evaluation.retrieval_metrics` (every sample a query
    against all others, exact search by `distance`, queries whose class has no other
    sample skipped), with each query's `top_k` nearest neighbours re-ordered by
    `rerank`. Every K must be at most `top_k`: beyond it the order is unchanged.

    Returns:
        A dict with `"recall@K"` for each K, `"num_queries"` and `"skipped_queries"`.
    """
    distance = knn.check_distance(distance)
    x = knn.prepare(knn.check_embeddings(embeddings, "embeddings"), distance)
    labels = knn.check_column(labels, len(x), "labels")
    if int(top_k) != top_k or not 1 <= top_k <= len(x) - 1:
        raise ValueError(f"top_k must be an integer in [1, {len(x) - 1}] (the gallery size); got {top_k!r}.")
    ks = metrics.check_ks(k, len(x) - 1)
    if ks[-1] > top_k:
        raise ValueError(f"every k must be at most top_k={top_k} (only the top_k are re-ranked); got k={ks}.")
    _, codes = np.unique(labels, return_inverse=True)
    counted = np.bincount(codes)[codes] > 1
    if not counted.any():
        raise ValueError("no query has another sample of its class, so Recall@K is undefined; check labels.")
    hits = {K: np.zeros(len(x), bool) for K in ks}
    for start, stop, ids, _ in knn.neighbor_chunks(x, None, int(top_k), distance, chunk_size):
        ids, _ = rerank(pddm, x[start:stop], x[ids], ids)
        correct = codes[ids] == codes[start:stop, None]
        for K in ks:
            hits[K][start:stop] = correct[:, :K].any(axis=1)
    result = {f"recall@{K}": float(hits[K][counted].mean()) for K in ks}
    result.update(num_queries=int(counted.sum()), skipped_queries=int((~counted).sum()))
    return result
