"""Retrieval evaluation: the standard deep-metric-learning protocol."""
from keras_dml.evaluation.metrics import retrieval_metrics

__all__ = ["retrieval_metrics"]
