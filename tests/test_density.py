"""DensityAdaptive and density_regularizer against a NumPy reference of docs/methods.md section 5."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dml.losses.density import DensityAdaptive, density_regularizer
from keras_dml.losses.pair import ContrastiveLoss, MultiSimilarityLoss, NPairLoss, TripletLoss
from tests.helpers import random_batch, value_and_grad


def normalized(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_terms(labels, x, rho, gaps=None):
    """Per-class `[rho g_c - sigma_c]_+` for classes with >= 2 samples (float64 loops).

    `gaps` (a dict class -> g_c) freezes the gaps, as the stop-gradient does.
    """
    labels = np.asarray(labels).reshape(-1)
    x = np.asarray(x, dtype="float64")
    classes = sorted(set(labels.tolist()))
    centres = {c: x[labels == c].mean(axis=0) for c in classes}
    terms = {}
    if len(classes) < 2:
        return terms
    for c in classes:
        members = x[labels == c]
        if len(members) < 2:
            continue
        spread = np.mean([np.linalg.norm(z - centres[c]) for z in members])
        gap = min(np.linalg.norm(centres[c] - centres[o]) for o in classes if o != c)
        if gaps is not None:
            gap = gaps[c]
        terms[c] = max(rho * gap - spread, 0.0)
    return terms


def reference_regularizer(labels, x, rho, gaps=None):
    terms = reference_terms(labels, x, rho, gaps)
    return float(np.mean(list(terms.values()))) if terms else 0.0


def reference_gaps(labels, x):
    labels = np.asarray(labels).reshape(-1)
    centres = {c: x[labels == c].mean(axis=0) for c in set(labels.tolist())}
    return {c: min(np.linalg.norm(centres[c] - centres[o]) for o in centres if o != c) for c in centres}


def clustered_batch(seed=0):
    """Uneven classes (one singleton) around random centres, each class its own noise.

    Tight classes are penalised, loose ones are not, so both branches of the hinge are hit.
    """
    rng = np.random.default_rng(seed)
    sizes = [5, 4, 3, 6, 1, 2]
    noise = [0.02, 1.0, 0.05, 1.5, 0.1, 0.01]
    labels = np.concatenate([np.full(s, c) for c, s in enumerate(sizes)]).astype("int32")
    centres = rng.normal(size=(len(sizes), 8))
    x = np.concatenate([centres[c] + noise[c] * rng.normal(size=(s, 8)) for c, s in enumerate(sizes)])
    order = rng.permutation(len(labels))
    return labels[order], x[order].astype("float32")


@pytest.mark.parametrize("rho", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regularizer_matches_reference(rho, seed):
    labels, x = clustered_batch(seed)
    terms = reference_terms(labels, normalized(x.astype("float64")), rho)
    expected = reference_regularizer(labels, normalized(x.astype("float64")), rho)
    assert expected > 0.0
    if rho == 0.5:
        assert min(terms.values()) == 0.0 < max(terms.values())
    got = float(density_regularizer(labels[:, None], x, rho=rho))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_regularizer_without_normalization_matches_reference():
    labels, x = clustered_batch(3)
    expected = reference_regularizer(labels, x, 0.5)
    assert expected > 0.0
    np.testing.assert_allclose(float(density_regularizer(labels, x, rho=0.5, normalize=False)), expected, rtol=1e-5)


def penalised_and_free(labels, x, rho):
    terms = reference_terms(labels, x, rho)
    return [c for c, t in terms.items() if t > 0], [c for c in set(labels.tolist()) if terms.get(c, 0.0) == 0.0]


def test_gradient_does_not_move_class_centres():
    labels, x = clustered_batch(4)
    _, grad = value_and_grad(lambda v: density_regularizer(labels, v, rho=0.5, normalize=False), x)
    penalised, free = penalised_and_free(labels, x, 0.5)
    assert penalised and free
    assert np.all(np.isfinite(grad))
    for c in penalised:
        rows = grad[labels == c]
        assert np.abs(rows).max() > 1e-3  # the penalised class is pushed ...
        np.testing.assert_allclose(rows.sum(axis=0), 0.0, atol=1e-6)  # ... but its centre stays
    for c in free:
        np.testing.assert_array_equal(grad[labels == c], 0.0)


def test_gradient_acts_through_spread_only():
    """The gradient equals finite differences of R with every gap frozen at its value."""
    labels, x = clustered_batch(5)
    x64 = x.astype("float64")
    gaps = reference_gaps(labels, x64)
    _, grad = value_and_grad(lambda v: density_regularizer(labels, v, rho=0.5, normalize=False), x)
    eps = 1e-4
    numeric = np.zeros_like(x64)
    for index in np.ndindex(*x.shape):
        step = np.zeros_like(x64)
        step[index] = eps
        numeric[index] = (
            reference_regularizer(labels, x64 + step, 0.5, gaps) - reference_regularizer(labels, x64 - step, 0.5, gaps)
        ) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, atol=2e-4)


def test_descent_spreads_penalised_classes():
    labels, x = clustered_batch(6)
    x = normalized(x)
    penalised, _ = penalised_and_free(labels, x, 0.5)
    _, grad = value_and_grad(lambda v: density_regularizer(labels, v, rho=0.5, normalize=False), x)
    moved = x - 0.05 * grad
    before = reference_terms(labels, x, 0.5, reference_gaps(labels, x))
    after = reference_terms(labels, moved, 0.5, reference_gaps(labels, x))
    for c in penalised:
        assert after[c] < before[c]


@pytest.mark.parametrize(
    "labels, x",
    [
        (np.zeros(6, "int32"), np.random.default_rng(0).normal(size=(6, 4))),  # one class
        (np.arange(6, dtype="int32"), np.random.default_rng(1).normal(size=(6, 4))),  # only singletons
        (np.array([0, 0, 1, 1], "int32"), np.ones((4, 4))),  # every point (and centre) identical
        (np.array([0, 0, 0, 7], "int32"), np.array([[1.0, 0], [1, 0], [1, 0], [0, 1]])),  # zero spread
    ],
)
def test_degenerate_batches(labels, x):
    x = x.astype("float32")
    value, grad = value_and_grad(lambda v: density_regularizer(labels, v, rho=1.0), x)
    expected = reference_regularizer(labels, normalized(x.astype("float64")), 1.0)
    assert np.all(np.isfinite(grad))
    if expected == 0.0:
        assert float(value) == 0.0
        np.testing.assert_array_equal(grad, 0.0)
    else:  # the zero-spread class is penalised by the full gap; its gradient is still finite
        np.testing.assert_allclose(float(value), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "base",
    [
        ContrastiveLoss(),
        TripletLoss(positive="easy", negative="semihard"),
        NPairLoss(),
        MultiSimilarityLoss(),
        TripletLoss(normalize=False),
    ],
    ids=["contrastive", "triplet_easy", "npair", "multi_similarity", "triplet_raw"],
)
def test_wrapped_loss_is_base_plus_weighted_regularizer(base):
    labels, x = clustered_batch(7)
    wrapped = DensityAdaptive(base, weight=0.3, rho=0.8)
    expected = float(base(labels, x)) + 0.3 * float(density_regularizer(labels, x, rho=0.8, normalize=base.normalize))
    assert float(density_regularizer(labels, x, rho=0.8, normalize=base.normalize)) > 0.0
    np.testing.assert_allclose(float(wrapped(labels, x)), expected, rtol=1e-5)
    _, grad = value_and_grad(lambda v: wrapped(labels, v), x)
    assert np.all(np.isfinite(grad))


def test_wrapped_loss_compiles_with_xla():
    labels, x = clustered_batch(8)
    wrapped = DensityAdaptive(TripletLoss(positive="easy"), weight=0.5)
    compiled = tf.function(lambda y, v: wrapped(y, v), jit_compile=True)
    np.testing.assert_allclose(float(compiled(labels, x)), float(wrapped(labels, x)), rtol=1e-5)


def test_fit_with_xla_and_reload(tmp_path):
    labels, x = random_batch(classes=4, per_class=8, dim=6, seed=1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4)])
    loss = DensityAdaptive(ContrastiveLoss(), weight=0.5, rho=0.5)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, jit_compile=True)
    history = model.fit(x, labels, batch_size=32, epochs=5, shuffle=False, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < history[0]
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded.loss, DensityAdaptive)
    assert reloaded.loss.get_config() == loss.get_config()
    embeddings = model.predict(x, verbose=0)
    np.testing.assert_allclose(float(reloaded.loss(labels, embeddings)), float(loss(labels, embeddings)), rtol=1e-6)


def test_config_round_trip():
    loss = DensityAdaptive(NPairLoss(temperature=0.05, positive="easy"), weight=0.2, rho=0.7, name="da")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, DensityAdaptive) and isinstance(restored.base_loss, NPairLoss)
    assert restored.get_config() == loss.get_config()
    assert restored.base_loss.temperature == 0.05 and restored.base_loss.positive == "easy"
    assert DensityAdaptive.from_config(loss.get_config()).get_config() == loss.get_config()


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"base_loss": keras.losses.MeanSquaredError()}, "base_loss"),
        ({"base_loss": lambda y, x: 0.0}, "base_loss"),
        ({"base_loss": TripletLoss(), "weight": -0.1}, "weight"),
        ({"base_loss": TripletLoss(), "rho": 0.0}, "rho"),
        ({"base_loss": TripletLoss(), "rho": 1.5}, "rho"),
    ],
)
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        DensityAdaptive(**kwargs)


def test_bad_regularizer_input():
    labels, x = clustered_batch(0)
    with pytest.raises(ValueError, match="rho"):
        density_regularizer(labels, x, rho=-1.0)
    with pytest.raises(ValueError, match="labels"):
        density_regularizer(labels.astype("float32"), x)
    with pytest.raises(ValueError, match="labels"):
        density_regularizer(labels[:-1], x)
    with pytest.raises(ValueError, match="embeddings"):
        density_regularizer(labels, x[:, :, None])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="embeddings"):
        density_regularizer(labels, bad)
    with pytest.raises(ValueError, match="sample_weight"):
        DensityAdaptive(TripletLoss())(labels, x, sample_weight=np.ones(len(labels)))
