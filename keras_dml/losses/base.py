"""The one template every keras_dml loss follows, for stateless losses and criteria with weights.

    labels, embeddings -> checked (shapes, dtypes; eager calls: finite values)
                       -> gathered from all replicas under tf.distribute (`cross_replica=True`)
                       -> float32, L2-normalised (`normalize=True`)
                       -> `terms(labels, embeddings)` -> `(terms, valid)`     (each loss's hook)
                       -> mean of `terms` over its `valid` entries            (0 when there is none)
                          (`reduction`, `sample_weight`: see `reduce_terms`)
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
Both are called as `loss(labels, embeddings, sample_weight=None, selection=None)`:
`sample_weight` `(n,)` weighs each anchor's term, the Keras way, in losses whose terms
belong to anchors (`weighs_anchors`); `selection` (pair losses, `takes_selection`) is a
`keras_dml.miners.PairSelection` mined beforehand.
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


def check_sample_weight(sample_weight, batch_size, owner):
    """`sample_weight` as a float32 `(n,)` tensor; a `ValueError` naming it unless it has one
    finite, non-negative weight per sample (`(n,)` or `(n, 1)`)."""
    weights = ops.convert_to_tensor(sample_weight)
    shape = tuple(weights.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or (
        batch_size is not None and shape[0] is not None and shape[0] != batch_size
    ):
        raise ValueError(
            f"sample_weight must have shape ({batch_size},) or ({batch_size}, 1), one weight per "
            f"embedding, for {owner}; got shape {shape}."
        )
    values = checks.concrete_values(weights)
    if values is not None and not (np.all(np.isfinite(values)) and np.all(values >= 0)):
        raise ValueError(f"sample_weight must be finite and >= 0 for {owner}.")
    return ops.cast(ops.reshape(weights, (-1,)), "float32")


REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight", "sum", "none", None)


def reduce_terms(terms, valid, sample_weight=None, reduction="sum_over_batch_size"):
    """The loss of `terms` and `valid`, `(m,)` or `(k, m)` (a sum of `k` rows), under `reduction`.

    With `w` the weight of each term (its anchor's `sample_weight`, else 1), per row:
    `"sum_over_batch_size"` and `"mean"`: `sum_valid w t / #valid` (Keras's mean, over the
    valid terms); `"mean_with_sample_weight"`: `sum_valid w t / sum_valid w`; `"sum"`:
    `sum_valid w t`; `"none"` / `None`: the `(m,)` weighted terms, 0 where not valid. A row
    with no valid term is 0, with zero gradient.
    """
    if len(terms.shape) == 1:
        terms, valid = terms[None, :], valid[None, :]
    mask = ops.cast(valid, terms.dtype)
    weights = mask
    if sample_weight is not None:
        weights = mask * sample_weight[None, :]
    weighted = ops.where(mask > 0, terms, 0.0) * weights
    if reduction in ("none", None):
        return ops.sum(weighted, axis=0)
    total = ops.sum(weighted, axis=1)
    if reduction == "sum":
        return ops.sum(total)
    count = ops.sum(weights if reduction == "mean_with_sample_weight" else mask, axis=1)
    return ops.sum(ops.where(count > 0, total / ops.where(count > 0, count, 1.0), 0.0))


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


class LossTemplate:
    """The steps shared by `MetricLoss` and `TrainableMetricLoss` (see the module docstring).

    A loss implements `terms(labels, embeddings) -> (terms, valid)` on `(n,)` integer
    labels and float32 `(n, D)` embeddings (normalised when `self.normalize`): `terms`
    and `valid` of shape `(m,)` (the loss is the mean of the valid terms) or `(k, m)`
    (the sum of `k` such means, e.g. a loss plus a weighted regularizer). `normalize`
    and `reduction` are constructor arguments of both base classes.

    A loss whose terms are one per anchor of the batch (`m = n`) sets
    `weighs_anchors = True` and so takes `sample_weight` (a loss averaged over pairs
    returns each anchor's sum scaled by `#valid anchors / #pairs`, the same mean); a pair loss that accepts a
    mined `selection` sets `takes_selection = True` and gets it as `terms(...,
    selection=...)`.
    """

    weighs_anchors = False
    takes_selection = False

    def compute(self, labels, embeddings, sample_weight=None, selection=None):
        """The loss of checked (and gathered) labels and float32 embeddings."""
        if embeddings.shape[0] == 0:  # an empty batch: no anchor; 0, still a function of the inputs
            zero = ops.sum(embeddings, axis=1) * 0.0
            return zero if self.reduction in ("none", None) else ops.sum(zero)
        prepared = distances.l2_normalize(embeddings) if self.normalize else embeddings
        extra = {} if selection is None else {"selection": selection}
        terms, valid = self.terms(labels, prepared, **extra)
        loss = reduce_terms(terms, valid, sample_weight, self.reduction)
        return ops.where(self.inputs_ok(labels, embeddings), loss, float("nan"))

    def terms(self, labels, embeddings):
        raise NotImplementedError

    def inputs_ok(self, labels, embeddings):
        """Scalar bool: the loss is defined for these inputs (else it is NaN).

        Finite embeddings and finite weights; subclasses add their own conditions.
        """
        return all_finite(embeddings, *getattr(self, "weights", ()))

    def check_selection(self, selection, batch_size):
        """`selection` checked for this batch (pair losses: `keras_dml.miners.check_selection`)."""
        raise NotImplementedError

    def check_call(self, labels, embeddings, sample_weight, selection, argument="y_pred"):
        """Checked `(labels, embeddings, sample_weight, selection)` of a call."""
        owner = type(self).__name__
        embeddings = check_embeddings(embeddings, argument=argument)
        n = embeddings.shape[0]
        labels = check_labels(distributed.built_labels(labels), batch_size=n,
                              argument="y_true" if argument == "y_pred" else "labels")
        gathered = self.cross_replica and distributed.replica_context() is not None
        if sample_weight is not None:
            if not self.weighs_anchors:
                raise ValueError(f"{owner} does not take sample_weight: its terms are not one per anchor.")
            if gathered:
                raise ValueError(f"sample_weight is not supported by {owner} with cross_replica=True under "
                                 "a multi-replica strategy (the loss sees the gathered global batch).")
            sample_weight = check_sample_weight(sample_weight, n, owner)
        if selection is not None:
            if not self.takes_selection:
                raise ValueError(f"{owner} does not take a selection: it is not a pair loss.")
            if gathered:
                raise ValueError(f"selection is not supported by {owner} with cross_replica=True under a "
                                 "multi-replica strategy: mine inside the loss (positive=, negative=) instead.")
            selection = self.check_selection(selection, n)
        return labels, embeddings, sample_weight, selection


def check_reduction(reduction):
    """`reduction`, or a `ValueError` naming it (the values Keras's losses take)."""
    return checks.one_of(reduction, "reduction", REDUCTIONS)


@keras.saving.register_keras_serializable(package="keras_dml")
class MetricLoss(LossTemplate, keras.losses.Loss):
    """Base class of stateless losses: `loss(labels, embeddings)` -> float32 scalar.

    Subclasses implement `terms` (see `LossTemplate`). Under a `tf.distribute` strategy
    with `cross_replica=True` the loss is computed on the global batch gathered from
    all replicas (see `keras_dml.distributed`).
    """

    def __init__(self, normalize=True, cross_replica=True, name=None, reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=check_reduction(reduction), dtype="float32")
        self.normalize = bool(normalize)
        self.cross_replica = bool(cross_replica)

    def __call__(self, y_true, y_pred, sample_weight=None, selection=None):
        labels, embeddings, sample_weight, selection = self.check_call(y_true, y_pred, sample_weight, selection)

        def compute(labels, embeddings):
            return self.compute(labels, embeddings, sample_weight, selection)

        return distributed.replica_loss(compute, labels, embeddings, self.cross_replica)

    def call(self, y_true, y_pred):
        return self.compute(y_true, y_pred)

    def get_config(self):
        return {"name": self.name, "normalize": self.normalize, "cross_replica": self.cross_replica,
                "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="keras_dml")
class TrainableMetricLoss(LossTemplate, keras.layers.Layer):
    """Base class of criteria with trainable weights: `criterion(labels, embeddings)` -> float32 scalar.

    The same template as `MetricLoss`, as a layer so that `keras_dml.models.MetricModel`
    trains its weights with the embedder and saves them with the model. Subclasses
    implement `terms` and create their weights in `__init__` or in
    `build(labels_shape, embeddings_shape)`; one that sets `self.embedding_dim` gets
    embeddings of any other width rejected. The loss math runs in float32 whatever the
    global dtype policy. `normalize`, `cross_replica` and `reduction` are as for
    `MetricLoss`; `sample_weight` and `selection` are passed to `call` as keywords.
    """

    def __init__(self, normalize=True, cross_replica=True, reduction="sum_over_batch_size", **kwargs):
        super().__init__(**{**kwargs, "dtype": "float32"})
        self.normalize = bool(normalize)
        self.cross_replica = bool(cross_replica)
        self.reduction = check_reduction(reduction)

    def __call__(self, labels, embeddings, sample_weight=None, selection=None):
        if "float" in keras.backend.standardize_dtype(ops.convert_to_tensor(labels).dtype):
            raise ValueError(
                f"labels must hold integer class ids; got floats. {type(self).__name__} has trainable "
                "weights, so it is not a compile(loss=...) loss (Keras passes it float labels and "
                "would never train its weights): train it with "
                "keras_dml.models.MetricModel(embedder, criterion), compiled without loss=."
            )
        labels, embeddings, sample_weight, selection = self.check_call(
            labels, embeddings, sample_weight, selection, argument="embeddings")
        expected = getattr(self, "embedding_dim", None)
        if expected is not None and embeddings.shape[-1] != expected:
            raise ValueError(
                f"embeddings have dimension {embeddings.shape[-1]} but {type(self).__name__} has "
                f"embedding_dim={expected}."
            )
        extra = {key: value for key, value in (("sample_weight", sample_weight), ("selection", selection))
                 if value is not None}

        def compute(labels, embeddings):
            return super(TrainableMetricLoss, self).__call__(labels, embeddings, **extra)

        return distributed.replica_loss(compute, labels, embeddings, self.cross_replica)

    def call(self, labels, embeddings, sample_weight=None, selection=None):
        return self.compute(labels, embeddings, sample_weight, selection)

    def get_config(self):
        config = {**super().get_config(), "normalize": self.normalize, "cross_replica": self.cross_replica}
        if self.reduction != "sum_over_batch_size":  # older saved criteria have no such key
            config["reduction"] = self.reduction
        return config
