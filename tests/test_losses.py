"""Every loss against the NumPy reference, gradients, degenerate batches and bad input.

Backend-neutral: also run under KERAS_BACKEND=jax and torch by tests/test_backend_suites.py.
"""
import keras
import numpy as np
import pytest

from keras_dml import losses
from tests import reference
from tests.helpers import random_batch, value_and_grad

STRATEGIES = [(p, n) for p in ("all", "easy", "hard") for n in ("all", "hard", "semihard")]
PAIR_LOSSES = {
    "contrastive": (losses.ContrastiveLoss, reference.contrastive, {"pos_margin": 0.1, "neg_margin": 1.2}),
    "triplet": (losses.TripletLoss, reference.triplet, {"margin": 0.2}),
    "npair": (losses.NPairLoss, reference.npair, {"temperature": 0.5}),
}
ALL_LOSSES = [
    losses.ContrastiveLoss(),
    losses.TripletLoss(),
    losses.TripletLoss(positive="easy", negative="semihard"),
    losses.NPairLoss(),
    losses.MultiSimilarityLoss(),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("positive,negative", STRATEGIES)
@pytest.mark.parametrize("name", sorted(PAIR_LOSSES))
def test_pair_loss_matches_reference(name, positive, negative, seed):
    cls, ref, params = PAIR_LOSSES[name]
    labels, x = random_batch(classes=4, per_class=4, dim=6, seed=seed)
    loss = cls(positive=positive, negative=negative, **params)
    expected = ref(x, labels, positive=positive, negative=negative, **params)
    np.testing.assert_allclose(float(loss(labels, x)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per_class", [3, 5])
def test_multi_similarity_matches_reference(per_class):
    labels, x = random_batch(classes=3, per_class=per_class, dim=4, seed=per_class)
    for params in ({}, {"alpha": 1.0, "beta": 10.0, "base": 0.2, "epsilon": 0.3}):
        expected = reference.multi_similarity(x, labels, **params)
        np.testing.assert_allclose(float(losses.MultiSimilarityLoss(**params)(labels, x)), expected, rtol=1e-5, atol=1e-6)


def test_unnormalized_embeddings_use_raw_distances():
    labels, x = random_batch(seed=3)
    loss = losses.TripletLoss(normalize=False, margin=1.0)
    scale = 10.0
    # With normalize=False the loss sees the vectors as given: scaling changes it.
    assert abs(float(loss(labels, x)) - float(loss(labels, scale * x))) > 1e-3


def test_labels_of_shape_n_by_1_and_any_integer_dtype():
    labels, x = random_batch(seed=4)
    loss = losses.TripletLoss()
    expected = float(loss(labels, x))
    for variant in (labels[:, None], labels.astype("int64"), labels.astype("uint8")):
        np.testing.assert_allclose(float(loss(variant, x)), expected, rtol=1e-6)


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda l: f"{type(l).__name__}-{getattr(l, 'positive', '')}")
def test_gradients_finite_with_coincident_points_and_zero_vectors(loss):
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2], "int32")
    x = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    x[1] = x[0]  # coincident positives
    x[3] = x[2]  # coincident negatives
    x[7] = 0.0  # a zero vector
    value, grad = value_and_grad(lambda v: loss(labels, v), x)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda l: type(l).__name__)
@pytest.mark.parametrize("labels", [np.arange(6), np.zeros(6, "int64")], ids=["singletons", "one-class"])
def test_batch_without_valid_anchor_gives_exact_zero(loss, labels):
    if isinstance(loss, losses.ContrastiveLoss):
        pytest.skip("contrastive pair terms are separate: these batches still have valid pairs")
    x = np.random.default_rng(1).normal(size=(6, 4)).astype("float32")
    value, grad = value_and_grad(lambda v: loss(labels.astype("int32"), v), x)
    assert value == 0.0
    assert np.all(grad == 0.0)


def test_contrastive_single_sample_gives_exact_zero():
    value, grad = value_and_grad(lambda v: losses.ContrastiveLoss()(np.array([3]), v), np.ones((1, 4)))
    assert value == 0.0 and np.all(grad == 0.0)


