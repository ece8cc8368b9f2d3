"""Retrieval metrics of the deep-metric-learning protocol (docs/methods.md section 7).

Every sample is a query; the gallery is the same set without the query itself (or,
with `gallery_embeddings=`, a separate set, as In-Shop-style benchmarks need). For a
query whose class has `R` other samples in the gallery:

- Recall@K: 1 if any of its K nearest neighbours shares its label (the DML convention,
  not IR recall); Precision@1 = Recall@1.
- R-Precision: correct items among the top R, divided by R.
- MAP@R: `(1/R) sum_{i<=R} P(i) rel(i)`, with `P(i)` the precision at rank i.
- NMI (`nmi=True`): k-means (scikit-learn, seeded) on the query embeddings with k the
  number of classes, scored against the labels.

Queries with `R = 0` are skipped and counted. Ranking (`keras_dml.search.ExactSearch`):

- default: by float32 keys of the rows centred on the gallery mean and scaled by a power
  of two, ties (equal float32 keys) to the lower gallery index. Any offset is searched
  accurately and scaling the data by a power of two changes nothing, but two neighbours
  whose distances differ by less than float32 rounding may come in either order, so on
  data with exact ties (integer grids) a scale such as 0.1 can change the metrics;
- `exact=True`: the metrics of the ranking by the exact distances of the embeddings as
  given, ties to the lower index, at every scale. The search certifies what the metrics
  read, which of each query's neighbours share its label (near-tied neighbours that all
  share it, or all do not, give the same metrics in any order); it costs 1.2x to 1.6x
  the CPU time (docs/evaluation.md).

It runs in chunks, so memory stays bounded: no N x N matrix is ever held.

Example:

>>> import numpy as np
>>> from keras_dml.evaluation import retrieval_metrics
>>> x = np.array([[0.0, 1.0], [0.0, 0.9], [1.0, 0.0], [0.9, 0.0]], "float32")
>>> retrieval_metrics(x, np.array([0, 0, 1, 1]), k=(1,))["recall@1"]
1.0
"""
import numpy as np

from keras_dml.evaluation.rerank import retrieval_metrics_reranked
from keras_dml.search import ExactSearch, inputs
from keras_dml.search.keys import unit_rows


def _per_query(correct, relevant, ks):
    """Recall@K hits, R-Precision and MAP@R of each query from its ranked `correct` flags."""
    ranks = np.arange(1, correct.shape[1] + 1)
    in_top_r = correct & (ranks[None, :] <= relevant[:, None])
    r_safe = np.maximum(relevant, 1)
    precision_at_i = np.cumsum(in_top_r, axis=1) / ranks[None, :]
    values = {f"recall@{k}": correct[:, :k].any(axis=1) for k in ks}
    values["r_precision"] = in_top_r.sum(axis=1) / r_safe
    values["map_at_r"] = (precision_at_i * in_top_r).sum(axis=1) / r_safe
    return values


def _nmi(x, labels, seed):
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    classes = len(np.unique(labels))
    if classes < 2:
        raise ValueError("nmi=True needs labels with at least 2 classes.")
    clusters = KMeans(n_clusters=classes, n_init=1, random_state=seed).fit_predict(x)
    return float(normalized_mutual_info_score(labels, clusters))


