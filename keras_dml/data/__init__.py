"""Datasets for metric learning: one description per dataset, class splits, image files, P x K batches.

Each name loads its module on first use, so that the arrays of `load_glyphs` and
`load_digits` and the P x K batches of `class_balanced` on arrays need no TensorFlow;
`load_dataset`, `get_dataset`, the image folders, `images` and `augment` are `tf.data`
pipelines and need it (`keras_dml.backends` says so when it is missing).

Example:

>>> from keras_dml.data import class_balanced, load_digits
>>> x, y = load_digits("train")
>>> batches = class_balanced((x, y), classes_per_batch=4, samples_per_class=2, seed=0)
"""
import importlib

# Each public name and the submodule that defines it (a submodule itself maps to None).
_NAMES = {
    "DATASETS": "datasets",
    "DatasetInfo": "datasets",
    "augment": None,
    "class_balanced": "sampler",
    "decode_image": "images",
    "folder_classes": "folders",
    "get_dataset": "datasets",
    "images": None,
    "list_image_folder": "folders",
    "load_dataset": "datasets",
    "load_digits": "digits",
    "load_glyphs": "glyphs",
    "load_image_folder": "folders",
    "read_image": "images",
    "split_classes": "splits",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(f"module 'keras_dml.data' has no attribute {name!r}")
    module = importlib.import_module(f"keras_dml.data.{_NAMES[name] or name}")
    return module if _NAMES[name] is None else getattr(module, name)
