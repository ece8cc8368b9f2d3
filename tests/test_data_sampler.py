"""class_balanced: exact P x K batches, class-contiguous, seeded, covering every class; arrays and tf.data alike."""
import os
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from keras_dml.data import augment, class_balanced
from keras_dml.data.sampler import PKBatches, _sample_within_classes

# 7 classes of sizes 1..7 (labels 10, 20, ...): the small ones force sampling with replacement.
SIZES = [1, 2, 3, 4, 5, 6, 7]
LABELS = np.repeat(np.arange(10, 80, 10), SIZES).astype("int32")


def indexed_dataset(labels=LABELS):
    """Items are their own index, so a batch tells which stored items it drew."""
    return tf.data.Dataset.from_tensor_slices((np.arange(len(labels)), labels))


def draw(num_batches, classes_per_batch=3, samples_per_class=3, seed=0, **kwargs):
    batches = class_balanced(indexed_dataset(), classes_per_batch, samples_per_class, seed=seed,
                             num_batches=num_batches, **kwargs)
    return [(items.numpy(), labels.numpy()) for items, labels in batches]


def test_every_batch_is_p_classes_of_k_contiguous_samples():
    batches = draw(20, classes_per_batch=3, samples_per_class=3)
    assert len(batches) == 20
    for items, labels in batches:
        assert items.shape == labels.shape == (9,)
        np.testing.assert_array_equal(LABELS[items], labels)  # each label is its item's
        blocks = labels.reshape(3, 3)  # class-contiguous: one class per block of K
        assert (blocks == blocks[:, :1]).all()
        assert len(set(blocks[:, 0])) == 3
        for block in items.reshape(3, 3):
            size = SIZES[LABELS[block[0]] // 10 - 1]
            if size >= 3:  # enough images: K distinct ones
                assert len(set(block)) == 3


def test_small_classes_are_sampled_with_replacement():
    singles = [items for items_batch, _ in draw(30) for items in items_batch.reshape(3, 3) if items[0] == 0]
    assert singles, "the 1-image class was never drawn"
    for block in singles:
        np.testing.assert_array_equal(block, [0, 0, 0])


def test_every_class_is_drawn_once_per_round():
    # 7 classes, P = 3: rounds of 7 // 3 = 2 batches with 6 distinct classes each.
    batches = draw(40)
    for start in range(0, 40, 2):
        round_classes = np.concatenate([labels[::3] for _, labels in batches[start : start + 2]])
        assert len(set(round_classes)) == 6
    counts = Counter(label for _, labels in batches for label in labels[::3])
    assert set(counts) == set(LABELS) and min(counts.values()) >= 14  # sits out a round now and then
    drawn = {item for items, _ in batches for item in items}
    assert drawn == set(range(len(LABELS)))  # and every image of every class


def test_deterministic_under_a_seed():
    first, again, other = draw(5, seed=3), draw(5, seed=3), draw(5, seed=4)
    for (a_items, a_labels), (b_items, b_labels) in zip(first, again):
        np.testing.assert_array_equal(a_items, b_items)
        np.testing.assert_array_equal(a_labels, b_labels)
    assert any((a != b).any() for (a, _), (b, _) in zip(first, other))


def test_within_class_draws_are_uniform_subsets():
    # Floyd's algorithm against its definition: K distinct of n, each item with chance K / n.
    count = np.array([5] * 4000 + [2] * 4000, "int64")
    local = _sample_within_classes(count, 3, np.random.default_rng(7))
    subsets, replaced = local[:4000], local[4000:]
    assert ((subsets >= 0) & (subsets < 5)).all() and ((replaced >= 0) & (replaced < 2)).all()
    assert all(len(set(row)) == 3 for row in subsets)
    frequency = np.bincount(subsets.ravel(), minlength=5) / 4000
    np.testing.assert_allclose(frequency, [3 / 5] * 5, atol=0.04)
    np.testing.assert_allclose(np.bincount(replaced.ravel(), minlength=2) / 12000, [0.5, 0.5], atol=0.03)


def test_transform_gets_a_per_image_seed_and_stays_deterministic():
    images = np.random.default_rng(0).integers(0, 256, size=(12, 10, 10, 3)).astype("uint8")
    labels = np.repeat(np.arange(4), 3).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))

    def run(seed):
        batches = class_balanced(dataset, 2, 2, seed=seed, transform=augment.train_transform(6), num_batches=3)
        return [images.numpy() for images, _ in batches]

    first, again = run(1), run(1)
    assert first[0].shape == (4, 6, 6, 3) and first[0].dtype == np.float32
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0][0], first[0][1])  # two images of a class, two crops


def test_bad_arguments():
    dataset = indexed_dataset()
    with pytest.raises(ValueError, match="samples_per_class must be at least 2"):
        class_balanced(dataset, 2, 1)
    with pytest.raises(ValueError, match="classes_per_batch=8 is larger than the number of classes.*7"):
        class_balanced(dataset, 8, 2)
    with pytest.raises(ValueError, match="classes_per_batch"):
        class_balanced(dataset, 0, 2)
    with pytest.raises(ValueError, match="samples_per_class"):
        class_balanced(dataset, 2, 2.5)
    with pytest.raises(ValueError, match="empty"):
        class_balanced(dataset.take(0), 2, 2)
    with pytest.raises(ValueError, match="integer scalars"):
        class_balanced(tf.data.Dataset.from_tensor_slices((np.arange(4), np.zeros(4))), 2, 2)
    with pytest.raises(ValueError, match=r"\(item, label\) pairs"):
        class_balanced(tf.data.Dataset.range(4), 2, 2)
    ragged = tf.data.Dataset.range(1, 5).map(lambda n: (tf.zeros([n, 2]), tf.cast(n % 2, "int32")))
    with pytest.raises(ValueError, match="one shape"):
        class_balanced(ragged, 2, 2)


