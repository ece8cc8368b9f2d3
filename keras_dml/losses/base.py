"""The one template every keras_dml loss follows, for stateless losses and criteria with weights.

    labels, embeddings -> checked (shapes, dtypes; eager calls: finite values)
                       -> gathered from all replicas under tf.distribute (`cross_replica=True`)
                       -> float32, L2-normalised (`normalize=True`)
                       -> `terms(labels, embeddings)` -> `(terms, valid)`     (each loss's hook)
                       -> mean of `terms` over its `valid` entries            (0 when there is none)
                       -> NaN when an input is not finite (`inputs_ok`)

Why the reduction is a masked mean over valid anchors (docs/methods.md, notation):
- a batch with no valid anchor (one class, only singletons, an empty batch) gives
  exactly 0 with zero gradients, never NaN (no 0 / 0);
- every shape is static, so it compiles under XLA, and under tf.distribute it is
  computed once on the gathered global batch (a per-replica mean of means would weigh
  replicas with few valid anchors too much).
Because the mean skips masked entries, a NaN there would vanish silently: `inputs_ok`
turns the loss into NaN whenever an embedding or a weight of the criterion is not
finite, so `keras.callbacks.TerminateOnNaN` stops the run (eager calls raise instead).

`MetricLoss` is a `keras.losses.Loss` (`compile(loss=...)` on any model);
`TrainableMetricLoss` is a layer (trained through `keras_dml.models.MetricModel`).
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
    """`labels` as an `(n,)` integer tensor of their own dtype; accepts shape `(n,)` or `(n, 1)`.

    Class ids are compared in their own dtype, so int64 ids that differ by 2^32 stay
    different classes. A backend that cannot hold them (JAX without x64) raises.
    """
    given = checks.concrete_values(labels)
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
    if given is not None and given.size and given.dtype.kind in "iu" and (
        given.min() < np.iinfo(dtype).min or given.max() > np.iinfo(dtype).max
    ):
        raise ValueError(
            f"{argument} (labels) holds class ids that {keras.backend.backend()} cannot represent as "
            f"{dtype} (from {given.min()} to {given.max()}); re-index them, e.g. with np.unique(..., return_inverse=True)."
        )
    return ops.reshape(labels, (-1,))


def masked_mean(values, mask, axis=None, keepdims=False):
    """Mean of `values` where `mask` holds; 0 (with zero gradient) where it never does."""
    mask = ops.cast(mask, values.dtype)
    total = ops.sum(ops.where(mask > 0, values, 0.0), axis=axis, keepdims=keepdims)
    count = ops.sum(mask, axis=axis, keepdims=keepdims)
    return total / ops.maximum(count, 1.0)


def all_finite(*tensors):
    """Scalar bool: every entry of every tensor is finite."""
    finite = ops.convert_to_tensor(True)
    for tensor in tensors:
        finite = ops.logical_and(finite, ops.all(ops.isfinite(tensor)))
    return finite


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


class LossTemplate:
    """The steps shared by `MetricLoss` and `TrainableMetricLoss` (see the module docstring).

    A loss implements `terms(labels, embeddings) -> (terms, valid)` on `(n,)` integer
    labels and float32 `(n, D)` embeddings (normalised when `self.normalize`): `terms`
    and `valid` of shape `(m,)` (the loss is the mean of the valid terms) or `(k, m)`
    (the sum of `k` such means, e.g. a loss plus a weighted regularizer). `normalize`
    is a constructor argument of both base classes.
    """

    def compute(self, labels, embeddings):
        """The loss of checked (and gathered) labels and float32 embeddings."""
        if embeddings.shape[0] == 0:  # an empty batch: no anchor; 0, still a function of the inputs
            return ops.sum(embeddings) * 0.0
        prepared = distances.l2_normalize(embeddings) if self.normalize else embeddings
        terms, valid = self.terms(labels, prepared)
        loss = ops.sum(masked_mean(terms, valid, axis=-1))
        return ops.where(self.inputs_ok(labels, embeddings), loss, float("nan"))

    def terms(self, labels, embeddings):
        raise NotImplementedError

    def inputs_ok(self, labels, embeddings):
        """Scalar bool: the loss is defined for these inputs (else it is NaN).

        Finite embeddings and finite weights; subclasses add their own conditions.
        """
        return all_finite(embeddings, *getattr(self, "weights", ()))


@keras.saving.register_keras_serializable(package="keras_dml")
class MetricLoss(LossTemplate, keras.losses.Loss):
    """Base class of stateless losses: `loss(labels, embeddings)` -> float32 scalar.

    Subclasses implement `terms` (see `LossTemplate`). Under a `tf.distribute` strategy
    with `cross_replica=True` the loss is computed on the global batch gathered from
    all replicas (see `keras_dml.distributed`).
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
        return distributed.replica_loss(self.compute, labels, embeddings, self.cross_replica)

    def call(self, y_true, y_pred):
        return self.compute(y_true, y_pred)

    def get_config(self):
        return {"name": self.name, "normalize": self.normalize, "cross_replica": self.cross_replica}


@keras.saving.register_keras_serializable(package="keras_dml")
class TrainableMetricLoss(LossTemplate, keras.layers.Layer):
    """Base class of criteria with trainable weights: `criterion(labels, embeddings)` -> float32 scalar.

    The same template as `MetricLoss`, as a layer so that `keras_dml.models.MetricModel`
    trains its weights with the embedder and saves them with the model. Subclasses
    implement `terms` and create their weights in `__init__` or in
    `build(labels_shape, embeddings_shape)`; one that sets `self.embedding_dim` gets
    embeddings of any other width rejected. The loss math runs in float32 whatever the
    global dtype policy. `normalize` and `cross_replica` are as for `MetricLoss`.
    """

    def __init__(self, normalize=True, cross_replica=True, **kwargs):
        super().__init__(**{**kwargs, "dtype": "float32"})
        self.normalize = bool(normalize)
        self.cross_replica = bool(cross_replica)

    def __call__(self, labels, embeddings):
        embeddings = check_embeddings(embeddings, argument="embeddings")
        expected = getattr(self, "embedding_dim", None)
        if expected is not None and embeddings.shape[-1] != expected:
            raise ValueError(
                f"embeddings have dimension {embeddings.shape[-1]} but {type(self).__name__} has "
                f"embedding_dim={expected}."
            )
        if "float" in keras.backend.standardize_dtype(ops.convert_to_tensor(labels).dtype):
            raise ValueError(
                f"labels must hold integer class ids; got floats. {type(self).__name__} has trainable "
                "weights, so it is not a compile(loss=...) loss (Keras passes it float labels and "
                "would never train its weights): train it with "
                "keras_dml.models.MetricModel(embedder, criterion), compiled without loss=."
            )
        labels = check_labels(labels, batch_size=embeddings.shape[0], argument="labels")
        return distributed.replica_loss(super().__call__, labels, embeddings, self.cross_replica)

    def call(self, labels, embeddings):
        return self.compute(labels, embeddings)

    def get_config(self):
        return {**super().get_config(), "normalize": self.normalize, "cross_replica": self.cross_replica}
