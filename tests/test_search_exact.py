"""keras_dml.search.ExactSearch: exact for any offset and magnitude, equal to a float64 brute force.

The brute force ranks by float64 keys of the rows as given (`||x - y||^2`, `-x . y`,
`-cos`), ties by the lower gallery index (a stable sort).
"""
import numpy as np
import pytest

from keras_dml import distances
from keras_dml.evaluation import retrieval_metrics
from keras_dml.search import ExactSearch, nearest_neighbors


def float64_brute_force(queries, gallery, k, distance="euclidean", leave_out_self=False):
    q, g = np.asarray(queries, np.float64), np.asarray(gallery, np.float64)
    if distance in ("euclidean", "squared_euclidean"):
        keys = ((q[:, None, :] - g[None]) ** 2).sum(-1)
    else:  # pair by pair: a BLAS product can round equal columns differently
        keys = -(q[:, None, :] * g[None]).sum(-1)
    if distance == "cosine":
        norms = np.linalg.norm(q, axis=1)[:, None] * np.linalg.norm(g, axis=1)[None]
        keys /= np.where(norms > 0, norms, 1.0)
    if leave_out_self:
        np.fill_diagonal(keys, np.inf)
    order = np.argsort(keys, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(keys, order, 1)


def with_duplicates(rng, n, dim):
    """Gaussian rows, a third of them exact copies of others (ties to break by index)."""
    x = rng.normal(size=(n, dim)).astype("float32")
    copies = rng.choice(n, size=n // 3, replace=False)
    x[copies] = x[rng.choice(n, size=n // 3)]
    return x


@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "cosine", "dot"])
def test_random_data_with_duplicates_equals_float64_brute_force(distance):
    rng = np.random.default_rng(0)
    gallery = with_duplicates(rng, 300, 12)
    queries = np.concatenate([gallery[:20], rng.normal(size=(20, 12)).astype("float32")])
    order, keys = float64_brute_force(queries, gallery, 15, distance)
    for chunk_size in (7, 1024):
        ids, values = ExactSearch(gallery, distance, chunk_size).search(queries, k=15)
        np.testing.assert_array_equal(ids, order)
        expected = {"euclidean": np.sqrt, "squared_euclidean": np.asarray}.get(distance, np.negative)(keys)
        np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-6)
    ids, _ = nearest_neighbors(gallery, k=15, distance=distance, chunk_size=64)
    np.testing.assert_array_equal(ids, float64_brute_force(gallery, gallery, 15, distance, True)[0])


def test_a_large_common_offset_changes_nothing():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(20), 10)
    base = (rng.normal(size=(20, 32))[labels] + 0.3 * rng.normal(size=(200, 32))).astype("float32")
    shifted = (0.01 * base + 100.0).astype("float32")
    ids, _ = nearest_neighbors(shifted, k=5)
    np.testing.assert_array_equal(ids, float64_brute_force(shifted, shifted, 5, leave_out_self=True)[0])
    assert retrieval_metrics(shifted, labels, k=1)["recall@1"] == retrieval_metrics(base, labels, k=1)["recall@1"]


@pytest.mark.parametrize("scale", [1e20, 1e-30])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_extreme_finite_magnitudes_are_searched_exactly(scale, distance):
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(80, 6)) * scale).astype("float32")
    ids, values = nearest_neighbors(x[:10], x, k=4, distance=distance)
    order, keys = float64_brute_force(x[:10], x, 4, distance)
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_allclose(values, np.sqrt(keys) if distance == "euclidean" else -keys, rtol=1e-6)


def test_values_beyond_float32_are_a_clear_error():
    x = np.random.default_rng(3).normal(size=(20, 4)).astype("float32") * np.float32(1e20)
    with pytest.raises(ValueError, match="exceed the float32 range"):
        nearest_neighbors(x, k=2, distance="squared_euclidean")
    search = ExactSearch(np.ones((5, 3), "float32"))
    with pytest.raises(ValueError, match="exceed the float32 range"):  # the distance itself does
        search.search(np.full((1, 3), 3e38, "float32"), k=1)
    with pytest.raises(ValueError, match="beyond the float32 range"):
        nearest_neighbors(np.full((3, 2), 1e300), k=1)


def test_a_zero_query_has_cosine_similarity_zero():
    gallery = np.random.default_rng(4).normal(size=(10, 5)).astype("float32")
    ids, values = nearest_neighbors(np.zeros((1, 5), "float32"), gallery, k=3, distance="cosine")
    expected = np.asarray(distances.cosine_similarity(np.zeros((1, 5), "float32"), gallery))[0, :3]
    np.testing.assert_array_equal(ids, [[0, 1, 2]])  # all tied at 0: lowest indices
    np.testing.assert_array_equal(values[0], expected)


