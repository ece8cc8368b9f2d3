"""Metric-learning losses: `loss(labels, embeddings)` -> float32 scalar.

Stateless losses are `keras.losses.Loss` subclasses (`compile(loss=...)` on any model);
criteria with trainable weights (proxies, the PDDM unit) are layers, trained through
`keras_dml.models.MetricModel`.
"""
from keras_dml.losses.base import MetricLoss, TrainableMetricLoss
from keras_dml.losses.density import DensityAdaptive, density_regularizer
from keras_dml.losses.pair import ContrastiveLoss, MultiSimilarityLoss, NPairLoss, PairLoss, TripletLoss
from keras_dml.losses.pddm import PDDMLoss
from keras_dml.losses.proxy import PotentialFieldLoss, ProxyAnchorLoss

__all__ = [
    "MetricLoss", "TrainableMetricLoss", "PairLoss",
    "ContrastiveLoss", "TripletLoss", "NPairLoss", "MultiSimilarityLoss",
    "DensityAdaptive", "density_regularizer",
    "PotentialFieldLoss", "ProxyAnchorLoss", "PDDMLoss",
]
