"""Pair-based losses (docs/methods.md, classic losses), each a short `terms` on `PairLoss`.

`d` is the Euclidean distance and `s` the dot product of (normalised) embeddings;
`P_i` and `N_i` are the positives and negatives that the `positive=` and `negative=`
strategies (see `keras_dml.miners`) select for anchor `i`.
"""
from collections import namedtuple

import keras
from keras import ops

from keras_dml import checks, distances, miners
from keras_dml.losses.base import MetricLoss, masked_mean, pair_values


Mined = namedtuple("Mined", ["distance", "squared", "positive_mask", "negative_mask", "positives", "positive_dist"])
Mined.__doc__ = """What `PairLoss.mine` found: `distance()` the full `(n, n)` distance matrix with
gradient (built only when a strategy uses every pair), `squared` the stop-gradient
squared distances the miners choose on (same order, no square root), the label masks,
the selected `positives` and their distances `positive_dist` `(n, m)`, with gradient."""


@keras.saving.register_keras_serializable(package="keras_dml")
class PairLoss(MetricLoss):
    """A `MetricLoss` whose anchors use mined positives and negatives.

    Subclasses get `self.mine(labels, embeddings)` and combine its pieces.
    `semihard_fallback` says what `negative="semihard"` does for a positive with no
    negative farther than it (see `keras_dml.miners.semihard_negatives`): `"nearest"`
    (keras_dml's default) takes the nearest negative, `"farthest"` the farthest
    (TensorFlow Addons' `triplet_semihard_loss`), `"none"` drops the pair
    (pytorch-metric-learning). FaceNet defines no fallback.
    """

    def __init__(self, positive="all", negative="all", normalize=True, cross_replica=True, name=None,
                 semihard_fallback="nearest"):
        super().__init__(normalize=normalize, cross_replica=cross_replica, name=name)
        self.positive = checks.one_of(positive, "positive", miners.POSITIVE_STRATEGIES)
        self.negative = checks.one_of(negative, "negative", miners.NEGATIVE_STRATEGIES)
        self.semihard_fallback = checks.one_of(semihard_fallback, "semihard_fallback", miners.SEMIHARD_FALLBACKS)

    def mine(self, labels, embeddings):
        """Distances, label masks and the positives selected for each anchor, as `Mined`."""
        squared = distances.squared_euclidean(embeddings)
        mined = ops.stop_gradient(squared)
        positive_mask, negative_mask = distances.label_masks(labels)
        positives = miners.mine_positives(mined, positive_mask, self.positive)

        def distance():
            return distances.safe_sqrt(squared)

        positive_dist = pair_values(distance, distances.paired_euclidean, embeddings, positives)
        return Mined(distance, mined, positive_mask, negative_mask, positives, positive_dist)

    def mine_negatives(self, mined, thresholds):
        """The negatives under `self.negative`; `thresholds` `(n, m)` are the distances of
        the positives they pair with (semi-hard mining compares against them)."""
        squared_thresholds = ops.square(ops.stop_gradient(thresholds))
        return miners.mine_negatives(
            mined.squared, mined.negative_mask, self.negative, squared_thresholds, self.semihard_fallback
        )

    def get_config(self):
        return {
            **super().get_config(),
            "positive": self.positive,
            "negative": self.negative,
            "semihard_fallback": self.semihard_fallback,
        }


def _hinge_sums(thresholds, values, mask):
    """`out[i, a] = sum_k mask[i, k] * max(thresholds[i, a] - values[i, k], 0)`, `(n, m)`.

    One threshold per row is a plain masked sum. Many (every positive of an anchor)
    would be an n^3 tensor; instead each row is sorted once and a binary search finds
    how many values lie below each threshold: `count * t - (sum of those values)`.
    """
    if thresholds.shape[1] == 1:
        return ops.sum(ops.where(mask, ops.relu(thresholds - values), 0.0), axis=1, keepdims=True)
    masked = ops.where(mask, values, distances.FAR)
    order = ops.argsort(ops.stop_gradient(masked), axis=1)
    ascending = ops.take_along_axis(masked, order, axis=1)
    below = miners.count_at_most(ops.stop_gradient(ascending), ops.stop_gradient(thresholds))
    prefix = ops.concatenate(
        [ops.zeros_like(ascending[:, :1]), ops.cumsum(ops.where(ascending < distances.FAR, ascending, 0.0), axis=1)],
        axis=1,
    )
    summed = ops.take_along_axis(prefix, below, axis=1)
    return ops.relu(ops.cast(below, thresholds.dtype) * thresholds - summed)


