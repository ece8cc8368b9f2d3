"""`class_balanced`: P x K batches, `P` classes with `K` samples each, as a `tf.data` pipeline.

It samples from a `tf.data.Dataset` of `(item, label)` or from arrays `(images, labels)`;
`model.fit` takes the result on every backend (Keras reads `tf.data` under JAX too).

Metric losses need positives in every batch; sampling `P = classes_per_batch` classes
and `K = samples_per_class` images of each guarantees `K - 1` positives per anchor.

How a batch is drawn (all inside `tf.data`, from stateless random ops keyed by
`(seed, batch number)`, so the stream is the same on every run with the same seed):

- classes: the classes are shuffled once per *round*; a round is `C // P` batches, each
  taking the next `P` classes of the shuffled order. So the `P` classes of a batch are
  distinct, and every class is drawn once per round (`C % P` classes sit out a round,
  different ones each time);
- samples: `K` distinct images of each class, uniformly; a class with fewer than `K`
  images is sampled with replacement;
- layout: class-contiguous, `[class 1 x K, class 2 x K, ..., class P x K]`. Split into
  `R` equal consecutive slices, as `tf.distribute` does with a global batch, each
  replica gets `P / R` whole classes when `R` divides `P`.

The items are kept in memory, so they should be small: encoded images (what
`load_dataset` gives), paths, or arrays. Decoding and augmentation run per image,
after sampling, in parallel (`transform`).

Example:

>>> from keras_dml.data import class_balanced, load_dataset
>>> train, _ = load_dataset("digits", "train")
>>> batches = class_balanced(train, classes_per_batch=4, samples_per_class=2, seed=0)
>>> images, labels = next(iter(batches))
>>> images.shape, labels.shape
(TensorShape([8, 8, 8, 1]), TensorShape([8]))

From NumPy arrays, e.g. `load_digits`' (the same batches as from their dataset):

>>> from keras_dml.data import load_digits
>>> x, y = load_digits("train")
>>> batches = class_balanced((x, y), classes_per_batch=4, samples_per_class=2, seed=0)
>>> model.fit(batches, steps_per_epoch=100)  # doctest: +SKIP
"""
import numpy as np
import tensorflow as tf

from keras_dml import checks

# Stream ids, so that the class order, the samples and the augmentation draw from
# independent random streams of the same seed.
_CLASSES, _SAMPLES, _AUGMENT = 0, 1, 2


