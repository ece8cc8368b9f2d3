"""Embedding-space diagnostics: spread, gap, mode preservation, and their Keras metrics."""
import keras
import numpy as np
import pytest

from keras_dml.evaluation.diagnostics import ClassGap, ClassSpread, class_structure, mode_preservation
from keras_dml.losses.pair import TripletLoss


def modal_set(collapsed=False, classes=4, modes=3, per_mode=10, dim=6, seed=0):
    """Each class has `modes` tight, far-apart clusters; `collapsed` reassigns the mode ids
    at random within a class, as if the class had merged its modes into one cloud."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), modes * per_mode)
    mode_ids = np.tile(np.repeat(np.arange(modes), per_mode), classes)
    centres = rng.normal(size=(classes, modes, dim)) * 3.0
    x = centres[labels, mode_ids] + 0.05 * rng.normal(size=(len(labels), dim))
    if collapsed:
        for c in range(classes):
            members = labels == c
            mode_ids[members] = rng.permutation(mode_ids[members])
    return x.astype("float32"), labels.astype("int32"), mode_ids


def test_class_structure_by_hand():
    # class 0 at (1, +-0.1), class 1 at (+-0.1, 1), class 2 a singleton at (-1, 0); unnormalised
    x = np.array([[1, 0.1], [1, -0.1], [-0.1, 1], [0.1, 1], [-1, 0]], "float32")
    labels = np.array([0, 0, 1, 1, 2])
    stats = class_structure(x, labels, normalize=False)
    # spreads 0.1 and 0.1; gap of class 0: to class 1's centre (0, 1) sqrt(2); of class 1:
    # to the singleton's centre (-1, 0), also sqrt(2) -- the singleton counts as a neighbour.
    np.testing.assert_allclose(stats["spread"], 0.1, rtol=1e-6)
    np.testing.assert_allclose(stats["gap"], np.sqrt(2.0), rtol=1e-6)
    assert stats["classes"] == 2


def test_class_structure_normalizes_by_default():
    x = np.array([[2, 0], [4, 0], [0, 3], [0, 5]], "float32")
    stats = class_structure(x, np.array([0, 0, 1, 1]))
    assert stats["spread"] == 0.0
    np.testing.assert_allclose(stats["gap"], np.sqrt(2.0), rtol=1e-6)


def test_batch_metrics_agree_with_the_set_function():
    x, labels, _ = modal_set(seed=1)
    order = np.random.default_rng(0).permutation(len(labels))
    x, labels = x[order], labels[order]
    expected = class_structure(x, labels)
    spread, gap = ClassSpread(), ClassGap()
    spread.update_state(labels, x)
    gap.update_state(labels[:, None], x)
    np.testing.assert_allclose(float(spread.result()), expected["spread"], rtol=1e-5)
    np.testing.assert_allclose(float(gap.result()), expected["gap"], rtol=1e-5)


def test_metric_averages_classes_over_batches():
    x, labels, _ = modal_set(classes=3, seed=2)
    first, second = labels < 2, labels >= 1  # 2 classes, then 2 classes (class 1 in both)
    spread = ClassSpread(normalize=False)
    spread.update_state(labels[first], x[first])
    spread.update_state(labels[second], x[second])
    per_batch = [class_structure(x[m], labels[m], normalize=False)["spread"] for m in (first, second)]
    np.testing.assert_allclose(float(spread.result()), np.mean(per_batch), rtol=1e-5)
    spread.update_state(np.zeros(4, "int32"), x[:4])  # one class: no gap, counts for nothing
    np.testing.assert_allclose(float(spread.result()), np.mean(per_batch), rtol=1e-5)
    spread.reset_state()
    assert float(spread.result()) == 0.0


def test_metrics_in_compiled_model():
    x, labels, _ = modal_set(seed=3)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(8)])
    model.compile(loss=TripletLoss(), metrics=[ClassSpread(), ClassGap()], jit_compile=True)
    results = model.evaluate(x, labels, batch_size=len(x), return_dict=True, verbose=0)
    expected = class_structure(model.predict(x, verbose=0), labels)
    np.testing.assert_allclose(results["class_spread"], expected["spread"], rtol=1e-4)
    np.testing.assert_allclose(results["class_gap"], expected["gap"], rtol=1e-4)


def test_mode_preservation_separated_and_collapsed():
    x, labels, modes = modal_set()
    kept = mode_preservation(x, labels, modes, k=5)
    assert kept == {"score": 1.0, "modes_kept": 3.0}
    x, labels, modes = modal_set(collapsed=True)
    merged = mode_preservation(x, labels, modes, k=5)
    # random mode ids: a neighbour shares the mode with chance 9/29
    assert 0.2 < merged["score"] < 0.45
    assert merged["modes_kept"] < 1.0


def test_mode_preservation_by_hand():
    # one class on a line: modes a = {0, 1}, b = {2, 10}; nearest neighbours (k=1): 0->1, 1->0, 2->1, 10->2
    x = np.array([[0.0], [1.0], [2.0], [10.0]], "float32")
    result = mode_preservation(x, np.zeros(4, "int32"), np.array([0, 0, 1, 1]), k=1, normalize=False)
    assert result["score"] == 0.75  # shares 1, 1, 0, 1
    assert result["modes_kept"] == 1.0  # mode a averages 1; mode b 0.5, not above 1/2


def test_config_round_trip():
    metric = ClassGap(normalize=False, name="gap")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert isinstance(restored, ClassGap)
    assert restored.get_config() == metric.get_config()
    assert restored.normalize is False


def test_bad_input():
    x, labels, modes = modal_set()
    with pytest.raises(ValueError, match="embeddings"):
        class_structure(x[:, :, None], labels)
    with pytest.raises(ValueError, match="labels"):
        class_structure(x, labels[:-1])
    with pytest.raises(ValueError, match="2 classes"):
        class_structure(x, np.zeros_like(labels))
    with pytest.raises(ValueError, match="2 samples"):
        class_structure(x[:3], np.arange(3))
    bad = x.copy()
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        class_structure(bad, labels)
    with pytest.raises(ValueError, match="modes"):
        mode_preservation(x, labels, modes[:-1])
    with pytest.raises(ValueError, match="k"):
        mode_preservation(x, labels, modes, k=0)
    with pytest.raises(ValueError, match="sample_weight"):
        ClassSpread().update_state(labels, x, sample_weight=np.ones(len(labels)))
