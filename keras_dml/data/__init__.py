"""Datasets for metric learning."""
from keras_dml.data.digits import load_digits

__all__ = ["load_digits"]