@keras.saving.register_keras_serializable(package="keras_dml")
class ContrastiveLoss(PairLoss):
    """Contrastive loss (Hadsell et al., 2006).

    `l_i = mean_{j in P_i} [d_ij - pos_margin]_+^2 + mean_{k in N_i} [neg_margin - d_ik]_+^2`

    An anchor counts when it has at least one selected pair; a missing side's mean is
    left out. `negative="semihard"` is relative to the anchor's nearest selected positive.

    Example:

    >>> import numpy as np, keras_dml
    >>> loss = keras_dml.losses.ContrastiveLoss(neg_margin=0.5)
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(loss(labels, embeddings)) >= 0.0
    True
    """

    def __init__(self, pos_margin=0.0, neg_margin=0.5, positive="all", negative="all", normalize=True,
                 cross_replica=True, name=None, semihard_fallback="nearest"):
        super().__init__(positive=positive, negative=negative, normalize=normalize,
                         cross_replica=cross_replica, name=name, semihard_fallback=semihard_fallback)
        self.pos_margin = checks.number(pos_margin, "pos_margin")
        self.neg_margin = checks.number(neg_margin, "neg_margin")

    def terms(self, labels, embeddings):
        mined = self.mine(labels, embeddings)
        positives, positive_dist = mined.positives, mined.positive_dist
        has_positive = ops.any(positives.valid, axis=1)
        nearest_positive = ops.min(ops.where(positives.valid, positive_dist, distances.FAR), axis=1, keepdims=True)
        negatives = self.mine_negatives(mined, nearest_positive)
        negative_valid = negatives.valid
        if self.negative == "semihard":
            negative_valid = ops.logical_and(negative_valid, has_positive[:, None])
        negative_dist = pair_values(mined.distance, distances.paired_euclidean, embeddings, negatives)
        positive_term = masked_mean(ops.square(ops.relu(positive_dist - self.pos_margin)), positives.valid, axis=1)
        negative_term = masked_mean(ops.square(ops.relu(self.neg_margin - negative_dist)), negative_valid, axis=1)
        valid = ops.logical_or(has_positive, ops.any(negative_valid, axis=1))
        return positive_term + negative_term, valid

    def get_config(self):
        return {**super().get_config(), "pos_margin": self.pos_margin, "neg_margin": self.neg_margin}


@keras.saving.register_keras_serializable(package="keras_dml")
class TripletLoss(PairLoss):
    """Triplet margin loss (Weinberger & Saul, 2009; FaceNet mining).

    `l_i = mean_{j in P_i, k in N_i} [d_ij - d_ik + margin]_+`

    With `positive="easy"` each anchor is paired only with its nearest same-class
    sample, which keeps a class's sub-clusters apart instead of collapsing them
    (Levi et al., ICCV 2021). With `negative="semihard"` each positive gets the nearest
    negative farther than it; `semihard_fallback` says what happens when none is.

    Example:

    >>> import numpy as np, keras_dml
    >>> loss = keras_dml.losses.TripletLoss(margin=0.2, positive="easy", negative="semihard")
    >>> labels = np.array([0, 0, 0, 1, 1, 1])
    >>> embeddings = np.random.default_rng(0).normal(size=(6, 8)).astype("float32")
    >>> float(loss(labels, embeddings)) > 0.0
    True
    """

    def __init__(self, margin=0.2, positive="all", negative="all", normalize=True, cross_replica=True, name=None,
                 semihard_fallback="nearest"):
        super().__init__(positive=positive, negative=negative, normalize=normalize,
                         cross_replica=cross_replica, name=name, semihard_fallback=semihard_fallback)
        self.margin = checks.number(margin, "margin")

    def terms(self, labels, embeddings):
        mined = self.mine(labels, embeddings)
        positives, positive_dist, negative_mask = mined.positives, mined.positive_dist, mined.negative_mask
        if self.negative == "all":
            hinge = _hinge_sums(positive_dist + self.margin, mined.distance(), negative_mask)
            hinge = hinge / ops.maximum(ops.sum(ops.cast(negative_mask, "float32"), axis=1, keepdims=True), 1.0)
            valid = ops.logical_and(positives.valid, ops.any(negative_mask, axis=1, keepdims=True))
        else:
            negatives = self.mine_negatives(mined, positive_dist)
            negative_dist = pair_values(mined.distance, distances.paired_euclidean, embeddings, negatives)
            hinge = ops.relu(positive_dist - negative_dist + self.margin)
            valid = ops.logical_and(positives.valid, negatives.valid)
        return masked_mean(hinge, valid, axis=1), ops.any(valid, axis=1)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="keras_dml")
