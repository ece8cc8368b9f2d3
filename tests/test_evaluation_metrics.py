"""Retrieval metrics and exact k-NN against plain NumPy brute force (docs/methods.md section 7).

Most inputs are small integers (or dyadic unit vectors for cosine): every float32 sum is
then exact, so the chunked search must return *identical* neighbours, including the
many exact ties, which go to the lower gallery index.
"""
import numpy as np
import pytest

from keras_dml.evaluation import nearest_neighbors, retrieval_metrics
from keras_dml.search import exact, topk


def brute_force_neighbors(queries, gallery=None, distance="euclidean"):
    """Every gallery index of each query, closest first (stable sort: ties by index)."""
    q = np.asarray(queries, np.float64)
    g = q if gallery is None else np.asarray(gallery, np.float64)
    if distance in ("euclidean", "squared_euclidean"):
        d = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    elif distance == "cosine":
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        gn = g / np.linalg.norm(g, axis=1, keepdims=True)
        d = -(qn @ gn.T)
    else:
        d = -(q @ g.T)
    if gallery is None:
        np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")
    if gallery is None:
        order = order[:, :-1]  # the query itself, at +inf, comes last
    return order, np.take_along_axis(d, order, axis=1)


def exact_neighbors(x):
    """Every other index of each row, closest first, by squared distances in exact rational
    arithmetic (ties by index): the ranking of the values as given (small sets only)."""
    from fractions import Fraction

    rows = [[Fraction(v) for v in row] for row in np.asarray(x, np.float64).tolist()]
    order = []
    for i, q in enumerate(rows):
        keys = {j: sum((a - b) ** 2 for a, b in zip(q, y)) for j, y in enumerate(rows) if j != i}
        order.append(sorted(keys, key=lambda j: (keys[j], j)))
    return np.array(order), None


def reference_metrics(embeddings, labels, ks, gallery=None, gallery_labels=None, distance="euclidean",
                      neighbors=brute_force_neighbors):
    """Per-query loops over the brute-force ranking, straight from the definitions."""
    order, _ = brute_force_neighbors(embeddings, gallery, distance) if neighbors is brute_force_neighbors \
        else neighbors(embeddings)
    gallery_labels = labels if gallery is None else gallery_labels
    per_query = []
    for i, label in enumerate(labels):
        r = int((gallery_labels == label).sum()) - (1 if gallery is None else 0)
        if r == 0:
            continue
        rel = gallery_labels[order[i]] == label
        row = {f"recall@{k}": float(rel[:k].any()) for k in ks}
        row["r_precision"] = rel[:r].sum() / r
        row["map_at_r"] = sum(rel[:j + 1].sum() / (j + 1) for j in range(r) if rel[j]) / r
        row["label"] = label
        per_query.append(row)
    names = [f"recall@{k}" for k in ks] + ["r_precision", "map_at_r"]
    result = {name: np.mean([row[name] for row in per_query]) for name in names}
    result["num_queries"] = len(per_query)
    result["skipped_queries"] = len(labels) - len(per_query)
    per_class = {}
    for label in sorted({row["label"] for row in per_query}):
        rows = [row for row in per_query if row["label"] == label]
        per_class[label] = {"num_queries": len(rows), **{n: np.mean([r[n] for r in rows]) for n in names}}
    return result, per_class


def integer_set(n, dim, classes, high, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-high, high + 1, size=(n, dim)).astype("float32")
    return x, rng.integers(0, classes, size=n)