def test_easy_positive_pulls_only_towards_nearest_same_class_sample():
    # Anchor 0 has a near positive (1) and a far one (2): with positive="easy" the far
    # one receives no gradient from anchor 0's term.
    labels = np.array([0, 0, 0, 1], "int32")
    x = np.array([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.2], [0.0, 1.0]], "float32")
    loss = losses.ContrastiveLoss(positive="easy", negative="all", neg_margin=0.0)
    _, grad = value_and_grad(lambda v: loss(labels, v), x)
    # Point 2's nearest positive is 1, so 2 only moves through the pair (2, 1).
    assert np.linalg.norm(grad[2]) > 0
    _, grad_all = value_and_grad(lambda v: losses.ContrastiveLoss(neg_margin=0.0)(labels, v), x)
    assert not np.allclose(grad, grad_all)


@pytest.mark.parametrize("argument,kwargs", [
    ("positive", {"positive": "nearest"}),
    ("negative", {"negative": "random"}),
])
def test_unknown_strategy_names_the_argument(argument, kwargs):
    with pytest.raises(ValueError, match=argument):
        losses.TripletLoss(**kwargs)


def test_bad_temperature_and_alpha():
    with pytest.raises(ValueError, match="temperature"):
        losses.NPairLoss(temperature=0.0)
    with pytest.raises(ValueError, match="alpha"):
        losses.MultiSimilarityLoss(alpha=-1.0)


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda l: type(l).__name__)
def test_bad_input_raises_clear_errors(loss):
    labels, x = random_batch(seed=5)
    with pytest.raises(ValueError, match="y_true.*integer"):
        loss(labels.astype("float32"), x)
    with pytest.raises(ValueError, match="y_true.*entries"):
        loss(labels[:-1], x)
    with pytest.raises(ValueError, match="y_pred.*shape"):
        loss(labels, x[:, :, None])
    with pytest.raises(ValueError, match="y_true.*shape"):
        loss(np.stack([labels, labels], axis=1), x)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        loss(labels, bad)
    with pytest.raises(ValueError, match="sample_weight"):
        loss(labels, x, sample_weight=np.ones(len(labels) + 1))
    with pytest.raises(ValueError, match="sample_weight"):
        loss(labels, x, sample_weight=-np.ones(len(labels)))


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda l: type(l).__name__)
def test_config_round_trip(loss):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    labels, x = random_batch(seed=6)
    np.testing.assert_allclose(float(restored(labels, x)), float(loss(labels, x)), rtol=1e-6)


def test_loss_is_float32_under_mixed_precision():
    labels, x = random_batch(seed=7)
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_bfloat16")
        value = losses.TripletLoss(positive="easy", negative="semihard")(labels, keras.ops.cast(x, "bfloat16"))
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"


# (contrastive's semi-hard threshold is its nearest selected positive: only "hard" leaves
# anchors without a farther negative in this batch)
FALLBACK_CASES = [("contrastive", "hard"), ("triplet", "all"), ("triplet", "hard"), ("npair", "all"), ("npair", "hard")]