def class_balanced(
    dataset,
    classes_per_batch,
    samples_per_class,
    seed=None,
    transform=None,
    num_batches=None,
    num_parallel_calls=tf.data.AUTOTUNE,
):
    """A `tf.data.Dataset` of `(items, labels)` batches of exactly `P * K` elements.

    Args:
        dataset: finite `tf.data.Dataset` of `(item, label)`, integer scalar labels; or
            a pair of arrays `(items, labels)`, `labels` integers of shape `(n,)`.
        classes_per_batch: `P`, distinct classes per batch (tensorflow-similarity's
            `classes_per_batch`).
        samples_per_class: `K >= 2`, samples of each class per batch (tensorflow-
            similarity's `examples_per_class_per_batch`).
        seed: int; the same seed gives the same batches. None draws one at random.
        transform: optional `transform(item, seed) -> item` applied to each sampled
            item in parallel, e.g. `keras_dml.data.augment.train_transform()`; `seed` is
            a per-element `(2,)` int64 tensor for stateless random ops.
        num_batches: stop after this many batches; None repeats forever (then give
            `model.fit` a `steps_per_epoch`).
        num_parallel_calls: parallelism of `transform`.
    """
    classes_per_batch = checks.positive_int(classes_per_batch, "classes_per_batch")
    samples_per_class = checks.positive_int(samples_per_class, "samples_per_class")
    if samples_per_class < 2:
        raise ValueError(
            f"samples_per_class must be at least 2 so that every sample has a positive; "
            f"got samples_per_class={samples_per_class}."
        )
    items, labels = _in_memory(dataset)
    classes, class_of_item = np.unique(labels.numpy(), return_inverse=True)
    if classes_per_batch > len(classes):
        raise ValueError(
            f"classes_per_batch={classes_per_batch} is larger than the number of classes in "
            f"the dataset ({len(classes)})."
        )
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    key = tf.constant([seed, 0], "int64")
    batch_size = classes_per_batch * samples_per_class

    # Items grouped by class: class c owns by_class[start[c] : start[c] + count[c]].
    by_class = tf.constant(np.argsort(class_of_item, kind="stable"), "int64")
    count = np.bincount(class_of_item, minlength=len(classes))
    start = tf.constant(np.cumsum(count) - count, "int64")
    count = tf.constant(count, "int64")
    batches_per_round = len(classes) // classes_per_batch

    def batch_indices(step):
        round_key = _stream(key, _CLASSES, step // batches_per_round)
        order = tf.argsort(tf.random.stateless_uniform([len(classes)], round_key))
        slot = step % batches_per_round
        chosen = tf.cast(order[slot * classes_per_batch : (slot + 1) * classes_per_batch], "int64")
        local = _sample_within_classes(
            tf.gather(count, chosen), samples_per_class, _stream(key, _SAMPLES, step)
        )
        return tf.gather(by_class, tf.gather(start, chosen)[:, None] + local)

    def element(position, index):
        item = tf.gather(items, index)
        if transform is not None:
            item = transform(item, _stream(key, _AUGMENT, position))
        return item, tf.gather(labels, index)

    steps = tf.data.Dataset.counter()
    if num_batches is not None:
        steps = steps.take(num_batches)
    indices = steps.map(lambda step: tf.reshape(batch_indices(step), [-1])).unbatch()
    batches = indices.enumerate().map(element, num_parallel_calls=num_parallel_calls, deterministic=True)
    return batches.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _sample_within_classes(count, samples, seed):
    """`(P, samples)` positions in `[0, count)` per class: distinct where `count >= samples`.

    Distinct positions come from Floyd's algorithm (a uniform random subset in
    `samples` steps, whatever the class size); smaller classes draw with replacement.
    """
    uniform = tf.random.stateless_uniform([tf.shape(count)[0], samples], seed, dtype="float64")

    def below(bound, column):  # uniform integers in [0, bound)
        return tf.minimum(tf.cast(uniform[:, column] * tf.cast(bound, "float64"), "int64"), bound - 1)

    distinct = []
    for column in range(samples):
        top = tf.maximum(count - samples + column, 0)
        draw = below(top + 1, column)
        taken = tf.reduce_any(tf.stack([draw == d for d in distinct], axis=1), axis=1) if distinct else False
        distinct.append(tf.where(taken, top, draw))
    with_replacement = tf.stack([below(count, column) for column in range(samples)], axis=1)
    return tf.where((count >= samples)[:, None], tf.stack(distinct, axis=1), with_replacement)


def _stream(key, stream, counter):
    """The stateless seed of element `counter` of random stream `stream`."""
    key = tf.random.experimental.stateless_fold_in(key, stream)
    return tf.random.experimental.stateless_fold_in(key, tf.cast(counter, "int64"))


def _in_memory(dataset):
    """All `(items, labels)` of a finite dataset, or of a pair of arrays, as two tensors."""
    if isinstance(dataset, (tuple, list)):
        return _arrays_in_memory(dataset)
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"dataset must be a tf.data.Dataset or a pair of arrays (items, labels); "
                         f"got {type(dataset).__name__}.")
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError(f"dataset must yield (item, label) pairs; its elements are {spec}.")
    label_spec = spec[1]
    if label_spec.shape.rank != 0 or not label_spec.dtype.is_integer:
        raise ValueError(f"dataset labels must be integer scalars; got {label_spec}.")
    items, labels = [], []
    try:
        for item_batch, label_batch in dataset.batch(4096):
            items.append(item_batch)
            labels.append(label_batch)
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(
            "class_balanced keeps the dataset's items in memory as one tensor, so they need one "
            "shape: give encoded images (as load_dataset does), paths, or resized images. "
            f"TensorFlow said: {error.message}"
        ) from None
    if not items:
        raise ValueError("dataset is empty.")
    return tf.concat(items, axis=0), tf.concat(labels, axis=0)


def _arrays_in_memory(pair):
    if len(pair) != 2:
        raise ValueError(f"dataset given as arrays must be a pair (items, labels); got {len(pair)} arrays.")
    items, labels = (np.asarray(array) for array in pair)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"dataset labels must be integer scalars, an array of shape (n,); got "
                         f"{labels.dtype} of shape {labels.shape}.")
    if len(items) != len(labels):
        raise ValueError(f"dataset arrays differ in length: {len(items)} items, {len(labels)} labels.")
    if not len(labels):
        raise ValueError("dataset is empty.")
    return tf.constant(items), tf.constant(labels)
