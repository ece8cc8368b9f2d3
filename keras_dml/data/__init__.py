"""Datasets for metric learning: class-split loaders, P x K sampling, augmentation."""
from keras_dml.data import augment
from keras_dml.data.datasets import DATASETS, load_dataset, load_image_folder
from keras_dml.data.digits import load_digits
from keras_dml.data.glyphs import load_glyphs
from keras_dml.data.sampler import class_balanced

__all__ = ["DATASETS", "augment", "class_balanced", "load_dataset", "load_digits", "load_glyphs", "load_image_folder"]
