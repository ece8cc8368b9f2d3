"""Datasets for metric learning: one description per dataset, class splits, image files, P x K batches."""
from keras_dml.data import augment, images
from keras_dml.data.datasets import DATASETS, DatasetInfo, get_dataset, load_dataset
from keras_dml.data.digits import load_digits
from keras_dml.data.folders import folder_classes, list_image_folder, load_image_folder
from keras_dml.data.glyphs import load_glyphs
from keras_dml.data.images import decode_image, read_image
from keras_dml.data.sampler import class_balanced
from keras_dml.data.splits import split_classes

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "augment",
    "class_balanced",
    "decode_image",
    "folder_classes",
    "get_dataset",
    "images",
    "list_image_folder",
    "load_dataset",
    "load_digits",
    "load_glyphs",
    "load_image_folder",
    "read_image",
    "split_classes",
]
