"""Models: `build_embedder` makes an embedder; `MetricModel` joins it to the criterion that trains it."""
from keras_dml.models.embedder import BACKBONES, build_embedder
from keras_dml.models.metric_model import MetricModel

__all__ = ["BACKBONES", "MetricModel", "build_embedder"]
