"""Retrieval evaluation: the standard deep-metric-learning protocol, and diagnostics.

`nearest_neighbors` and `rerank` are the search package's (`keras_dml.search`),
re-exported here where the protocol's users look for them.
"""
from keras_dml.evaluation.callback import RetrievalEvaluation
from keras_dml.evaluation.diagnostics import ClassGap, ClassSpread, class_structure, mode_preservation
from keras_dml.evaluation.metrics import retrieval_metrics
from keras_dml.evaluation.rerank import retrieval_metrics_reranked
from keras_dml.search import nearest_neighbors, rerank

__all__ = [
    "RetrievalEvaluation", "nearest_neighbors", "retrieval_metrics",
    "rerank", "retrieval_metrics_reranked",
    "class_structure", "mode_preservation", "ClassSpread", "ClassGap",
]
