"""Metric-learning losses: `loss(labels, embeddings)` -> float32 scalar."""
from keras_dml.losses.base import MetricLoss
from keras_dml.losses.pair import ContrastiveLoss, MultiSimilarityLoss, NPairLoss, PairLoss, TripletLoss

__all__ = ["MetricLoss", "PairLoss", "ContrastiveLoss", "TripletLoss", "NPairLoss", "MultiSimilarityLoss"]