def dyadic_unit_vectors(n, dim, seed):
    """Unit vectors whose float32 normalisation and dot products are exact."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, dim), "float32")
    for row, nonzero in zip(x, rng.choice([v for v in (1, 4, 16) if v <= dim], size=n)):
        cols = rng.choice(dim, size=nonzero, replace=False)
        row[cols] = rng.choice([-1.0, 1.0], size=nonzero) / np.sqrt(nonzero)
    return x * rng.choice([1.0, 2.0, 0.25], size=(n, 1)).astype("float32")


def assert_metrics_equal(result, expected):
    for name, value in expected.items():
        np.testing.assert_allclose(result[name], value, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("high", [1, 3, 40])  # from massive ties to almost none
@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "dot"])
def test_neighbors_equal_brute_force(high, distance):
    x, _ = integer_set(150, 6, 5, high, seed=high)
    for chunk_size in (3, 16, 64, 1000):
        ids, values = nearest_neighbors(x, k=40, distance=distance, chunk_size=chunk_size)
        order, d = brute_force_neighbors(x, distance=distance)
        np.testing.assert_array_equal(ids, order[:, :40])
        expected = {"euclidean": np.sqrt, "squared_euclidean": np.asarray, "dot": np.negative}[distance]
        np.testing.assert_allclose(values, expected(d[:, :40]), rtol=1e-6)


def test_threads_do_not_change_results():
    x, _ = integer_set(400, 4, 3, 2, seed=13)
    q, _ = integer_set(50, 4, 3, 2, seed=14)
    for gallery in (None, x):
        one = nearest_neighbors(q if gallery is not None else x, gallery, k=30, chunk_size=32, threads=1)
        for threads in (2, 5):
            many = nearest_neighbors(q if gallery is not None else x, gallery, k=30, chunk_size=32,
                                     threads=threads)
            np.testing.assert_array_equal(many[0], one[0])
            np.testing.assert_array_equal(many[1], one[1])


def test_a_failing_block_raises_instead_of_hanging(monkeypatch):
    def broken(self, *args, **kwargs):
        raise MemoryError("no room for this block")

    monkeypatch.setattr(topk.RunningTopK, "push", broken)
    with pytest.raises(MemoryError, match="no room"):
        nearest_neighbors(np.eye(40, dtype="float32"), k=2, chunk_size=8, threads=3)


def test_separate_gallery_neighbors_equal_brute_force():
    x, _ = integer_set(120, 5, 4, 2, seed=1)
    q, _ = integer_set(33, 5, 4, 2, seed=2)
    order, _ = brute_force_neighbors(q, x)
    for chunk_size in (5, 32, 500):
        ids, _ = nearest_neighbors(q, x, k=120, chunk_size=chunk_size)
        np.testing.assert_array_equal(ids, order)


def test_cosine_neighbors_equal_brute_force():
    x = dyadic_unit_vectors(200, 16, seed=3)
    order, d = brute_force_neighbors(x, distance="cosine")
    for chunk_size in (9, 1024):
        ids, values = nearest_neighbors(x, k=30, distance="cosine", chunk_size=chunk_size)
        np.testing.assert_array_equal(ids, order[:, :30])
        np.testing.assert_allclose(values, -d[:, :30], atol=1e-6)


@pytest.mark.parametrize("high", [1, 5])
def test_metrics_equal_reference(high):
    x, y = integer_set(90, 4, 6, high, seed=10 + high)
    y[:3] = [100, 101, 102]  # three singleton classes: skipped and counted
    expected, expected_per_class = reference_metrics(x, y, (1, 2, 4, 8))
    result = retrieval_metrics(x, y, k=(1, 2, 4, 8), chunk_size=16, per_class=True)
    assert result["skipped_queries"] == 3
    assert_metrics_equal(result, expected)
    assert sorted(result["per_class"]) == sorted(expected_per_class)
    for label, values in expected_per_class.items():
        assert_metrics_equal(result["per_class"][label], values)


def test_metrics_at_several_chunks_and_chunk_size_invariance():
    x, y = integer_set(700, 8, 20, 2, seed=4)  # ~35 per class: depth 45, 12+ chunks
    expected, _ = reference_metrics(x, y, (1, 10))
    results = [retrieval_metrics(x, y, k=(1, 10), chunk_size=c) for c in (7, 60, 256, 700)]
    assert_metrics_equal(results[0], expected)
    for result in results[1:]:
        assert result == results[0]


def test_metrics_on_random_floats_agree_with_float64_reference():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(12, 32))
    y = rng.integers(0, 12, size=400)
    x = (centres[y] + 1.2 * rng.normal(size=(400, 32))).astype("float32")
    expected, _ = reference_metrics(x, y, (1, 4))
    result = retrieval_metrics(x, y, k=(1, 4), chunk_size=48)
    assert_metrics_equal(result, expected)
    assert 0.0 < result["map_at_r"] < 1.0


def test_cosine_metrics_equal_reference():
    x = dyadic_unit_vectors(160, 8, seed=6)
    y = np.random.default_rng(6).integers(0, 8, size=160)
    expected, _ = reference_metrics(x, y, (1, 3), distance="cosine")
    assert_metrics_equal(retrieval_metrics(x, y, k=(1, 3), distance="cosine", chunk_size=50), expected)


def test_separate_gallery_metrics_equal_reference():
    x, y = integer_set(80, 4, 5, 3, seed=7)
    q, qy = integer_set(30, 4, 6, 3, seed=8)  # class 5 is absent from the gallery
    expected, _ = reference_metrics(q, qy, (1, 5), gallery=x, gallery_labels=y)
    result = retrieval_metrics(q, qy, k=(1, 5), gallery_embeddings=x, gallery_labels=y, chunk_size=16)
    assert result["skipped_queries"] == int((qy == 5).sum()) > 0
    assert_metrics_equal(result, expected)


def test_exact_metrics_with_exact_ties_are_exact_at_every_scale():
    """Integer-grid data, scaled: with `exact=True` every result equals the exact ranking's
    (ties to the lower index); by default, scaling by a power of two changes nothing."""
    for seed in range(6):
        x, y = integer_set(28, 2 + seed % 2, 3, 2, seed=20 + seed)
        base = retrieval_metrics(x, y, k=(1, 2, 4), exact=True)
        assert_metrics_equal(base, reference_metrics(x, y, (1, 2, 4), neighbors=exact_neighbors)[0])
        assert retrieval_metrics(x, y, k=(1, 2, 4)) == base  # small integers: float32 keys are exact
        for scale in (0.1, 1e-30, 1e15, 2.0 ** -40, 2.0 ** 50):
            scaled = (x.astype(np.float64) * scale).astype("float32")
            result = retrieval_metrics(scaled, y, k=(1, 2, 4), exact=True)
            expected, _ = reference_metrics(scaled, y, (1, 2, 4), neighbors=exact_neighbors)
            assert_metrics_equal(result, expected)
            if np.log2(scale).is_integer():
                assert result == base == retrieval_metrics(scaled, y, k=(1, 2, 4))


def test_list_memory_fallback_gives_identical_results(monkeypatch):
    x, y = integer_set(300, 4, 3, 2, seed=9)  # R ~ 100: deep lists
    expected = retrieval_metrics(x, y, k=(1, 4), chunk_size=64)
    monkeypatch.setattr(exact, "_LIST_BUDGET_BYTES", 20_000)  # forces query chunks of a few rows
    assert retrieval_metrics(x, y, k=(1, 4), chunk_size=64) == expected
    assert_metrics_equal(expected, reference_metrics(x, y, (1, 4))[0])


def test_string_labels_and_column_labels():
    x, y = integer_set(60, 3, 4, 3, seed=11)
    result = retrieval_metrics(x, y, k=(1,))
    assert retrieval_metrics(x, y.astype(str), k=(1,)) == result
    assert retrieval_metrics(x, y[:, None], k=1) == result


def test_nmi_of_separated_clusters_is_one():
    rng = np.random.default_rng(12)
    y = np.repeat(np.arange(5), 20)
    x = (30.0 * np.eye(5, 8)[y] + rng.normal(scale=0.1, size=(100, 8))).astype("float32")
    result = retrieval_metrics(x, y, k=(1,), nmi=True)
    assert result["nmi"] == pytest.approx(1.0)
    assert result["recall@1"] == 1.0 and result["map_at_r"] == 1.0
    mixed = retrieval_metrics(x, rng.permutation(y), k=(1,), nmi=True)
    assert mixed["nmi"] < 0.3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(embeddings=np.zeros((1, 3)), labels=[0]), "at least 2 samples"),
        (dict(embeddings=np.zeros((4, 3)), labels=[0, 0, 1]), "labels has 3 entries"),
        (dict(embeddings=np.zeros((4, 3)), labels=[0, 0, 1, 1], k=(1, 4)), "k must be at most 3"),
        (dict(embeddings=np.zeros((4, 3)), labels=[0, 0, 1, 1], k=0), "k must be a positive integer"),
        (dict(embeddings=np.full((4, 3), np.nan), labels=[0, 0, 1, 1]), "NaN"),
        (dict(embeddings=np.zeros(4), labels=[0, 0, 1, 1]), "shape"),
        (dict(embeddings=np.zeros((4, 3)), labels=[0.5, 0, 1, 1]), "integers or strings"),
        (dict(embeddings=np.zeros((4, 3)), labels=[0, 1, 2, 3], k=1), "no query"),
        (dict(embeddings=np.zeros((4, 3)), labels=[0, 0, 1, 1], distance="manhattan"), "distance"),
        (dict(embeddings=np.zeros((4, 3)), labels=[0, 0, 1, 1], gallery_embeddings=np.zeros((3, 3))),
         "together"),
        (dict(embeddings=np.zeros((4, 3)), labels=[0, 0, 1, 1], gallery_embeddings=np.zeros((3, 2)),
              gallery_labels=[0, 1, 1]), "dimension"),
        (dict(embeddings=np.zeros((4, 3)), labels=[0, 0, 1, 1], chunk_size=0), "chunk_size"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(**{"k": 1, **kwargs})


def test_bfloat16_embeddings_from_mixed_precision_models_are_accepted():
    import ml_dtypes

    x = np.array([[0.0, 1.0], [0.0, 0.9], [1.0, 0.0], [0.9, 0.1]], "float32")
    labels = [0, 0, 1, 1]
    as_bf16 = retrieval_metrics(x.astype(ml_dtypes.bfloat16), labels, k=1)
    assert as_bf16["recall@1"] == retrieval_metrics(x, labels, k=1)["recall@1"] == 1.0
    with pytest.raises(ValueError, match="real numbers"):
        retrieval_metrics(np.array([["a", "b"], ["c", "d"]]), [0, 0], k=1)
