"""Retrieval evaluation: the standard deep-metric-learning protocol, and diagnostics."""
from keras_dml.evaluation.callback import RetrievalEvaluation
from keras_dml.evaluation.diagnostics import ClassGap, ClassSpread, class_structure, mode_preservation
from keras_dml.evaluation.knn import nearest_neighbors
from keras_dml.evaluation.metrics import retrieval_metrics
from keras_dml.evaluation.rerank import rerank, retrieval_metrics_reranked

__all__ = [
    "RetrievalEvaluation", "nearest_neighbors", "retrieval_metrics",
    "rerank", "retrieval_metrics_reranked",
    "class_structure", "mode_preservation", "ClassSpread", "ClassGap",
]
