"""Retrieval metrics after re-ranking each query's nearest neighbours with a pair scorer
such as a trained `PDDM` unit (docs/methods.md section 6). The re-ranking itself is
`keras_dml.search.rerank`, re-exported here.

Example:

>>> import numpy as np
>>> from keras_dml.evaluation.rerank import retrieval_metrics_reranked
>>> x = np.array([[0.0], [0.1], [1.0], [1.1]], "float32")
>>> closer = lambda a, b: -np.abs(a - b).sum(-1)
>>> retrieval_metrics_reranked(x, np.array([0, 0, 1, 1]), closer, rerank_depth=2, k=(1,))["recall@1"]
1.0
"""
import numpy as np

from keras_dml.search import ExactSearch, inputs
from keras_dml.search.keys import unit_rows
from keras_dml.search.rerank import rerank

__all__ = ["rerank", "retrieval_metrics_reranked"]


def retrieval_metrics_reranked(embeddings, labels, scorer, rerank_depth=10, k=(1, 2, 4, 8), distance="euclidean",
                               chunk_size=1024, top_k=None):
    """Recall@K after re-ranking each query's `rerank_depth` nearest neighbours with `scorer`.

    The same protocol as `keras_dml.evaluation.retrieval_metrics` (every sample a query
    against all others, exact search by `distance`, queries whose class has no other
    sample skipped), with each query's `rerank_depth` nearest neighbours re-ordered by
    `keras_dml.search.rerank`. Every K must be at most `rerank_depth`: beyond it the
    order is unchanged. `top_k` is the older name of `rerank_depth` (docs/pddm.md).

    Returns:
        A dict with `"recall@K"` for each K, `"num_queries"` and `"skipped_queries"`.
    """
    if top_k is not None:
        rerank_depth = top_k
    search = ExactSearch(embeddings, distance, chunk_size, name="embeddings")
    labels = inputs.check_column(labels, len(search), "labels")
    depth = inputs.check_k(rerank_depth, len(search) - 1, "rerank_depth")
    ks = inputs.check_ks(k, len(search) - 1)
    if ks[-1] > depth:
        raise ValueError(f"every k must be at most rerank_depth={depth} (only those are re-ranked); got k={ks}.")
    _, codes = np.unique(labels, return_inverse=True)
    counted = np.bincount(codes)[codes] > 1
    if not counted.any():
        raise ValueError("no query has another sample of its class, so Recall@K is undefined; check labels.")
    x = search.gallery
    if search.distance == "cosine":  # the scorer sees the rows the search compares
        x = unit_rows(x)
    hits = {K: np.zeros(len(x), bool) for K in ks}
    for start, stop, ids, _ in search.chunks(None, depth, values=False):
        ids, _ = rerank(scorer, x[start:stop], x[ids], ids)
        correct = codes[ids] == codes[start:stop, None]
        for K in ks:
            hits[K][start:stop] = correct[:, :K].any(axis=1)
    result = {f"recall@{K}": float(hits[K][counted].mean()) for K in ks}
    result.update(num_queries=int(counted.sum()), skipped_queries=int((~counted).sum()))
    return result
