"""`MultipleLosses`: a weighted sum of criteria on the same embeddings, one of which may hold weights."""
import keras

from keras_dml import checks, miners
from keras_dml.losses.base import LossTemplate, TrainableMetricLoss


@keras.saving.register_keras_serializable(package="keras_dml")
class MultipleLosses(TrainableMetricLoss):
    """`L = sum_c w_c L_c(labels, embeddings)`: several keras_dml criteria, weighted.

    Each criterion keeps its own settings (normalisation, distance, reduction); any may
    be a criterion with weights (a proxy or classification loss, `MarginLoss`), so
    `MultipleLosses` is a layer: train it with `keras_dml.models.MetricModel`, which
    builds every part from the embedder's output. Under `tf.distribute` the global batch
    is gathered once, for all of them. `sample_weight` goes to every criterion (each
    must take it); a `selection` to those that take one (the pair losses).

    Example:

    >>> import numpy as np, keras_dml
    >>> loss = keras_dml.losses.MultipleLosses(
    ...     [keras_dml.losses.TripletLoss(), keras_dml.losses.ProxyAnchorLoss(num_classes=2, embedding_dim=8)],
    ...     weights=[1.0, 0.5])
    >>> labels = np.array([0, 0, 1, 1])
    >>> float(loss(labels, np.random.default_rng(0).normal(size=(4, 8)).astype("float32"))) > 0.0
    True
    """

    def __init__(self, losses, weights=None, cross_replica=True, **kwargs):
        if "reduction" in kwargs:
            raise ValueError("MultipleLosses takes no reduction: set reduction on each of its losses.")
        if not isinstance(losses, (list, tuple)) or not losses:
            raise ValueError(f"losses must be a non-empty list of keras_dml losses; got {losses!r}.")
        criteria = [keras.saving.deserialize_keras_object(loss) if isinstance(loss, dict) else loss for loss in losses]
        for loss in criteria:
            if not isinstance(loss, LossTemplate):
                raise ValueError(f"losses must hold keras_dml losses; got {type(loss).__name__}.")
        weights = [1.0] * len(criteria) if weights is None else list(weights)
        if len(weights) != len(criteria):
            raise ValueError(f"weights must have one entry per loss ({len(criteria)}); got {len(weights)}.")
        super().__init__(normalize=False, cross_replica=cross_replica, **kwargs)
        self.criteria = criteria
        self.loss_weights = [checks.non_negative(weight, "weights") for weight in weights]
        self.weighs_anchors = all(loss.weighs_anchors for loss in criteria)
        self.takes_selection = any(loss.takes_selection for loss in criteria)

    def check_selection(self, selection, batch_size):
        return miners.check_selection(selection, batch_size)

    def build(self, labels_shape, embeddings_shape):
        for loss in self.criteria:
            if isinstance(loss, keras.layers.Layer) and not loss.built:
                loss.build(labels_shape, embeddings_shape)
        self.built = True

    def compute(self, labels, embeddings, sample_weight=None, selection=None):
        total = 0.0
        for loss, weight in zip(self.criteria, self.loss_weights):
            expected = getattr(loss, "embedding_dim", None)
            if expected is not None and embeddings.shape[-1] != expected:
                raise ValueError(f"embeddings have dimension {embeddings.shape[-1]} but {type(loss).__name__} "
                                 f"in MultipleLosses has embedding_dim={expected}.")
            chosen = selection if loss.takes_selection else None
            total = total + weight * loss.compute(labels, embeddings, sample_weight, chosen)
        return total

    def get_config(self):
        config = super().get_config()
        config.pop("normalize")
        return {**config, "losses": [keras.saving.serialize_keras_object(loss) for loss in self.criteria],
                "weights": self.loss_weights}
