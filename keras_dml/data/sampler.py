"""`class_balanced`: P x K batches, `P` classes with `K` samples each, the same stream on every backend.

From NumPy arrays `(items, labels)` the batches are a `keras.utils.PyDataset`
(`PKBatches`), which `model.fit` takes on every backend, TensorFlow not needed; from a
`tf.data.Dataset`, or with a `transform`, they are a `tf.data` pipeline. Both draw the
same batches under the same seed: which items form batch `b` is one NumPy function of
`(seed, b)` (`PKIndices`), whatever path serves them.

Metric losses need positives in every batch; sampling `P = classes_per_batch` classes
and `K = samples_per_class` images of each guarantees `K - 1` positives per anchor.

How a batch is drawn (from random streams keyed by `(seed, stream, batch number)`, so the
stream is the same on every run with the same seed):

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
`load_dataset` gives), paths, or arrays. In the `tf.data` pipeline, decoding and
augmentation run per image, after sampling, in parallel (`transform`).

Example, from NumPy arrays (any backend):

>>> from keras_dml.data import class_balanced, load_digits
>>> x, y = load_digits("train")
>>> batches = class_balanced((x, y), classes_per_batch=4, samples_per_class=2, seed=0)
>>> images, labels = batches[0]
>>> images.shape, labels.shape
((8, 8, 8, 1), (8,))
>>> model.fit(batches, steps_per_epoch=100)  # doctest: +SKIP

From a `tf.data.Dataset` (TensorFlow), the same batches:

>>> from keras_dml.data import load_dataset
>>> train, _ = load_dataset("digits", "train")
>>> images, labels = next(iter(class_balanced(train, classes_per_batch=4, samples_per_class=2, seed=0)))
>>> images.shape, labels.shape
(TensorShape([8, 8, 8, 1]), TensorShape([8]))
"""
import keras
import numpy as np

from keras_dml import backends, checks

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
    num_parallel_calls=None,
):
    """`(items, labels)` batches of exactly `P * K` elements: a `PKBatches` from arrays, else a `tf.data.Dataset`.

    Args:
        dataset: a pair of arrays `(items, labels)`, `labels` integers of shape `(n,)`;
            or a finite `tf.data.Dataset` of `(item, label)`, integer scalar labels.
        classes_per_batch: `P`, distinct classes per batch (tensorflow-similarity's
            `classes_per_batch`).
        samples_per_class: `K >= 2`, samples of each class per batch (tensorflow-
            similarity's `examples_per_class_per_batch`).
        seed: int; the same seed gives the same batches. None draws one at random.
        transform: optional `transform(item, seed) -> item` applied to each sampled
            item in parallel inside `tf.data`, e.g. `keras_dml.data.augment.train_transform()`;
            `seed` is a per-element `(2,)` int64 tensor for stateless random ops. With a
            transform the result is a `tf.data.Dataset`, from arrays too.
        num_batches: stop after this many batches; None repeats forever (then give
            `model.fit` a `steps_per_epoch`).
        num_parallel_calls: parallelism of `transform`; None is `tf.data.AUTOTUNE`.

    A finite `PKBatches` is shuffled batch-wise by `model.fit` unless `shuffle=False`
    is passed: the same batches, in the order fit chooses. An endless one is never
    shuffled (fit warns so unless given `shuffle=False`); its batches are random already.
    """
    classes_per_batch = checks.positive_int(classes_per_batch, "classes_per_batch")
    samples_per_class = checks.positive_int(samples_per_class, "samples_per_class")
    if samples_per_class < 2:
        raise ValueError(
            f"samples_per_class must be at least 2 so that every sample has a positive; "
            f"got samples_per_class={samples_per_class}."
        )
    if num_batches is not None:
        num_batches = checks.positive_int(num_batches, "num_batches")
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    if isinstance(dataset, (tuple, list)):
        items, labels = _arrays(dataset)
        indices = PKIndices(labels, classes_per_batch, samples_per_class, seed)
        if transform is None:
            return PKBatches(items, labels, indices, num_batches)
        tf = backends.tensorflow("class_balanced with a transform (a tf.data pipeline)",
                                 instead="class_balanced((items, labels), ...) without a transform")
        items, labels = tf.constant(items), tf.constant(labels)
    else:
        items, labels = _in_memory(dataset)
        indices = PKIndices(labels.numpy(), classes_per_batch, samples_per_class, seed)
    return _tf_batches(items, labels, indices, seed, transform, num_batches, num_parallel_calls)


