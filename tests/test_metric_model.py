"""MetricModel: an embedder trained with a criterion that holds weights, under XLA."""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

import keras_dml.optimizers
from keras_dml.losses.base import TrainableMetricLoss
from keras_dml.losses.pair import TripletLoss
from keras_dml.losses.proxy import PotentialFieldLoss, ProxyAnchorLoss
from keras_dml.models import MetricModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clusters(classes=4, per_class=8, dim=16, seed=0):
    """Noisy Gaussian clusters, one per class: `(x float32 (n, dim), labels int32 (n,))`."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    labels = np.repeat(np.arange(classes), per_class).astype("int32")
    return (centres[labels] + 0.7 * rng.normal(size=(len(labels), dim))).astype("float32"), labels


def embedder(dim=16, out=8, seed=0):
    return keras.Sequential(
        [keras.Input((dim,)), keras.layers.Dense(out, kernel_initializer=keras.initializers.GlorotNormal(seed))],
        name="embedder",
    )


def numpy(variable):
    return ops.convert_to_numpy(variable)


@pytest.mark.parametrize("make", [
    lambda: PotentialFieldLoss(4, 8, proxies_per_class=2, proxy_targets="batch"),
    lambda: ProxyAnchorLoss(4, 8),
])
def test_fit_with_xla_lowers_loss_and_moves_proxies(make):
    keras.utils.set_random_seed(0)
    x, labels = clusters()
    criterion = make()
    model = MetricModel(embedder(), criterion)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    proxies = numpy(criterion.proxies)
    losses = model.fit(x, labels, batch_size=32, epochs=25, verbose=0).history["loss"]  # one full batch per epoch
    assert model.jit_compile
    assert losses[-1] < losses[0]
    assert np.abs(numpy(criterion.proxies) - proxies).max() > 1e-2
    np.testing.assert_allclose(model.predict(x, verbose=0), model.embedder.predict(x, verbose=0), atol=1e-5)


def test_save_and_reload_keeps_proxies_optimizer_and_embeddings(tmp_path):
    x, labels = clusters()
    criterion = PotentialFieldLoss(4, 8, proxies_per_class=3, alpha=1.0, proxy_targets="batch", name="field")
    model = MetricModel(embedder(), criterion)
    model.compile(optimizer=keras_dml.optimizers.with_proxy_lr_multiplier(keras.optimizers.Adam(1e-3), 100.0),
                  jit_compile=True)
    model.fit(x, labels, batch_size=16, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, MetricModel) and isinstance(restored.criterion, PotentialFieldLoss)
    assert restored.criterion.get_config() == criterion.get_config()
    np.testing.assert_array_equal(numpy(restored.criterion.proxies), numpy(criterion.proxies))
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    assert isinstance(restored.optimizer, keras.optimizers.MultiOptimizer)
    for mine, theirs in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(numpy(mine), numpy(theirs))
    restored.fit(x, labels, batch_size=16, epochs=1, verbose=0)
    assert not np.array_equal(numpy(restored.criterion.proxies), numpy(criterion.proxies))


def test_weights_checkpoint_round_trip(tmp_path):
    x, labels = clusters()
    model = MetricModel(embedder(), ProxyAnchorLoss(4, 8))
    model.compile(optimizer="adam")
    model.fit(x, labels, batch_size=16, epochs=1, verbose=0)
    path = str(tmp_path / "checkpoint.weights.h5")
    model.save_weights(path)
    fresh = MetricModel(embedder(seed=1), ProxyAnchorLoss(4, 8))
    fresh.build((None, 16))
    fresh.load_weights(path)
    np.testing.assert_array_equal(numpy(fresh.criterion.proxies), numpy(model.criterion.proxies))
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))


def _one_adam_step(multiplier, optimizer_class=keras.optimizers.Adam):
    """Proxy and embedder displacement after one optimizer step from identical starts."""
    keras.utils.set_random_seed(3)
    x, labels = clusters(per_class=4)
    criterion = PotentialFieldLoss(4, 8, proxies_per_class=2)
    model = MetricModel(embedder(seed=3), criterion)
    model.compile(optimizer=keras_dml.optimizers.with_proxy_lr_multiplier(optimizer_class(1e-3), multiplier),
                  run_eagerly=True)
    kernel, proxies = numpy(model.embedder.weights[0]), numpy(criterion.proxies)
    model.fit(x, labels, batch_size=len(x), epochs=1, verbose=0)
    return numpy(criterion.proxies) - proxies, numpy(model.embedder.weights[0]) - kernel


@pytest.mark.parametrize("optimizer_class", [keras.optimizers.Adam, keras.optimizers.AdamW])
def test_proxy_lr_multiplier_scales_the_adam_step(optimizer_class):
    proxy_step, kernel_step = _one_adam_step(1.0, optimizer_class)
    proxy_step_10, kernel_step_10 = _one_adam_step(10.0, optimizer_class)
    assert np.abs(proxy_step).max() > 1e-4
    np.testing.assert_allclose(proxy_step_10, 10.0 * proxy_step, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(kernel_step_10, kernel_step, rtol=1e-5, atol=1e-8)


def test_proxy_lr_multiplier_scales_a_schedule_and_rejects_bad_values():
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=10, decay_rate=0.5)
    optimizer = keras_dml.optimizers.with_proxy_lr_multiplier(keras.optimizers.Adam(schedule), 100.0)
    proxy_optimizer, base = optimizer.optimizers
    assert isinstance(proxy_optimizer.get_config()["learning_rate"], dict)  # still a schedule after a round trip
    for step in [0, 10, 30]:
        proxy_optimizer.iterations.assign(step)
        base.iterations.assign(step)
        np.testing.assert_allclose(float(proxy_optimizer.learning_rate), 100.0 * float(base.learning_rate), rtol=1e-6)
    with pytest.raises(ValueError, match="proxy_lr_multiplier"):
        keras_dml.optimizers.with_proxy_lr_multiplier(keras.optimizers.Adam(), 0.0)


def test_stateless_losses_work_in_metric_model_and_in_plain_models():
    x, labels = clusters()
    model = MetricModel(embedder(), TripletLoss(margin=0.2))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    losses = model.fit(x, labels, batch_size=32, epochs=10, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    plain = embedder()
    plain.compile(optimizer="adam", loss=TripletLoss(), jit_compile=True)
    history = plain.fit(x, labels, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_metric_model_passes_sample_weight_to_its_criterion():
    """fit's sample_weight reaches a criterion that weighs anchors: the step's loss is the
    criterion's weighted loss, and a zero weight removes an anchor from it."""
    x, labels = clusters()
    weights = np.where(np.arange(len(x)) % 3 == 0, 0.0, 2.0).astype("float32")
    model = MetricModel(embedder(), TripletLoss(margin=0.5, reduction="mean_with_sample_weight"))
    model.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=True)
    history = model.fit(x, labels, sample_weight=weights, batch_size=len(x), epochs=1, verbose=0)
    embeddings = model.predict(x, verbose=0)
    expected = TripletLoss(margin=0.5, reduction="mean_with_sample_weight")(labels, embeddings, sample_weight=weights)
    unweighted = TripletLoss(margin=0.5)(labels, embeddings)
    assert abs(float(expected) - float(unweighted)) > 1e-3  # the weights change the loss
    np.testing.assert_allclose(history.history["loss"][0], float(expected), rtol=1e-5)
    history = model.fit(x, labels, class_weight={0: 1.0, 1: 1.0, 2: 0.0, 3: 0.0}, batch_size=len(x),
                        epochs=1, verbose=0)
    kept = labels < 2
    subset = TripletLoss(margin=0.5, reduction="mean_with_sample_weight")(
        labels, embeddings, sample_weight=kept.astype("float32"))
    np.testing.assert_allclose(history.history["loss"][0], float(subset), rtol=1e-5)


