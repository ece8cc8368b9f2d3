"""The losses inside `model.fit` with XLA, under mixed precision, and on degenerate batches."""
import keras
import numpy as np
import pytest

from keras_dml import losses

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow-backend fit tests")


def _data(n=128, classes=4, dim=10, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n // classes)
    centres = rng.normal(size=(classes, dim))
    x = (centres[labels] + 1.5 * rng.normal(size=(n, dim))).astype("float32")
    return x, labels.astype("int32")


def _embedder(dim=10, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((dim,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(8)])


@pytest.mark.parametrize("loss", [
    losses.TripletLoss(positive="easy", negative="semihard"),
    losses.TripletLoss(),
    losses.ContrastiveLoss(),
    losses.NPairLoss(),
    losses.MultiSimilarityLoss(),
], ids=lambda l: type(l).__name__)
def test_fit_with_xla_lowers_the_loss(loss):
    x, y = _data()
    model = _embedder()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, jit_compile=True)
    history = model.fit(x, y, batch_size=32, epochs=6, shuffle=True, verbose=0)
    losses_seen = history.history["loss"]
    assert np.all(np.isfinite(losses_seen))
    assert losses_seen[-1] < losses_seen[0]


def test_fit_under_mixed_bfloat16():
    x, y = _data()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = _embedder()
        model.compile(optimizer="adam", loss=losses.TripletLoss(positive="easy", negative="semihard"), jit_compile=True)
        history = model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.backend.standardize_dtype(model.outputs[0].dtype) == "bfloat16"
    assert np.all(np.isfinite(history.history["loss"]))


def test_degenerate_batch_is_zero_under_xla():
    import tensorflow as tf

    loss = losses.TripletLoss(positive="easy", negative="semihard")
    x = tf.Variable(np.random.default_rng(0).normal(size=(6, 4)).astype("float32"))

    @tf.function(jit_compile=True)
    def step(labels):
        with tf.GradientTape() as tape:
            value = loss(labels, x)
        return value, tape.gradient(value, x)

    for labels in (np.arange(6, dtype="int32"), np.zeros(6, "int32")):
        value, grad = step(labels)
        assert float(value) == 0.0 and np.all(grad.numpy() == 0.0)