class PKIndices:
    """Which items form each P x K batch: `batch(b)`, the `(P * K,)` int64 item positions of batch `b`.

    A pure function of `(seed, b)`, so any batch can be drawn in any order, by any path.
    """

    def __init__(self, labels, classes_per_batch, samples_per_class, seed):
        classes, class_of_item = np.unique(labels, return_inverse=True)
        if classes_per_batch > len(classes):
            raise ValueError(
                f"classes_per_batch={classes_per_batch} is larger than the number of classes in "
                f"the dataset ({len(classes)})."
            )
        self.classes_per_batch, self.samples_per_class, self.seed = classes_per_batch, samples_per_class, seed
        self.batch_size = classes_per_batch * samples_per_class
        # Items grouped by class: class c owns by_class[start[c] : start[c] + count[c]].
        self._by_class = np.argsort(class_of_item.reshape(-1), kind="stable").astype("int64")
        self._count = np.bincount(class_of_item.reshape(-1), minlength=len(classes)).astype("int64")
        self._start = np.cumsum(self._count) - self._count
        self._batches_per_round = len(classes) // classes_per_batch

    def batch(self, step):
        step = int(step)
        order = _random(self.seed, _CLASSES, step // self._batches_per_round).permutation(len(self._count))
        slot = step % self._batches_per_round
        chosen = order[slot * self.classes_per_batch : (slot + 1) * self.classes_per_batch]
        local = _sample_within_classes(self._count[chosen], self.samples_per_class,
                                       _random(self.seed, _SAMPLES, step))
        return self._by_class[self._start[chosen][:, None] + local].reshape(-1)


class PKBatches(keras.utils.PyDataset):
    """P x K batches of in-memory arrays, as `model.fit` takes them on every backend: `batches[b]` is batch `b`.

    Endless (`num_batches` None) unless a number of batches is given; `model.fit` then
    needs a `steps_per_epoch`, and each epoch continues where the last one stopped.
    """

    def __init__(self, items, labels, indices, num_batches=None):
        super().__init__()
        self.items, self.labels, self.indices, self._num_batches = items, labels, indices, num_batches

    @property
    def num_batches(self):
        return self._num_batches

    def __getitem__(self, index):
        if self._num_batches is not None and not 0 <= index < self._num_batches:
            raise IndexError(f"batch {index} of {self._num_batches}")
        chosen = self.indices.batch(index)
        return self.items[chosen], self.labels[chosen]


def _tf_batches(items, labels, indices, seed, transform, num_batches, num_parallel_calls):
    """The `tf.data` pipeline of the batches `indices` draws, `transform` applied per item."""
    tf = backends.tensorflow("class_balanced on a tf.data.Dataset",
                             instead="class_balanced((items, labels), ...) on NumPy arrays")
    key = tf.constant([seed, 0], "int64")

    def batch_indices(step):
        chosen = tf.numpy_function(indices.batch, [step], tf.int64, stateful=False)
        return tf.ensure_shape(chosen, [indices.batch_size])

    def element(position, index):
        item = tf.gather(items, index)
        if transform is not None:
            item = transform(item, _augment_seed(tf, key, position))
        return item, tf.gather(labels, index)

    steps = tf.data.Dataset.counter()
    if num_batches is not None:
        steps = steps.take(num_batches)
    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
    positions = steps.map(batch_indices).unbatch()
    batches = positions.enumerate().map(element, num_parallel_calls=parallel, deterministic=True)
    return batches.batch(indices.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _augment_seed(tf, key, position):
    """The stateless seed of item `position`'s augmentation: its own element of the augmentation stream."""
    stream = tf.random.experimental.stateless_fold_in(key, _AUGMENT)
    return tf.random.experimental.stateless_fold_in(stream, position)


def _sample_within_classes(count, samples, rng):
    """`(P, samples)` positions in `[0, count)` per class: distinct where `count >= samples`.

    Distinct positions come from Floyd's algorithm (a uniform random subset in
    `samples` steps, whatever the class size); smaller classes draw with replacement.
    """
    uniform = rng.random((len(count), samples))

    def below(bound, column):  # uniform integers in [0, bound)
        return np.minimum((uniform[:, column] * bound).astype("int64"), bound - 1)

    distinct = []
    for column in range(samples):
        top = np.maximum(count - samples + column, 0)
        draw = below(top + 1, column)
        taken = np.any([draw == d for d in distinct], axis=0) if distinct else False
        distinct.append(np.where(taken, top, draw))
    with_replacement = np.stack([below(count, column) for column in range(samples)], axis=1)
    return np.where((count >= samples)[:, None], np.stack(distinct, axis=1), with_replacement)


def _random(seed, stream, counter):
    """The NumPy generator of element `counter` of random stream `stream` under `seed`."""
    return np.random.default_rng([seed, stream, counter])


def _in_memory(dataset):
    """All `(items, labels)` of a finite `tf.data.Dataset`, as two tensors."""
    tf = backends.tensorflow("class_balanced on a tf.data.Dataset",
                             instead="class_balanced((items, labels), ...) on NumPy arrays")
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


def _arrays(pair):
    """`(items, labels)` as NumPy arrays, checked."""
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
    return items, labels
