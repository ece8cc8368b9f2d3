"""Training under tf.distribute with global-batch losses (keras_dml.distributed).

The two-replica cases run in subprocesses, because logical CPU devices (and JAX's
host device count) must be set before the framework initialises its devices.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dml import distributed, losses, models
from tests.helpers import random_batch

ROOT = Path(__file__).resolve().parent.parent

# One global batch of 16, one step of SGD(learning_rate=1), so that the weight change
# is minus the gradient. Criteria with weights are trained through MetricModel, the
# others through compile(loss=...). The labels are class-contiguous, like class_balanced's, so each replica holds whole
# classes and a replica-local loss misses the other replica's negatives.
COMMON = """
import json
import keras
import numpy as np
from keras_dml import losses, models

rng = np.random.default_rng(0)
X = rng.normal(size=(16, 6)).astype("float32")
LABELS = np.repeat(np.arange(4), 4).astype("int32")


class Sum(keras.layers.Layer):
    # The sum of several criteria, each gathering the global batch itself: one fit checks them all.

    def __init__(self, criteria):
        super().__init__()
        self.criteria = criteria
        self.built = True

    def call(self, labels, embeddings):
        return sum(criterion(labels, embeddings) for criterion in self.criteria)


CASES = {
    "triplet": lambda: losses.TripletLoss(positive="easy", negative="semihard"),
    "contrastive": lambda: losses.ContrastiveLoss(neg_margin=1.0),
    "potential_field": lambda: losses.PotentialFieldLoss(num_classes=4, embedding_dim=4, proxies_per_class=2),
    "pddm": lambda: losses.PDDMLoss(embedding_dim=4, hidden_dim=4),
    "other_losses": lambda: Sum([
        losses.NPairLoss(), losses.MultiSimilarityLoss(), losses.DensityAdaptive(losses.TripletLoss(), weight=1.0),
        losses.ProxyAnchorLoss(num_classes=4, embedding_dim=4),
    ]),
}


def build(case, cross_replica=True):
    keras.utils.set_random_seed(0)
    embedder = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(4, kernel_regularizer=keras.regularizers.L2(0.01))]
    )
    criterion = CASES[case]()
    for part in getattr(criterion, "criteria", [criterion]):
        part.cross_replica = cross_replica
    if isinstance(criterion, keras.layers.Layer):
        model = models.MetricModel(embedder, criterion)
        model.build((None, 6))
        model.compile(optimizer=keras.optimizers.SGD(1.0))
    else:
        model = embedder
        model.compile(optimizer=keras.optimizers.SGD(1.0), loss=criterion)
    return model


def one_step(model):
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(X, LABELS, batch_size=len(X), epochs=1, shuffle=False, verbose=0)
    steps = [b - np.array(w) for b, w in zip(before, model.trainable_weights)]
    return history.history["loss"][0], steps


def report(**values):
    print("RESULT " + json.dumps(values))
"""

TENSORFLOW_SCRIPT = """
import tensorflow as tf
from keras_dml import distributed

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""" + COMMON + """
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def single_device(model, criterion, n=len(X), regularised=True):
    # The loss on the first n samples and its gradient, by hand on one device.
    with tf.GradientTape() as tape:
        loss = criterion(LABELS[:n], model(X[:n], training=True))
        if regularised:
            loss += tf.add_n(model.losses)
    return float(loss), [g.numpy() for g in tape.gradient(loss, model.trainable_weights)]


def compare(case, cross_replica, loss, gradients, replicated_loss, steps):
    report(
        case=case, cross_replica=cross_replica, loss=loss, replicated_loss=replicated_loss,
        gradient_error=max(float(np.abs(g - s).max()) for g, s in zip(gradients, steps)),
        gradient_scale=max(float(np.abs(g).max()) for g in gradients),
        variables=len(steps),
    )


for case in CASES:
    model = build(case)
    loss, gradients = single_device(model, getattr(model, "criterion", model.loss))
    for cross_replica in (True, False) if case in ("triplet", "potential_field") else (True,):
        with strategy.scope():
            model = build(case, cross_replica)
        compare(case, cross_replica, loss, gradients, *one_step(model))

# Replicas of different sizes (8 + 7, as in an uneven last batch), in a custom step:
# the summed per-replica gradients still equal the single-device gradient.
with strategy.scope():
    model = build("contrastive")
loss, gradients = single_device(model, model.loss, n=15, regularised=False)
slices = strategy.experimental_distribute_values_from_function(
    lambda context: (X[:8], LABELS[:8]) if context.replica_id_in_sync_group == 0 else (X[8:15], LABELS[8:15])
)


@tf.function
def replica_step(x, labels):
    with tf.GradientTape() as tape:
        value = model.loss(labels, model(x, training=True))
    return value, tape.gradient(value, model.trainable_weights)


values, steps = strategy.run(replica_step, args=slices)
compare(
    "contrastive_uneven", True, loss, gradients,
    float(strategy.reduce("SUM", values, axis=None)), [strategy.reduce("SUM", g, axis=None).numpy() for g in steps],
)


# The gather done by the caller (keras_dml's training loop compiles the loss apart from
# it): the same loss and gradients.
@tf.function
def gathered_step(x, labels):
    context = tf.distribute.get_replica_context()
    with tf.GradientTape() as tape:
        all_labels, all_embeddings = distributed.global_batch(context, labels, model(x, training=True))
        with distributed.gathered_by_caller():
            value = model.loss(all_labels, all_embeddings)
    return value, tape.gradient(value, model.trainable_weights)


