"""Retrieval evaluation: the standard deep-metric-learning protocol."""
from keras_dml.evaluation.callback import RetrievalEvaluation
from keras_dml.evaluation.knn import nearest_neighbors
from keras_dml.evaluation.metrics import retrieval_metrics

__all__ = ["RetrievalEvaluation", "nearest_neighbors", "retrieval_metrics"]