@pytest.mark.parametrize("fallback", ["nearest", "farthest", "none"])
@pytest.mark.parametrize("name,positive", FALLBACK_CASES)
def test_semihard_fallback_matches_reference(name, positive, fallback):
    cls, ref, params = PAIR_LOSSES[name]
    labels, x = random_batch(classes=3, per_class=4, dim=3, seed=11)
    loss = cls(positive=positive, negative="semihard", semihard_fallback=fallback, **params)
    expected = ref(x, labels, positive=positive, negative="semihard", semihard_fallback=fallback, **params)
    np.testing.assert_allclose(float(loss(labels, x)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,positive", FALLBACK_CASES)
def test_the_fallback_case_occurs_in_that_batch(name, positive):
    # Otherwise the test above could not tell the fallbacks apart.
    cls, ref, params = PAIR_LOSSES[name]
    labels, x = random_batch(classes=3, per_class=4, dim=3, seed=11)
    values = {f: ref(x, labels, positive=positive, negative="semihard", semihard_fallback=f, **params)
              for f in ("nearest", "farthest", "none")}
    assert abs(values["nearest"] - values["none"]) > 1e-3 and abs(values["nearest"] - values["farthest"]) > 1e-3, values


def test_unknown_semihard_fallback_names_the_argument():
    with pytest.raises(ValueError, match="semihard_fallback"):
        losses.TripletLoss(negative="semihard", semihard_fallback="random")


EVERY_LOSS = {
    "ContrastiveLoss": lambda: losses.ContrastiveLoss(),
    "TripletLoss": lambda: losses.TripletLoss(),
    "TripletLoss-easy-semihard": lambda: losses.TripletLoss(positive="easy", negative="semihard"),
    "NPairLoss": lambda: losses.NPairLoss(),
    "NPairLoss-hard": lambda: losses.NPairLoss(positive="hard", negative="semihard"),
    "ContrastiveLoss-semihard": lambda: losses.ContrastiveLoss(positive="easy", negative="semihard"),
    "MultiSimilarityLoss": lambda: losses.MultiSimilarityLoss(),
    "DensityAdaptive": lambda: losses.DensityAdaptive(losses.ContrastiveLoss()),
    "PotentialFieldLoss": lambda: losses.PotentialFieldLoss(4, 5, proxies_per_class=2),
    "PotentialFieldLoss-batch": lambda: losses.PotentialFieldLoss(4, 5, proxies_per_class=2, proxy_targets="batch"),
    "ProxyAnchorLoss": lambda: losses.ProxyAnchorLoss(4, 5),
    "PDDMLoss": lambda: losses.PDDMLoss(5),
    "PDDMLoss-per-anchor": lambda: losses.PDDMLoss(5, quadruplets="per_anchor"),
}


@pytest.mark.parametrize("name", sorted(EVERY_LOSS))
def test_empty_batch_gives_zero(name):
    value = EVERY_LOSS[name]()(np.zeros((0,), "int32"), np.zeros((0, 5), "float32"))
    assert float(value) == 0.0
    assert float(losses.density_regularizer(np.zeros((0,), "int32"), np.zeros((0, 5), "float32"))) == 0.0


@pytest.mark.parametrize("name", sorted(EVERY_LOSS))
def test_scale_invariant_and_finite_for_norms_from_1e_minus_30_to_1e30(name):
    loss = EVERY_LOSS[name]()
    labels, x = random_batch(classes=4, per_class=3, dim=5, seed=12)
    value, grad = value_and_grad(lambda v: loss(labels, v), x)
    assert value > 0 and np.abs(grad).max() > 0
    # Powers of two (2^-100 = 7.9e-31 ... 2^100 = 1.3e30) scale exactly, so mining sees the
    # same normalised embeddings bit for bit; test_triplet_at_extreme_norms_matches_reference
    # covers other scales.
    for scale in (2.0**-100, 2.0**-23, 2.0**65, 2.0**100):
        scaled_value, scaled_grad = value_and_grad(lambda v: loss(labels, v), x * np.float32(scale))
        np.testing.assert_allclose(scaled_value, value, rtol=1e-4, atol=1e-6, err_msg=f"scale {scale}")
        assert np.all(np.isfinite(scaled_grad))
        # d loss(s x) / d(s x) = (d loss / dx) / s
        np.testing.assert_allclose(scaled_grad * np.float32(scale), grad, rtol=1e-3, atol=1e-4 * np.abs(grad).max())


@pytest.mark.parametrize("scale", [1e-7, 1e30])
def test_triplet_at_extreme_norms_matches_reference(scale):
    labels, x = random_batch(seed=13)
    expected = reference.triplet(x, labels)
    np.testing.assert_allclose(float(losses.TripletLoss()(labels, x * np.float32(scale))), expected, rtol=1e-5)


def test_int64_class_ids_keep_their_identity():
    labels, x = random_batch(seed=14)
    expected = float(losses.TripletLoss()(labels, x))
    far_apart = labels.astype("int64") * 2**32 + 7  # equal modulo 2^32: one class if wrapped to int32
    if keras.backend.backend() == "jax" and not keras.ops.convert_to_tensor(far_apart).dtype == "int64":
        with pytest.raises(ValueError, match="cannot represent"):
            losses.TripletLoss()(far_apart, x)
        return
    np.testing.assert_allclose(float(losses.TripletLoss()(far_apart, x)), expected, rtol=1e-6)


def test_labels_known_while_tracing_a_compiled_step():
    # NumPy labels captured by a compiled function are concrete while its embeddings are not.
    labels, x = random_batch(seed=15)
    loss = losses.TripletLoss(positive="easy", negative="semihard")
    expected = float(loss(labels, x))
    if keras.backend.backend() == "jax":
        import jax

        step = jax.jit(lambda v: loss(labels.astype("int64"), v))
    elif keras.backend.backend() == "torch":
        import torch

        step = torch.compile(lambda v: loss(labels.astype("int64"), v), backend="eager")
        x = torch.tensor(x)
    else:
        import tensorflow as tf

        step = tf.function(lambda v: loss(labels.astype("int64"), v), jit_compile=True)
    np.testing.assert_allclose(float(step(x)), expected, rtol=1e-5)
