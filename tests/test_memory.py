"""CrossBatchMemory: the queue against a plain ring buffer, the loss against memory, save/load, fit, bad input."""
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_dml import losses, miners, models
from tests import reference
from tests.helpers import random_batch, value_and_grad


def batches(count, size=6, dim=4):
    return [random_batch(classes=3, per_class=size // 3, dim=dim, seed=seed)[::-1] for seed in range(count)]


def triplet_against_memory(x, y, memory, memory_labels, filled, own, margin=0.2):
    """Reference: the all-triplet loss of each anchor against the filled memory, its own slot left out."""
    x = reference.normalize(x)
    terms = []
    for i in range(len(y)):
        slots = [s for s in range(filled) if s != own[i]]
        d = {s: np.linalg.norm(x[i] - memory[s]) for s in slots}
        p = [s for s in slots if memory_labels[s] == y[i]]
        n = [s for s in slots if memory_labels[s] != y[i]]
        values = [np.mean([max(d[j] - d[k] + margin, 0) for k in n]) for j in p if n]
        if values:
            terms.append(np.mean(values))
    return np.mean(terms) if terms else 0.0


def test_queue_and_loss_after_several_steps_match_a_plain_reference():
    memory_size = 10  # batches of 6: the third write wraps around
    criterion = losses.CrossBatchMemory(losses.TripletLoss(), memory_size=memory_size)
    seen = []
    for x, y in batches(4):
        position = len(seen) * 6 % memory_size
        value = float(criterion(y, x))
        seen.append((reference.normalize(x), y))
        memory, memory_labels, filled = reference.memory_queue(seen, memory_size)
        own = [(position + i) % memory_size for i in range(len(y))]
        np.testing.assert_allclose(value, triplet_against_memory(x, y, memory, memory_labels, filled, own), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(criterion.memory), memory, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(criterion.memory_labels), memory_labels)
    assert int(np.asarray(criterion.filled)) == filled == memory_size
    assert int(np.asarray(criterion.position)) == 4 * 6 % memory_size


def test_first_batch_equals_the_plain_loss_and_only_anchors_get_gradient():
    (x, y), = batches(1)
    value, grad = value_and_grad(lambda v: losses.CrossBatchMemory(losses.SupConLoss(), memory_size=12)(y, v), x)
    np.testing.assert_allclose(value, reference.supcon(x, y), rtol=1e-5)
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_memory_miner_and_degenerate_memory():
    criterion = losses.CrossBatchMemory(losses.CircleLoss(), memory_size=12,
                                        miner=miners.PairMiner(positive="hard", negative="hard", distance="cosine"))
    (x, y), = batches(1)
    assert float(criterion(y, x)) > 0
    one_class = losses.CrossBatchMemory(losses.CircleLoss(), memory_size=12)
    assert float(one_class(np.zeros(6, "int32"), x)) == 0.0


def test_fit_save_load_keeps_the_queue(tmp_path):
    keras.utils.set_random_seed(0)
    embedder = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    criterion = losses.CrossBatchMemory(losses.MultiSimilarityLoss(), memory_size=16)
    model = models.MetricModel(embedder, criterion)
    model.compile(optimizer="sgd", jit_compile=keras.backend.backend() == "tensorflow")
    x = np.random.default_rng(0).normal(size=(24, 5)).astype("float32")
    y = np.arange(24) % 3
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert int(np.asarray(criterion.filled)) == 16 and int(np.asarray(criterion.position)) == 24 % 16
    np.testing.assert_array_equal(np.asarray(criterion.memory_labels), np.concatenate([y[16:], y[8:16]]))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    for name in ("memory", "memory_labels", "filled", "position"):
        np.testing.assert_array_equal(np.asarray(getattr(restored.criterion, name)), np.asarray(getattr(criterion, name)))
    assert restored.criterion.loss.get_config() == criterion.loss.get_config()


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="loss"):
        losses.CrossBatchMemory(losses.LiftedStructureLoss(), memory_size=8)
    with pytest.raises(ValueError, match="loss"):
        losses.CrossBatchMemory(losses.ProxyAnchorLoss(3, 4), memory_size=8)
    with pytest.raises(ValueError, match="memory_size"):
        losses.CrossBatchMemory(losses.TripletLoss(), memory_size=0)
    with pytest.raises(ValueError, match="miner"):
        losses.CrossBatchMemory(losses.TripletLoss(), memory_size=8, miner="hard")
    (x, y), = batches(1)
    with pytest.raises(ValueError, match="memory_size"):
        losses.CrossBatchMemory(losses.TripletLoss(), memory_size=4)(y, x)
    with pytest.raises(ValueError, match="embedding_dim"):
        losses.CrossBatchMemory(losses.TripletLoss(), memory_size=8, embedding_dim=3)(y, x)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute")
def test_mirrored_strategy_enqueues_the_gathered_batch_once():
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        from keras_dml import losses, models
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32")
        y = (np.arange(16) % 4).astype("int32")
        with strategy.scope():
            embedder = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
            criterion = losses.CrossBatchMemory(losses.TripletLoss(), memory_size=32)
            model = models.MetricModel(embedder, criterion)
            model.compile(optimizer=keras.optimizers.SGD(0.0))
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        labels = criterion.memory_labels.numpy()
        print("RESULT", int(criterion.filled.numpy()), int(criterion.position.numpy()), labels[:16].tolist() == y.tolist())
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parent.parent,
                            capture_output=True, text=True)
    line = next((l for l in result.stdout.splitlines() if l.startswith("RESULT")), None)
    assert line == "RESULT 16 16 True", result.stdout[-2000:] + result.stderr[-3000:]
