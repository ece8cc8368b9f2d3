"""Datasets for metric learning: class-split loaders, P x K sampling, augmentation."""
from keras_dml.data.datasets import DATASETS, load_dataset, load_image_folder
from keras_dml.data.digits import load_digits

__all__ = ["DATASETS", "load_dataset", "load_digits", "load_image_folder"]