def test_metric_model_rejects_misuse():
    x, labels = clusters()
    model = MetricModel(embedder(), ProxyAnchorLoss(4, 8))
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="without loss="):
        model.fit(x, labels, batch_size=16, epochs=1, verbose=0)
    model = MetricModel(embedder(), ProxyAnchorLoss(4, 8))
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="labels"):
        model.fit(x, batch_size=16, epochs=1, verbose=0)
    model = MetricModel(embedder(), ProxyAnchorLoss(4, 8))  # a fresh one: a failed fit leaves JAX's variables unset
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="ProxyAnchorLoss does not take sample_weight"):
        model.fit(x, labels, sample_weight=np.ones(len(x)), batch_size=16, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="criterion"):
        MetricModel(embedder(), "triplet")


@keras.saving.register_keras_serializable(package="keras_dml_tests")
class CentreLoss(TrainableMetricLoss):
    """A criterion whose weights need the embedding width: built lazily, as a PDDM unit is."""

    def build(self, labels_shape, embeddings_shape):
        self.centres = self.add_weight(shape=(4, embeddings_shape[-1]), initializer="random_normal", name="centres")

    def terms(self, labels, embeddings):
        centres = ops.take(self.centres, labels, axis=0)
        return ops.sum(ops.square(embeddings - centres), axis=1), ops.ones_like(labels, dtype="bool")


def test_a_lazily_built_criterion_trains_and_reloads(tmp_path):
    x, labels = clusters()
    model = MetricModel(embedder(), CentreLoss())
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    losses = model.fit(x, labels, batch_size=32, epochs=10, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    path = str(tmp_path / "centres.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(numpy(restored.criterion.centres), numpy(model.criterion.centres))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_fit_under_mixed_precision(policy):
    x, labels = clusters()
    keras.config.set_dtype_policy(policy)
    try:
        criterion = PotentialFieldLoss(4, 8, proxies_per_class=2)
        model = MetricModel(embedder(), criterion)
        model.compile(optimizer=keras_dml.optimizers.with_proxy_lr_multiplier(keras.optimizers.Adam(1e-3), 100.0),
                      jit_compile=True)
        history = model.fit(x, labels, batch_size=16, epochs=2, verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert criterion.proxies.dtype == "float32"
    assert np.all(np.isfinite(history.history["loss"]))


def test_fit_with_jit_on_jax():
    """The same model trains under the JAX backend's compiled, stateless train step."""
    script = textwrap.dedent("""
        import keras, numpy as np
        import keras_dml.optimizers
        from keras_dml.losses.proxy import PotentialFieldLoss
        from keras_dml.models import MetricModel
        from tests.test_metric_model import clusters, embedder
        x, labels = clusters()
        criterion = PotentialFieldLoss(4, 8, proxies_per_class=2, proxy_targets="batch")
        model = MetricModel(embedder(), criterion)
        model.compile(optimizer=keras_dml.optimizers.with_proxy_lr_multiplier(keras.optimizers.Adam(1e-2), 10.0),
                      jit_compile=True)
        proxies = keras.ops.convert_to_numpy(criterion.proxies)
        losses = model.fit(x, labels, batch_size=32, epochs=10, verbose=0).history["loss"]
        before, after = losses[0], losses[-1]
        moved = np.abs(keras.ops.convert_to_numpy(criterion.proxies) - proxies).max()
        assert keras.backend.backend() == "jax" and after < before and moved > 1e-2, (before, after, moved)
        print("ok")
    """)
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
