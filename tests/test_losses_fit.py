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


class _BatchLosses(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(float(logs["loss"]))


def _linear_embedder(dim=10):
    """No ReLU: TensorFlow's CPU ReLU maps NaN to 0, which would hide the NaN before the loss."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((dim,)), keras.layers.Dense(8)])


def _fit_with_a_nan_batch(model, jit_compile):
    x, y = _data()
    order = np.random.default_rng(0).permutation(len(y))  # every batch holds several classes
    x, y = x[order], y[order]
    x[40, 3] = np.nan  # one sample of the second batch of 32
    record = _BatchLosses()
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0,
              callbacks=[record, keras.callbacks.TerminateOnNaN()])
    return record.seen


@pytest.mark.parametrize("loss,jit_compile", [
    (losses.TripletLoss(), True),
    (losses.TripletLoss(), False),
    (losses.ContrastiveLoss(), True),
    (losses.MultiSimilarityLoss(), True),
    (losses.NPairLoss(positive="easy", negative="semihard"), True),
    (losses.DensityAdaptive(losses.TripletLoss()), True),
], ids=lambda v: type(v).__name__ if not isinstance(v, bool) else f"jit={v}")
def test_a_nan_batch_gives_a_nan_loss_and_terminate_on_nan_stops(loss, jit_compile):
    model = _linear_embedder()
    model.compile(optimizer="adam", loss=loss, jit_compile=jit_compile)
    seen = _fit_with_a_nan_batch(model, jit_compile)
    assert seen[0] > 0 and np.isnan(seen[1]) and len(seen) == 2  # stopped at the NaN batch


@pytest.mark.parametrize("make", [
    lambda: losses.PotentialFieldLoss(4, 8, proxies_per_class=2),
    lambda: losses.ProxyAnchorLoss(4, 8),
    lambda: losses.PDDMLoss(8),
], ids=["PotentialFieldLoss", "ProxyAnchorLoss", "PDDMLoss"])
def test_a_nan_batch_stops_metric_model_training(make):
    from keras_dml.models import MetricModel

    model = MetricModel(_linear_embedder(), make())
    model.compile(optimizer="adam", jit_compile=True)
    seen = _fit_with_a_nan_batch(model, True)
    assert np.isfinite(seen[0]) and seen[0] != 0 and np.isnan(seen[1]) and len(seen) == 2


def test_out_of_range_proxy_labels_in_fit_give_nan_not_a_merged_class():
    from keras_dml.models import MetricModel

    x, y = _data()
    model = MetricModel(_embedder(), losses.ProxyAnchorLoss(4, 8))
    model.compile(optimizer="adam", jit_compile=True)
    history = model.fit(x, y - 4, batch_size=32, epochs=1, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()])
    assert np.isnan(history.history["loss"][-1])


def test_int64_class_ids_keep_their_identity_in_fit():
    x, y = _data()
    far_apart = y.astype("int64") * 2**32  # equal modulo 2^32
    model = _embedder()
    model.compile(optimizer="adam", loss=losses.TripletLoss(), jit_compile=True)
    before = model.evaluate(x, y, batch_size=len(y), verbose=0)
    assert before > 0.01
    np.testing.assert_allclose(model.evaluate(x, far_apart, batch_size=len(y), verbose=0), before, rtol=1e-5)


def test_a_criterion_with_weights_in_compile_points_to_metric_model():
    x, y = _data()
    model = _embedder()
    model.compile(optimizer="adam", loss=losses.ProxyAnchorLoss(4, 8))
    with pytest.raises(ValueError, match="MetricModel"):
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
