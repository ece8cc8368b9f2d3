"""`MetricLoss`: the one template every keras_dml loss follows.

    labels, embeddings  -> checked (shapes, dtypes, finite values)
                        -> gathered from all replicas under tf.distribute (`cross_replica=True`)
                        -> float32, L2-normalised (`normalize=True`)
                        -> per-anchor terms and validity   (each loss's `anchor_terms`)
                        -> mean over valid anchors          (0 when there is none)

The mean over valid anchors is taken so that a batch without any valid anchor gives
exactly 0 with zero gradients (METHODS.md section 0), also under XLA.
"""
import keras
import numpy as np
from keras import ops

from keras_dml import checks, distances, distributed


def check_embeddings(embeddings, argument="y_pred"):
    """`embeddings` as a float32 `(n, D)` tensor; raises `ValueError` naming `argument`."""
    embeddings = ops.convert_to_tensor(embeddings)
    if len(embeddings.shape) != 2:
        raise ValueError(
            f"{argument} (embeddings) must have shape (batch_size, embedding_dim); "
            f"got shape {tuple(embeddings.shape)}."
        )
    if "float" not in keras.backend.standardize_dtype(embeddings.dtype):
        raise ValueError(
            f"{argument} (embeddings) must be floating point; got dtype {embeddings.dtype}."
        )
    values = checks.concrete_values(embeddings)
    if values is not None and not np.all(np.isfinite(values)):
        raise ValueError(f"{argument} (embeddings) contains NaN or inf values.")
    return ops.cast(embeddings, "float32")


def check_labels(labels, batch_size=None, argument="y_true"):
    """`labels` as an int32 `(n,)` tensor; accepts shape `(n,)` or `(n, 1)`."""
    labels = ops.convert_to_tensor(labels)
    dtype = keras.backend.standardize_dtype(labels.dtype)
    if "int" not in dtype:
        raise ValueError(
            f"{argument} (labels) must hold integer class ids; got dtype {dtype}. "
            "Cast them, e.g. labels.astype('int32')."
        )
    shape = tuple(labels.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise ValueError(f"{argument} (labels) must have shape (batch_size,) or (batch_size, 1); got {shape}.")
    if batch_size is not None and shape[0] is not None and shape[0] != batch_size:
        raise ValueError(
            f"{argument} (labels) has {shape[0]} entries but the batch has {batch_size} embeddings."
        )
    return ops.cast(ops.reshape(labels, (-1,)), "int32")


def masked_mean(values, mask, axis=None, keepdims=False):
    """Mean of `values` where `mask` holds; 0 (with zero gradient) where it never does."""
    mask = ops.cast(mask, values.dtype)
    total = ops.sum(ops.where(mask > 0, values, 0.0), axis=axis, keepdims=keepdims)
    count = ops.sum(mask, axis=axis, keepdims=keepdims)
    return total / ops.maximum(count, 1.0)


def pair_values(full_matrix, paired, embeddings, selection):
    """Values `(n, m)` of the pairs a miner selected.

    `full_matrix()` gives the `(n, n)` matrix (distances or similarities, with
    gradient). A single partner per anchor is recomputed from the embeddings with
    `paired` instead, so its gradient is O(n D) and never touches the full matrix.
    """
    if selection.index is None:
        return full_matrix()
    if selection.index.shape[1] == 1:
        partners = ops.take(embeddings, selection.index[:, 0], axis=0)
        return paired(embeddings, partners)[:, None]
    return ops.take_along_axis(full_matrix(), selection.index, axis=1)


@keras.saving.register_keras_serializable(package="keras_dml")
class MetricLoss(keras.losses.Loss):
    """Base class: `loss(labels, embeddings)` -> float32 scalar.

    Subclasses implement `anchor_terms(labels, embeddings) -> (terms, valid)`, both of
    shape `(n,)`, on labels `int32 (n,)` and float32 embeddings `(n, D)` (already
    normalised when `normalize=True`).

    Under a `tf.distribute` strategy with `cross_replica=True` the loss is computed on
    the global batch gathered from all replicas (see `keras_dml.distributed`).
    """

    def __init__(self, normalize=True, cross_replica=True, name=None):
        super().__init__(name=name, reduction="sum_over_batch_size", dtype="float32")
        self.normalize = bool(normalize)
        self.cross_replica = bool(cross_replica)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__} does not take sample_weight: it averages over the "
                "valid anchors of the batch."
            )
        embeddings = check_embeddings(y_pred)
        labels = check_labels(distributed.built_labels(y_true), batch_size=embeddings.shape[0])
        return distributed.replica_loss(self.call, labels, embeddings, self.cross_replica)

    def call(self, y_true, y_pred):
        embeddings = ops.cast(y_pred, "float32")
        if self.normalize:
            embeddings = distances.l2_normalize(embeddings)
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        terms, valid = self.anchor_terms(labels, embeddings)
        return masked_mean(terms, valid)

    def anchor_terms(self, labels, embeddings):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, "normalize": self.normalize, "cross_replica": self.cross_replica}


@keras.saving.register_keras_serializable(package="keras_dml")
class TrainableMetricLoss(keras.layers.Layer):
    """Base class for criteria with trainable weights: `criterion(labels, embeddings)` -> float32 scalar.

    The same template as `MetricLoss`, as a layer so that `keras_dml.models.MetricModel`
    trains its weights with the embedder and saves them with the model:

        labels, embeddings -> checked -> float32, L2-normalised -> `terms(labels, embeddings)`
                           -> mean of each row of terms over its valid entries, summed

    Subclasses implement `terms(labels, embeddings) -> (terms, valid)`, of shape `(m,)`
    (one mean) or `(k, m)` (a sum of `k` means over different sets), and create their
    weights in `__init__` or in `build(labels_shape, embeddings_shape)`; one that sets
    `self.embedding_dim` gets embeddings of any other width rejected. A subclass that
    takes embeddings as they are sets `normalize = False`. The loss math runs in float32
    whatever the global dtype policy. `cross_replica` is as for `MetricLoss`.
    """

    normalize = True

    def __init__(self, cross_replica=True, **kwargs):
        super().__init__(**{**kwargs, "dtype": "float32"})
        self.cross_replica = bool(cross_replica)

    def __call__(self, labels, embeddings):
        embeddings = check_embeddings(embeddings, argument="embeddings")
        expected = getattr(self, "embedding_dim", None)
        if expected is not None and embeddings.shape[-1] != expected:
            raise ValueError(
                f"embeddings have dimension {embeddings.shape[-1]} but {type(self).__name__} has "
                f"embedding_dim={expected}."
            )
        labels = check_labels(labels, batch_size=embeddings.shape[0], argument="labels")
        return distributed.replica_loss(super().__call__, labels, embeddings, self.cross_replica)

    def call(self, labels, embeddings):
        if self.normalize:
            embeddings = distances.l2_normalize(embeddings)
        terms, valid = self.terms(labels, embeddings)
        return ops.sum(masked_mean(terms, valid, axis=-1))

    def terms(self, labels, embeddings):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "cross_replica": self.cross_replica}