def test_uncertified_queries_are_searched_in_float64(monkeypatch):
    rng = np.random.default_rng(5)
    gallery = np.repeat(rng.normal(size=(8, 4)).astype("float32"), 20, axis=0)  # 20 copies of each row
    searched = []
    original = ExactSearch._float64_search
    monkeypatch.setattr(ExactSearch, "_float64_search",
                        lambda self, *args: searched.append(1) or original(self, *args))
    ids, _ = ExactSearch(gallery).search(gallery[::20], k=3)
    assert len(searched) == 8  # the 3rd and 11th candidates tie: nothing certifies the list
    np.testing.assert_array_equal(ids, float64_brute_force(gallery[::20], gallery, 3)[0])


@pytest.mark.parametrize("kwargs, message", [
    (dict(queries=np.zeros((10, 0)), k=1), "dim >= 1"),
    (dict(queries=np.zeros((10, 3)), k=True), "k must be a positive integer"),
    (dict(queries=np.zeros((10, 3)), k=2.5), "k must be a positive integer"),
    (dict(queries=np.zeros((10, 3)), k=10), "at most 9"),
    (dict(queries=np.zeros((10, 3)), k=1, chunk_size=True), "chunk_size"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nearest_neighbors(**kwargs)
    with pytest.raises(ValueError, match="dim >= 1"):
        retrieval_metrics(np.zeros((10, 0)), np.arange(10) % 2, k=1)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        retrieval_metrics(np.eye(4), [0, 0, 1, 1], k=True)


def exact_brute_force(queries, gallery, k, distance="euclidean"):
    """The order of the keys in exact rational arithmetic, ties by index (small sets only)."""
    from fractions import Fraction

    order = []
    for q in np.asarray(queries).tolist():
        q = [Fraction(v) for v in q]
        keys = []
        for y in np.asarray(gallery).tolist():
            y = [Fraction(v) for v in y]
            if distance == "euclidean":
                keys.append(sum((a - b) ** 2 for a, b in zip(q, y)))
            else:  # cosine: -sign(d) d^2 / ||y||^2 orders as -cos (||q|| is common)
                d, n = sum(a * b for a, b in zip(q, y)), sum(b * b for b in y)
                keys.append(-d * abs(d) / n if n else Fraction(0))
        order.append(sorted(range(len(keys)), key=lambda j: (keys[j], j))[:k])
    return np.array(order)


def test_cosine_ties_between_parallel_vectors_go_to_the_lower_index():
    rng = np.random.default_rng(6)
    base = rng.integers(-4, 5, size=(12, 5)).astype("float32")
    base[np.abs(base).sum(axis=1) == 0, 0] = 1.0
    factors = rng.choice([1.0, 3.0, 5.0, 7.0, 11.0, 0.375], size=(36, 1)).astype("float32")
    gallery = base[rng.permutation(np.arange(36) % 12)] * factors  # exact multiples: parallel rows
    queries = rng.normal(size=(20, 5)).astype("float32")
    for search_queries in (queries, gallery[:10]):
        ids, values = nearest_neighbors(search_queries, gallery, k=12, distance="cosine")
        np.testing.assert_array_equal(ids, exact_brute_force(search_queries, gallery, 12, "cosine"))
    labels = np.arange(36) % 3
    metrics = retrieval_metrics(gallery, labels, k=(1, 3), distance="cosine", exact=True)
    assert metrics == retrieval_metrics(gallery * np.float32(3.0), labels, k=(1, 3), distance="cosine", exact=True)


def test_a_gallery_of_tiny_spread_answers_ordinary_queries_exactly():
    rng = np.random.default_rng(7)
    gallery = (1e-20 * rng.normal(size=(60, 4))).astype("float32")
    queries = rng.normal(size=(5, 4)).astype("float32")
    ids, values = nearest_neighbors(queries, gallery, k=4)
    np.testing.assert_array_equal(ids, exact_brute_force(queries, gallery, 4))  # float64 sees all tied
    np.testing.assert_allclose(values[:, 0], np.linalg.norm(queries, axis=1), rtol=1e-6)
    far = ExactSearch(np.full((3, 2), 1e-30, "float32") * [[1], [2], [3]])
    assert far.search(np.array([[1e30, 1e30]], "float32"), k=3)[0].tolist() == [[2, 1, 0]]


def test_float64_embeddings_are_searched_in_float64():
    """Rounded to float32, rows 0.001 apart near 1e6 would all be one point."""
    x = 1e6 + 0.001 * np.array([[0.0], [3.0], [1.0], [7.0], [2.0]]) * np.ones((1, 3))
    ids, values = nearest_neighbors(x[:1] + 0.0004, x, k=5)
    assert ids.tolist() == [[0, 2, 4, 1, 3]]
    np.testing.assert_allclose(values[0], np.sqrt(3) * np.array([0.4, 0.6, 1.6, 2.6, 6.6]) * 1e-3, rtol=1e-6)
    ids, _ = nearest_neighbors(x, x, k=5)  # near-ties decided by the float64 values as given
    np.testing.assert_array_equal(ids, exact_brute_force(x, x, 5))


def test_no_queries_give_empty_results():
    ids, values = ExactSearch(np.eye(3, dtype="float32")).search(np.zeros((0, 3)), k=2)
    assert ids.shape == values.shape == (0, 2)
