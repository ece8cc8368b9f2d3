"""Re-ranking search results with a learned pair scorer such as a trained `PDDM` unit.

A plain k-NN search ranks candidates by one global distance; a PDDM unit scores each
(query, candidate) pair from its difference and its position, so it can re-order the
nearest candidates (docs/methods.md section 6). Any callable `scorer(a, b) -> scores` on
`(..., D)` pairs, higher = more similar, is a scorer; a `PDDM` layer is one.

Example:

>>> import numpy as np
>>> from keras_dml.layers.pddm import PDDM
>>> from keras_dml.search.rerank import rerank
>>> rng = np.random.default_rng(0)
>>> queries = rng.normal(size=(2, 4)).astype("float32")
>>> candidates = rng.normal(size=(2, 3, 4)).astype("float32")
>>> ids, scores = rerank(PDDM(), queries, candidates, np.array([[7, 8, 9], [4, 5, 6]]))
>>> ids.shape, bool(np.all(np.diff(scores, axis=1) <= 0))
((2, 3), True)
"""
import keras
import numpy as np

from keras_dml.search import inputs


def rerank(scorer, query_embeddings, candidate_embeddings, candidate_ids):
    """Each query's candidates re-ordered by score, highest first (ties keep their order).

    Args:
        scorer: `scorer(a, b) -> (...)` on `(..., D)` pairs, higher = more similar (e.g. a
            trained `keras_dml.layers.PDDM`); a non-finite score is a ValueError.
        query_embeddings: `(q, D)`.
        candidate_embeddings: `(q, c, D)`, the nearest candidates of each query.
        candidate_ids: `(q, c)`, their ids.

    Returns:
        `(ids (q, c), scores (q, c))`, both re-ordered.
    """
    queries = inputs.check_embeddings(query_embeddings, "query_embeddings").astype(np.float32, copy=False)
    candidates = np.asarray(candidate_embeddings, np.float32)  # a scorer is a float32 model
    ids = np.asarray(candidate_ids)
    if candidates.ndim != 3 or candidates.shape[0] != len(queries) or candidates.shape[2] != queries.shape[1]:
        raise ValueError(
            f"candidate_embeddings must have shape (num_queries, k, dim) = ({len(queries)}, k, {queries.shape[1]}); "
            f"got shape {candidates.shape}."
        )
    if ids.shape != candidates.shape[:2]:
        raise ValueError(f"candidate_ids must have shape {candidates.shape[:2]}; got shape {ids.shape}.")
    pairs = np.broadcast_to(queries[:, None, :], candidates.shape)
    scores = keras.ops.convert_to_numpy(scorer(pairs, candidates)).astype(np.float32)
    if scores.shape != ids.shape:
        raise ValueError(f"the scorer must return scores of shape {ids.shape}; got {scores.shape}.")
    if not np.all(np.isfinite(scores)):
        raise ValueError("the scorer returned NaN or inf scores; re-ranking needs finite scores.")
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
