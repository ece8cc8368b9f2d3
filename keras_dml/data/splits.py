"""Class splits: which classes are held out, and a dataset restricted to some classes.

Metric learning is evaluated on classes never seen in training, and its
hyperparameters are chosen on classes never seen in training *nor in the test*: the
validation classes are carved out of the training classes. `split_classes` is the one
function that holds classes out (an image folder's test classes, every dataset's
validation classes), so a fraction and a seed name the same classes everywhere.

Example:

>>> from keras_dml.data import split_classes
>>> kept, held_out = split_classes(10, 0.2, seed=0)
>>> len(kept), len(held_out)
(8, 2)
"""
import numpy as np

from keras_dml import backends


def split_classes(classes, fraction, seed=0, name="fraction"):
    """`(kept, held_out)`: `round(fraction * C)` of the `C` classes, drawn with `seed`, held out.

    Args:
        classes: the number of classes `C` (classes are `0 .. C - 1`) or a sequence of
            class names or ids.
        fraction: in `[0, 1)`; 0 holds nothing out. Otherwise both parts must be
            non-empty.
        seed: the same seed holds out the same classes.
        name: the argument name that error messages use (e.g. `"val_fraction"`).

    Both parts keep the order of `classes`, so labels assigned in that order stay sorted.
    """
    classes = list(range(classes)) if isinstance(classes, (int, np.integer)) else list(classes)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"{name} must be in [0, 1); got {name}={fraction}.")
    num_held = int(round(fraction * len(classes)))
    if fraction > 0 and not 0 < num_held < len(classes):
        raise ValueError(
            f"{name}={fraction} of {len(classes)} classes leaves no class for one part; "
            "use more classes or another fraction."
        )
    held = set(np.random.default_rng(seed).permutation(len(classes))[:num_held].tolist())
    kept = [c for i, c in enumerate(classes) if i not in held]
    return kept, [c for i, c in enumerate(classes) if i in held]


def select_classes(dataset, classes, num_classes):
    """The `(item, label)` elements of `dataset` whose label is in `classes`, relabelled.

    `classes` are labels in `0 .. num_classes - 1`; the element with label `classes[i]`
    comes out with label `i`.
    """
    tf = backends.tensorflow("a tf.data.Dataset restricted to some classes")
    new_label = np.full(num_classes, -1, "int32")
    new_label[np.asarray(classes, "int64")] = np.arange(len(classes), dtype="int32")
    new_label = tf.constant(new_label)
    dataset = dataset.filter(lambda item, label: tf.gather(new_label, label) >= 0)
    return dataset.map(lambda item, label: (item, tf.gather(new_label, label)))
