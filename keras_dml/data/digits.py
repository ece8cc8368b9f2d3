"""scikit-learn's bundled 8x8 digits, split by class: the tiny dataset of the tests (glyphs is the default).

Classes 0-4 train and 5-9 are held out, the zero-shot protocol of CUB-200 and Cars196
in miniature. Nothing is downloaded: the images ship inside scikit-learn.

Example:

>>> from keras_dml.data import load_digits
>>> images, labels = load_digits("test")
>>> images.shape[1:], sorted(set(labels.tolist()))
((8, 8, 1), [0, 1, 2, 3, 4])
"""
import numpy as np

CLASSES = {"train": range(0, 5), "test": range(5, 10)}  # the digits of each split


def load_digits(split="train"):
    """`(images, labels)` of one class split as NumPy arrays.

    images: float32 `(n, 8, 8, 1)` in `[0, 1]`; labels: int32 re-indexed from 0.
    """
    if split not in CLASSES:
        raise ValueError(f"Unknown split={split!r} for 'digits'; expected one of {sorted(CLASSES)}.")
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    classes = CLASSES[split]
    keep = np.isin(bunch.target, list(classes))
    images = (bunch.images[keep] / 16.0).astype("float32")[..., None]
    labels = (bunch.target[keep] - classes.start).astype("int32")
    return images, labels
