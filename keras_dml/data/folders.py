"""Image folders as datasets: `root/<class name>/<image files>`, split by class.

Classes are the sub-folders of `root`, sorted by name; a class's images are the files
with an image extension anywhere below it. With `test_fraction > 0`, `split_classes`
holds that fraction of the classes (drawn with `seed`) out as the `"test"` split; the
others are `"train"`. Labels follow the sorted class names within a split, from 0.

Every image of the split is decoded once when it is loaded (`images.find_corrupt`,
the decoder training uses), so a damaged file is found and named then, not in the
middle of `fit`.

Example:

>>> from keras_dml.data import folder_classes, load_image_folder
>>> test, n = load_image_folder("my_images", "test", test_fraction=0.25, seed=0)  # doctest: +SKIP
>>> folder_classes("my_images", test_fraction=0.25, seed=0)["test"]  # doctest: +SKIP
['dogs', 'owls']
"""
import dataclasses
import os
import pathlib
import warnings

import numpy as np

from keras_dml import backends, checks

tf = backends.tensorflow("Image folders (keras_dml.data.load_image_folder, a tf.data pipeline)")

from keras_dml.data import images  # noqa: E402 (after the TensorFlow check)
from keras_dml.data.splits import split_classes  # noqa: E402

FOLDER_SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class FolderSplit:
    """The verified files of one split: `paths[i]` has label `labels[i]`, class `class_names[labels[i]]`."""

    class_names: list
    paths: list
    labels: np.ndarray


def folder_classes(path, test_fraction=0.0, seed=0):
    """`{"train": [class names], "test": [class names]}` of an image folder, without reading images.

    The record of a run's class split: the same arguments give the same classes to
    `load_image_folder`.
    """
    class_dirs = _class_dirs(path)
    train, test = split_classes([d.name for d in class_dirs], test_fraction, seed, name="test_fraction")
    return {"train": train, "test": test}


def list_image_folder(path, split="train", *, test_fraction=0.0, seed=0, on_corrupt="warn"):
    """The `FolderSplit` of one class split of an image folder, every file decoded once.

    A file that does not decode (damaged, not an image whatever its name says, empty),
    and a path with an image name that is not a file (a folder, a dangling link), is
    corrupt: `on_corrupt="warn"` skips it with a warning naming it, `"raise"` raises a
    `ValueError` naming every corrupt file.
    """
    checks.one_of(on_corrupt, "on_corrupt", ("warn", "raise"))
    checks.one_of(split, "split", FOLDER_SPLITS)
    classes = folder_classes(path, test_fraction, seed)
    if split == "test" and not classes["test"]:
        raise ValueError(
            "split='test' of an image folder needs test_fraction > 0 (the fraction of the classes "
            "held out for testing), e.g. test_fraction=0.25."
        )
    root = pathlib.Path(path)
    files = {name: sorted(f for f in (root / name).rglob("*") if f.suffix.lower() in images.IMAGE_EXTENSIONS)
             for name in classes[split]}
    corrupt = images.find_corrupt([f for class_files in files.values() for f in class_files])
    if corrupt and on_corrupt == "raise":
        listed = "\n".join(f"  {p}: {reason}" for p, reason in corrupt.items())
        raise ValueError(f"Corrupt image files in {root}:\n{listed}\nPass on_corrupt='warn' to skip them.")
    for file, reason in corrupt.items():
        warnings.warn(f"Corrupt image file {file}: {reason}. Skipped.", stacklevel=3)
    paths, labels = [], []
    for label, name in enumerate(classes[split]):
        readable = [os.fspath(f) for f in files[name] if os.fspath(f) not in corrupt]
        if not readable:
            raise ValueError(
                f"Class folder {root / name} has no readable images ({', '.join(images.IMAGE_EXTENSIONS)})."
            )
        paths += readable
        labels += [label] * len(readable)
    return FolderSplit(class_names=classes[split], paths=paths, labels=np.asarray(labels, "int32"))


def load_image_folder(path, split="train", *, test_fraction=0.0, seed=0, on_corrupt="warn", return_paths=False):
    """`(dataset, num_classes)` of `(encoded image, label)` from `path/<class name>/<image files>`.

    See `list_image_folder` for the split and the corrupt-file check. Images are the
    encoded file bytes, in the order of the sorted class names, then file paths. With
    `return_paths=True` the result is `(dataset, num_classes, paths)`, `paths[i]` the
    file of the dataset's `i`-th element (to show search results).
    """
    files = list_image_folder(path, split, test_fraction=test_fraction, seed=seed, on_corrupt=on_corrupt)
    dataset = read_files(files)
    if return_paths:
        return dataset, len(files.class_names), files.paths
    return dataset, len(files.class_names)


def read_files(files):
    """A `tf.data.Dataset` of `(file bytes, label)` of a `FolderSplit`, read in parallel, in order."""
    dataset = tf.data.Dataset.from_tensor_slices((files.paths, tf.constant(files.labels, "int32")))
    return dataset.map(lambda file, label: (tf.io.read_file(file), label), num_parallel_calls=tf.data.AUTOTUNE)


def select_files(files, classes):
    """The `FolderSplit` of the classes `classes` (labels of `files`) only, class `classes[i]` relabelled `i`."""
    new_label = {old: new for new, old in enumerate(classes)}
    keep = [i for i, label in enumerate(files.labels.tolist()) if label in new_label]
    return FolderSplit(class_names=[files.class_names[c] for c in classes],
                       paths=[files.paths[i] for i in keep],
                       labels=np.asarray([new_label[files.labels[i]] for i in keep], "int32"))


def _class_dirs(path):
    root = pathlib.Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {root} does not exist or is not a folder.")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"Image folder {root} has no class sub-folders; expected {root}/<class name>/<images>.")
    return class_dirs
