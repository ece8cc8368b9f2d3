"""Margin loss with a learnable boundary `beta` (Wu et al., ICCV 2017): a criterion with weights."""
import keras
from keras import ops

from keras_dml import checks, distances
from keras_dml.losses.base import TrainableMetricLoss
from keras_dml.losses.pair import PairTerms


@keras.saving.register_keras_serializable(package="keras_dml")
class MarginLoss(PairTerms, TrainableMetricLoss):
    """Margin loss (Wu et al., "Sampling Matters in Deep Embedding Learning", ICCV 2017).

    Positives should lie within `beta - margin` of an anchor, negatives beyond
    `beta + margin`:

    `L = (sum_{(i, j, k)} [d_ij - beta_i + margin]_+ + [beta_i - d_ik + margin]_+) / #(non-zero terms) + nu beta`

    over every triplet `(i, j in P_i, k in N_i)` (pytorch-metric-learning's
    `triplets_per_anchor="all"`: a pair's hinge counts once per triplet it is in).
    `beta_i` is one boundary, or one per class with `num_classes`; `learn_beta=True`
    makes it a trainable weight (`nu` weighs its regulariser, the mean `beta_i` of the
    valid anchors), so train it with `keras_dml.models.MetricModel`.

    Example:

    >>> import keras, numpy as np, keras_dml
    >>> criterion = keras_dml.losses.MarginLoss(margin=0.2, beta=1.2, learn_beta=True)
    >>> embedder = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
    >>> model = keras_dml.models.MetricModel(embedder, criterion)
    >>> model.compile(optimizer="adam")
    >>> labels = np.array([0, 0, 1, 1])
    >>> float(criterion(labels, np.random.default_rng(0).normal(size=(4, 8)).astype("float32"))) > 0.0
    True
    """

    def __init__(self, margin=0.2, beta=1.2, nu=0.0, learn_beta=True, num_classes=None, distance="euclidean",
                 positive="all", negative="all", semihard_fallback="nearest", **kwargs):
        super().__init__(**kwargs)
        self.init_pairs(distance, positive, negative, semihard_fallback)
        self.margin = checks.non_negative(margin, "margin")
        self.initial_beta = float(beta) if distances.is_similarity(distance) else checks.non_negative(beta, "beta")
        self.nu = checks.non_negative(nu, "nu")
        self.learn_beta = bool(learn_beta)
        self.num_classes = None if num_classes is None else checks.positive_int(num_classes, "num_classes")
        self.beta = self.add_weight(
            shape=() if self.num_classes is None else (self.num_classes,),
            initializer=keras.initializers.Constant(self.initial_beta),
            trainable=self.learn_beta,
            name="beta",
        )
        self.built = True

    def call(self, labels, embeddings, sample_weight=None, selection=None):
        values = None if self.num_classes is None else checks.concrete_values(labels)
        if values is not None and values.size and (values.min() < 0 or values.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, num_classes={self.num_classes}) for MarginLoss; "
                             f"got values from {values.min()} to {values.max()}.")
        return super().call(labels, embeddings, sample_weight, selection)

    def inputs_ok(self, labels, embeddings):
        ok = super().inputs_ok(labels, embeddings)
        if self.num_classes is None:
            return ok
        return ops.logical_and(ok, ops.all(ops.logical_and(labels >= 0, labels < self.num_classes)))

    def terms(self, labels, embeddings, selection=None, references=None):
        pairs = self.pairs(labels, embeddings, references)
        positive_mask, negative_mask = self.masks(pairs, selection)
        if self.num_classes is None:
            beta = ops.broadcast_to(self.beta, ops.shape(labels))
        else:
            beta = ops.take(self.beta, ops.cast(ops.clip(labels, 0, self.num_classes - 1), "int32"))
        values = pairs.values()
        pull = ops.where(positive_mask, ops.relu(distances.margin(values, beta[:, None], self.distance) + self.margin), 0.0)
        push = ops.where(negative_mask, ops.relu(distances.margin(beta[:, None], values, self.distance) + self.margin), 0.0)
        positives = ops.sum(ops.cast(positive_mask, "float32"), axis=1)
        negatives = ops.sum(ops.cast(negative_mask, "float32"), axis=1)
        valid = ops.logical_and(positives > 0, negatives > 0)
        # every triplet (i, j, k): the pull of (i, j) counts |N_i| times, the push of (i, k) |P_i| times
        per_anchor = negatives * ops.sum(pull, axis=1) + positives * ops.sum(push, axis=1)
        active = (negatives * ops.sum(ops.cast(pull > 0, "float32"), axis=1)
                  + positives * ops.sum(ops.cast(push > 0, "float32"), axis=1))
        valid_f = ops.cast(valid, "float32")
        scale = ops.sum(valid_f) / ops.maximum(ops.sum(ops.where(valid, active, 0.0)), 1.0)
        hinge = per_anchor * ops.stop_gradient(scale)
        regulariser = self.nu * beta if self.learn_beta else ops.zeros_like(beta)
        return ops.stack([hinge, regulariser]), ops.stack([valid, valid])

    def get_config(self):
        return {
            **super().get_config(),
            **self.pair_config(),
            "margin": self.margin,
            "beta": self.initial_beta,
            "nu": self.nu,
            "learn_beta": self.learn_beta,
            "num_classes": self.num_classes,
        }

