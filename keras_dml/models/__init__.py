"""Models: `MetricModel` joins an embedder to the criterion that trains it."""
from keras_dml.models.metric_model import MetricModel

__all__ = ["MetricModel"]