def test_each_replica_gets_whole_classes():
    """Under tf.distribute, 2 replicas split each P = 4 x K = 3 batch into 2 classes each."""
    script = textwrap.dedent(
        """
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from keras_dml.data import class_balanced
        labels = tf.repeat(tf.range(6), 4)
        dataset = tf.data.Dataset.from_tensor_slices((tf.range(24), labels))
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        batches = class_balanced(dataset, 4, 3, seed=0, num_batches=3)
        for _, labels in strategy.experimental_distribute_dataset(batches):
            for part in strategy.experimental_local_results(labels):
                print(" ".join(str(int(label)) for label in part))
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    parts = [line.split() for line in result.stdout.strip().splitlines()]
    assert len(parts) == 6  # 3 batches x 2 replicas
    for part in parts:
        assert len(part) == 6 and part[:3] == [part[0]] * 3 and part[3:] == [part[3]] * 3
    for first, second in zip(parts[::2], parts[1::2]):
        assert len({first[0], first[3], second[0], second[3]}) == 4


def test_arrays_give_the_same_batches_as_their_dataset():
    """NumPy arrays give a PyDataset, a tf.data.Dataset a pipeline: the same batches under the same seed."""
    images = np.random.default_rng(0).normal(size=(len(LABELS), 3)).astype("float32")
    from_arrays = class_balanced((images, LABELS), 3, 2, seed=5, num_batches=30)
    from_dataset = class_balanced(tf.data.Dataset.from_tensor_slices((images, LABELS)), 3, 2, seed=5, num_batches=30)
    assert isinstance(from_arrays, PKBatches) and from_arrays.num_batches == 30
    assert isinstance(from_dataset, tf.data.Dataset)
    for (a_images, a_labels), (b_images, b_labels) in zip(from_arrays, from_dataset, strict=True):
        assert isinstance(a_images, np.ndarray) and a_labels.dtype == LABELS.dtype
        np.testing.assert_array_equal(a_images, b_images.numpy())
        np.testing.assert_array_equal(a_labels, b_labels.numpy())
    # Any batch can be asked for first; an endless stream continues past any length.
    endless = class_balanced((images, LABELS), 3, 2, seed=5)
    assert endless.num_batches is None
    np.testing.assert_array_equal(endless[29][1], from_arrays[29][1])
    assert endless[10**6][1].shape == (6,)
    with pytest.raises(IndexError):
        from_arrays[30]
    other_seed = class_balanced((images, LABELS), 3, 2, seed=6, num_batches=30)
    assert any((a[1] != b[1]).any() for a, b in zip(from_arrays, other_seed))


def test_arrays_with_a_transform_give_the_transformed_pipeline():
    images = np.random.default_rng(0).integers(0, 256, size=(12, 10, 10, 3)).astype("uint8")
    labels = np.repeat(np.arange(4), 3).astype("int32")
    transform = augment.train_transform(6)
    from_arrays = class_balanced((images, labels), 2, 2, seed=1, transform=transform, num_batches=2)
    from_dataset = class_balanced(tf.data.Dataset.from_tensor_slices((images, labels)), 2, 2, seed=1,
                                  transform=transform, num_batches=2)
    for (a_images, a_labels), (b_images, b_labels) in zip(from_arrays, from_dataset, strict=True):
        np.testing.assert_array_equal(a_images.numpy(), b_images.numpy())
        np.testing.assert_array_equal(a_labels.numpy(), b_labels.numpy())


def test_bad_arrays():
    with pytest.raises(ValueError, match="differ in length"):
        class_balanced((np.zeros((3, 2)), np.arange(4)), 2, 2)
    with pytest.raises(ValueError, match="integer scalars"):
        class_balanced((np.zeros((4, 2)), np.zeros(4)), 2, 2)
    with pytest.raises(ValueError, match="pair"):
        class_balanced((np.zeros(4), np.arange(4), np.arange(4)), 2, 2)
    with pytest.raises(ValueError, match="empty"):
        class_balanced((np.zeros((0, 2)), np.zeros(0, "int32")), 2, 2)
    with pytest.raises(ValueError, match="num_batches"):
        class_balanced((np.zeros((4, 2)), np.arange(4)), 2, 2, num_batches=0)


def test_fit_trains_on_array_batches_here_too():
    """The PyDataset of arrays under this process's backend (TensorFlow; the others in test_backend_suites.py)."""
    import keras

    from keras_dml.losses import TripletLoss

    x = np.random.default_rng(0).normal(size=(40, 6)).astype("float32")
    y = (np.arange(40) % 5).astype("int32")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.UnitNormalization()])
    model.compile(optimizer="adam", loss=TripletLoss())
    history = model.fit(class_balanced((x, y), 4, 3, seed=0), epochs=2, steps_per_epoch=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