class NPairLoss(PairLoss):
    """Multi-class N-pair loss (Sohn, NeurIPS 2016), on similarities `s = z_i . z_j`.

    `l_i = mean_{j in P_i} log(1 + sum_{k in N_i} exp((s_ik - s_ij) / temperature))`

    Computed as `softplus(logsumexp_k(s_ik / T) - s_ij / T)`, so it is O(n^2) and stable.

    Example:

    >>> import numpy as np, keras_dml
    >>> loss = keras_dml.losses.NPairLoss(temperature=0.1)
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(loss(labels, embeddings)) > 0.0
    True
    """

    def __init__(self, temperature=0.1, positive="all", negative="all", normalize=True, cross_replica=True,
                 name=None, semihard_fallback="nearest"):
        super().__init__(positive=positive, negative=negative, normalize=normalize,
                         cross_replica=cross_replica, name=name, semihard_fallback=semihard_fallback)
        self.temperature = checks.positive(temperature, "temperature")

    def terms(self, labels, embeddings):
        mined = self.mine(labels, embeddings)
        positives, negative_mask = mined.positives, mined.negative_mask

        def similarity():
            return distances.dot_product(embeddings)

        positive_sim = pair_values(similarity, distances.paired_dot, embeddings, positives)
        if self.negative == "all":
            scaled = ops.where(negative_mask, similarity() / self.temperature, -distances.FAR)
            negative_logits = ops.logsumexp(scaled, axis=1, keepdims=True)
            negative_valid = ops.any(negative_mask, axis=1, keepdims=True)
        else:
            negatives = self.mine_negatives(mined, mined.positive_dist)
            negative_logits = pair_values(similarity, distances.paired_dot, embeddings, negatives) / self.temperature
            negative_valid = negatives.valid
        terms = ops.softplus(negative_logits - positive_sim / self.temperature)
        valid = ops.logical_and(positives.valid, negative_valid)
        return masked_mean(terms, valid, axis=1), ops.any(valid, axis=1)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="keras_dml")
class MultiSimilarityLoss(MetricLoss):
    """Multi-similarity loss with its own pair mining (Wang et al., CVPR 2019).

    On cosine similarities `s`, anchor `i` keeps positives with
    `s_ij - epsilon < max_{k in N} s_ik` and negatives with `s_ik + epsilon > min_{j in P} s_ij`:

    `l_i = 1/alpha log(1 + sum_j exp(-alpha (s_ij - base))) + 1/beta log(1 + sum_k exp(beta (s_ik - base)))`

    The loss is the mean of `l_i` over the anchors with a positive and a negative in the
    batch (keras_dml's template); the paper and pytorch-metric-learning average over all
    samples, counting such anchors as 0. The two differ only when a class has a single
    sample in the batch.

    Example:

    >>> import numpy as np, keras_dml
    >>> loss = keras_dml.losses.MultiSimilarityLoss()
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(loss(labels, embeddings)) > 0.0
    True
    """

    def __init__(self, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1, normalize=True, cross_replica=True,
                 name=None):
        super().__init__(normalize=normalize, cross_replica=cross_replica, name=name)
        self.alpha = checks.positive(alpha, "alpha")
        self.beta = checks.positive(beta, "beta")
        self.base = checks.number(base, "base")
        self.epsilon = checks.number(epsilon, "epsilon")

    def terms(self, labels, embeddings):
        sim = distances.dot_product(embeddings)
        mined = ops.stop_gradient(sim)
        positive_mask, negative_mask = distances.label_masks(labels)
        hardest_negative = ops.max(ops.where(negative_mask, mined, -distances.FAR), axis=1, keepdims=True)
        hardest_positive = ops.min(ops.where(positive_mask, mined, distances.FAR), axis=1, keepdims=True)
        keep_positive = ops.logical_and(positive_mask, mined - self.epsilon < hardest_negative)
        keep_negative = ops.logical_and(negative_mask, mined + self.epsilon > hardest_positive)
        positive_term = ops.softplus(
            ops.logsumexp(ops.where(keep_positive, -self.alpha * (sim - self.base), -distances.FAR), axis=1)
        ) / self.alpha
        negative_term = ops.softplus(
            ops.logsumexp(ops.where(keep_negative, self.beta * (sim - self.base), -distances.FAR), axis=1)
        ) / self.beta
        valid = ops.logical_and(ops.any(positive_mask, axis=1), ops.any(negative_mask, axis=1))
        return positive_term + negative_term, valid

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "beta": self.beta,
            "base": self.base,
            "epsilon": self.epsilon,
        }