def retrieval_metrics(
    embeddings,
    labels,
    k=(1, 2, 4, 8),
    distance="euclidean",
    gallery_embeddings=None,
    gallery_labels=None,
    nmi=False,
    per_class=False,
    chunk_size=1024,
    seed=0,
    rerank=None,
    rerank_depth=10,
    exact=False,
):
    """Recall@K, R-Precision and MAP@R (and optionally NMI) of labelled embeddings.

    Args:
        embeddings: `(n, D)` query embeddings (also the gallery unless one is given).
        labels: `(n,)` labels (integers or strings: only equality is used).
        k: the K of each Recall@K (an int or a sequence of ints).
        distance: `"euclidean"` (default), `"squared_euclidean"`, `"cosine"` or `"dot"`.
        gallery_embeddings, gallery_labels: a separate gallery; the queries are then
            not left out of anything and `R` counts the gallery items of their class.
        nmi: also compute NMI with seeded k-means (scikit-learn).
        per_class: also return `"per_class"`: `{label: {metric: value}}`.
        chunk_size: rows per block of the search; results do not depend on it.
        seed: seed of the k-means behind NMI.
        rerank: optional pair scorer (e.g. a trained `keras_dml.layers.PDDM`): report
            Recall@K after re-ranking each query's `rerank_depth` nearest neighbours by
            its score (see `keras_dml.evaluation.retrieval_metrics_reranked`; Recall@K
            only, every K at most `rerank_depth`).
        rerank_depth: neighbours re-ranked per query.
        exact: rank by the exact distances, ties to the lower index, at every scale of
            the data (module docstring); default: by float32 keys, which can order
            near-ties differently.

    Returns:
        A dict with `"recall@K"` for each K, `"r_precision"`, `"map_at_r"`,
        `"num_queries"`, `"skipped_queries"` (queries whose class has no other sample
        in the gallery), plus `"nmi"` and `"per_class"` when asked for.
    """
    if rerank is not None:
        if gallery_embeddings is not None or nmi or per_class or exact:
            raise ValueError("rerank reports Recall@K on a single set, always certified: it does not "
                             "combine with a separate gallery, nmi, per_class or exact.")
        return retrieval_metrics_reranked(embeddings, labels, rerank, rerank_depth=rerank_depth, k=k,
                                          distance=distance, chunk_size=chunk_size)
    distance = inputs.check_distance(distance)
    queries = inputs.check_embeddings(embeddings, "embeddings")
    labels = inputs.check_column(labels, len(queries), "labels")
    if (gallery_embeddings is None) != (gallery_labels is None):
        raise ValueError("gallery_embeddings and gallery_labels must be given together.")
    if gallery_embeddings is None:
        if len(queries) < 2:
            raise ValueError(f"retrieval metrics need at least 2 samples; got {len(queries)}.")
        gallery, gallery_labels = None, labels
        search = ExactSearch(queries, distance, chunk_size, name="embeddings")
    else:
        gallery = inputs.check_embeddings(gallery_embeddings, "gallery_embeddings")
        gallery_labels = inputs.check_column(
            gallery_labels, len(gallery), "gallery_labels", "gallery_embeddings"
        )
        if len(queries) < 1 or len(gallery) < 1:
            raise ValueError("retrieval metrics need at least 1 query and 1 gallery sample.")
        inputs.check_same_dim(queries, gallery, ("embeddings", "gallery_embeddings"))
        search = ExactSearch(gallery, distance, chunk_size, name="gallery_embeddings")
    gallery_size = len(search) - (gallery is None)
    ks = inputs.check_ks(k, gallery_size)

    classes, codes = np.unique(np.concatenate([labels, gallery_labels]), return_inverse=True)
    query_codes, gallery_codes = codes[:len(labels)], codes[len(labels):]
    relevant = np.bincount(gallery_codes, minlength=len(classes))[query_codes]
    if gallery is None:
        relevant = relevant - 1
    counted = relevant > 0
    if not counted.any():
        raise ValueError(
            "no query has another sample of its class in the gallery, so every retrieval "
            "metric is undefined; check labels."
        )
    depth = min(gallery_size, max(ks[-1], int(relevant.max())))

    values = {}
    chunks = search.chunks(None if gallery is None else queries, depth, values=False,
                           labels=(query_codes, gallery_codes), certify=bool(exact))
    for start, stop, ids, _ in chunks:
        correct = gallery_codes[ids] == query_codes[start:stop, None]
        for name, chunk in _per_query(correct, relevant[start:stop], ks).items():
            values.setdefault(name, np.zeros(len(queries)))[start:stop] = chunk

    result = {name: float(v[counted].mean()) for name, v in values.items()}
    result["num_queries"] = int(counted.sum())
    result["skipped_queries"] = int((~counted).sum())
    if nmi:
        clustered = unit_rows(queries) if distance == "cosine" else queries
        result["nmi"] = _nmi(clustered, labels, seed)
    if per_class:
        result["per_class"] = _per_class(values, query_codes[counted], counted, classes)
    return result


def _per_class(values, codes, counted, classes):
    count = np.bincount(codes, minlength=len(classes))
    means = {name: np.bincount(codes, weights=v[counted], minlength=len(classes)) / np.maximum(count, 1)
             for name, v in values.items()}
    return {
        classes[c].item(): {"num_queries": int(count[c]), **{name: float(m[c]) for name, m in means.items()}}
        for c in np.flatnonzero(count)
    }
