import numpy as np
import pytest
from keras import ops

from keras_dml import distances
from tests.helpers import value_and_grad


def test_matrices_match_numpy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(4, 3)).astype("float32")
    diff = x[:, None] - y[None]
    np.testing.assert_allclose(distances.squared_euclidean(x, y), (diff ** 2).sum(-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(distances.euclidean(x, y), np.sqrt((diff ** 2).sum(-1)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(distances.dot_product(x, y), x @ y.T, rtol=1e-5, atol=1e-6)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    np.testing.assert_allclose(distances.cosine_similarity(x, y), xn @ yn.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(distances.paired_euclidean(x[:4], y), np.linalg.norm(x[:4] - y, axis=1), rtol=1e-5)


def test_euclidean_gradient_finite_at_zero_distance():
    x = np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]], "float32")
    value, grad = value_and_grad(lambda v: ops.sum(distances.euclidean(v)) + ops.sum(distances.l2_normalize(v)), x)
    assert np.isfinite(value) and np.all(np.isfinite(grad))



def test_l2_normalize_gradient_is_exact_for_rows_with_one_non_zero_entry():
    # d/dx sum(w * x / |x|) = (w - (w . xh) xh) / |x|: zero along a one-hot row itself.
    # A floor on the norm at 1 (after scaling by the largest entry) ties with exactly such
    # rows, common after a ReLU (the PDDM unit), and halved or dropped that term.
    x = np.array([[0.0, 0.0, 0.0, 0.79], [0.0, -3.0, 0.0, 0.0], [0.3, -1.2, 0.5, 2.0], [0.0, 0.0, 0.0, 0.0]], "float32")
    w = np.array([[0.5, -1.0, 2.0, 1.5]], "float32")
    _, grad = value_and_grad(lambda v: ops.sum(ops.multiply(w, distances.l2_normalize(v))), x)
    x64, w64 = x.astype("float64"), np.broadcast_to(w, x.shape).astype("float64")
    norm = np.linalg.norm(x64, axis=1, keepdims=True)
    unit = x64 / np.where(norm > 0, norm, 1.0)
    expected = np.where(norm > 0, (w64 - (w64 * unit).sum(1, keepdims=True) * unit) / np.where(norm > 0, norm, 1.0), w64)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)

def test_label_masks():
    pos, neg = distances.label_masks(np.array([0, 1, 0]))
    assert np.asarray(pos).tolist() == [[False, False, True], [False, False, False], [True, False, False]]
    assert np.asarray(neg).tolist() == [[False, True, False], [True, False, True], [False, True, False]]


def test_unknown_distance_name():
    with pytest.raises(ValueError, match="distance"):
        distances.get("manhattan")
    assert distances.get("cosine") is distances.cosine_similarity


def test_similarity_or_distance_is_decided_in_one_place():
    values = np.array([[0.2, 0.8]], "float32")
    for name in ("euclidean", "squared_euclidean"):
        assert not distances.is_similarity(name)
        np.testing.assert_allclose(distances.oriented(values, name), values)
        np.testing.assert_allclose(distances.margin(values, 0.5, name), values - 0.5)
    for name in ("cosine", "dot"):
        assert distances.is_similarity(name)
        np.testing.assert_allclose(distances.oriented(values, name), -values)
        np.testing.assert_allclose(distances.margin(values, 0.5, name), 0.5 - values)
    with pytest.raises(ValueError, match="distance"):
        distances.check("euclidean", distances.SIMILARITIES, "CircleLoss")


def test_paired_forms_match_the_matrices():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(4, 3)).astype("float32")
    for name, function in distances.DISTANCES.items():
        np.testing.assert_allclose(distances.paired(name)(x, y), np.diag(np.asarray(function(x, y))), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(distances.mining_order("euclidean", x, y), distances.squared_euclidean(x, y), rtol=1e-6)
    np.testing.assert_allclose(distances.mining_order("cosine", x, y), -np.asarray(distances.cosine_similarity(x, y)),
                               rtol=1e-6)