values, steps = strategy.run(gathered_step, args=slices)
compare(
    "contrastive_gathered_by_caller", True, loss, gradients,
    float(strategy.reduce("SUM", values, axis=None)), [strategy.reduce("SUM", g, axis=None).numpy() for g in steps],
)
"""

# Keras's JAX distribution API: the batch is sharded over 2 host devices and the step
# compiled as one XLA program over global arrays, so mining sees the global batch.
JAX_SCRIPT = COMMON + """
import jax

loss, gradients = one_step(build("pddm"))
distribution = keras.distribution.DataParallel(devices=jax.devices())
keras.distribution.set_distribution(distribution)
replicated_loss, steps = one_step(build("pddm"))
report(
    devices=len(jax.devices()), batch_layout=list(distribution.get_data_layout(X.shape).axes),
    loss=loss, replicated_loss=replicated_loss,
    gradient_error=max(float(np.abs(g - s).max()) for g, s in zip(gradients, steps)),
)
"""


def start(script, **env):
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def results_of(process):
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return [json.loads(line[len("RESULT "):]) for line in stdout.splitlines() if line.startswith("RESULT ")]


@pytest.fixture(scope="module")
def two_replica_runs():
    """Both subprocesses, started together so that they share the wait."""
    runs = {"tensorflow": start(TENSORFLOW_SCRIPT, KERAS_BACKEND="tensorflow")}
    try:
        import jax  # noqa: F401

        runs["jax"] = start(JAX_SCRIPT, KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    except ImportError:
        pass
    yield runs
    for process in runs.values():
        process.kill()
        process.communicate()


def test_mirrored_fit_matches_single_device_on_the_global_batch(two_replica_runs):
    results = results_of(two_replica_runs["tensorflow"])
    cases = {(r["case"], r["cross_replica"]): r for r in results}
    assert set(cases) == {
        ("triplet", True), ("triplet", False), ("contrastive", True), ("contrastive_uneven", True),
        ("contrastive_gathered_by_caller", True),
        ("potential_field", True), ("potential_field", False), ("pddm", True), ("other_losses", True),
    }
    for (case, cross_replica), r in cases.items():
        # the embedder's kernel and bias, and the criterion's weights where it has some
        assert r["variables"] == 2 if case.startswith(("triplet", "contrastive")) else r["variables"] > 2
        assert np.isfinite(r["replicated_loss"]) and r["gradient_scale"] > 0
        if cross_replica:  # the loss Keras reports and the summed gradients of the step
            np.testing.assert_allclose(r["replicated_loss"], r["loss"], rtol=1e-5, err_msg=case)
            assert r["gradient_error"] <= 1e-5 * max(1.0, r["gradient_scale"]), (case, r)
        else:  # replica-local mining is a different loss
            assert abs(r["replicated_loss"] - r["loss"]) > 1e-3 * abs(r["loss"]), (case, r)
            assert r["gradient_error"] > 1e-3, (case, r)


def test_jax_data_parallel_matches_single_device(two_replica_runs):
    if "jax" not in two_replica_runs:
        pytest.skip("jax is not installed")
    (r,) = results_of(two_replica_runs["jax"])
    assert r["devices"] == 2 and r["batch_layout"] == ["batch", None]
    np.testing.assert_allclose(r["replicated_loss"], r["loss"], rtol=1e-5)
    assert r["gradient_error"] <= 1e-5, r


@pytest.mark.parametrize(
    "loss",
    [
        losses.TripletLoss(positive="easy", negative="semihard"),
        losses.PotentialFieldLoss(num_classes=4, embedding_dim=8, proxies_per_class=2),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_nothing_changes_without_several_replicas(loss):
    labels, x = random_batch(dim=8, seed=1)
    local = type(loss).from_config({**loss.get_config(), "cross_replica": False})
    if isinstance(loss, losses.TrainableMetricLoss):
        local.set_weights(loss.get_weights())
    expected = float(loss(labels, x))
    assert float(local(labels, x)) == expected
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():  # one replica
        assert float(loss(labels, x)) == expected


def test_cross_replica_is_serialised():
    assert losses.ContrastiveLoss().get_config()["cross_replica"] is True
    loss = losses.ContrastiveLoss(cross_replica=False)
    assert losses.DensityAdaptive(loss).cross_replica is False
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is losses.ContrastiveLoss and restored.cross_replica is False
    criterion = losses.PDDMLoss(embedding_dim=4, cross_replica=False)
    model = models.MetricModel(keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)]), criterion)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert restored.criterion.cross_replica is False


def test_labels_are_still_checked_under_a_strategy_scope():
    labels, x = random_batch(seed=2)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        with pytest.raises(ValueError, match="y_true.*integer"):
            losses.TripletLoss()(labels.astype("float32"), x)


def test_make_strategy(monkeypatch):
    assert distributed.make_strategy("default") is tf.distribute.get_strategy()
    assert distributed.make_strategy("mirrored").num_replicas_in_sync >= 1
    with pytest.raises(ValueError, match="strategy must be one of"):
        distributed.make_strategy("parameter_server")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distributed.make_strategy("multiworker")
