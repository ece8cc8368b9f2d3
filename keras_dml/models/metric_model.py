"""`MetricModel`: an embedder trained by a criterion, which may hold trainable weights."""
import keras
from keras import ops

from keras_dml import distributed


@keras.saving.register_keras_serializable(package="keras_dml")
class MetricModel(keras.Model):
    """An embedder and the criterion that trains it, as one `keras.Model`.

    `fit(x, labels)` minimises `criterion(labels, embedder(x))` plus the embedder's own
    regularisation losses, updating the embedder and the criterion's weights (proxies,
    a PDDM unit) together; compile it with an optimizer only, no `loss=`. `predict`
    returns embeddings. Checkpoints and `.keras` files hold both parts; `model.embedder`
    is the part to export and serve. The criterion may also be a stateless keras_dml loss.
    `fit(..., sample_weight=w)` (or `class_weight=`) passes each batch's weights to the
    criterion, which weighs each anchor's term, or refuses them with a `ValueError` where
    its terms are not one per anchor (proxy losses, PDDM); the embedder's own
    regularisation losses are not weighted, as in Keras.

    Example:

    >>> import keras, numpy as np, keras_dml
    >>> embedder = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
    >>> criterion = keras_dml.losses.PotentialFieldLoss(num_classes=3, embedding_dim=8, proxies_per_class=2)
    >>> model = keras_dml.models.MetricModel(embedder, criterion)
    >>> model.compile(optimizer=keras_dml.optimizers.with_proxy_lr_multiplier(keras.optimizers.Adam(1e-3), 100.0))
    >>> x = np.random.default_rng(0).normal(size=(12, 16)).astype("float32")
    >>> history = model.fit(x, np.arange(12) % 3, batch_size=6, epochs=1, verbose=0)
    >>> model.predict(x, verbose=0).shape
    (12, 8)
    """

    def __init__(self, embedder, criterion, **kwargs):
        super().__init__(**kwargs)
        if not callable(criterion):
            raise ValueError(f"criterion must be callable as criterion(labels, embeddings); got {criterion!r}.")
        self.embedder = embedder
        self.criterion = criterion

    def build(self, input_shape):
        if not self.embedder.built:
            self.embedder.build(input_shape)
        if isinstance(self.criterion, keras.layers.Layer) and not self.criterion.built:
            embeddings_shape = self.embedder.compute_output_shape(input_shape)
            self.criterion.build(embeddings_shape[:1], embeddings_shape)

    def call(self, inputs, training=None):
        return self.embedder(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self.loss is not None:
            raise ValueError(
                "MetricModel is trained by its criterion: compile it with an optimizer only, "
                f"without loss= (got loss={self.loss!r})."
            )
        if y is None:
            raise ValueError("MetricModel needs labels: call fit(x, labels) or fit on (x, labels) batches.")
        weighted = {} if sample_weight is None else {"sample_weight": sample_weight}
        loss = self.criterion(y, y_pred, **weighted)  # a criterion without per-anchor terms refuses weights
        for extra in self.losses:  # a replica's share, like the criterion's, under tf.distribute
            loss = loss + distributed.replica_share(ops.cast(ops.sum(extra), loss.dtype))
        return loss

    def get_config(self):
        return {
            **super().get_config(),
            "embedder": keras.saving.serialize_keras_object(self.embedder),
            "criterion": keras.saving.serialize_keras_object(self.criterion),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        embedder = keras.saving.deserialize_keras_object(config.pop("embedder"), custom_objects=custom_objects)
        criterion = keras.saving.deserialize_keras_object(config.pop("criterion"), custom_objects=custom_objects)
        return cls(embedder, criterion, **config)
