"""Pair-based losses (docs/methods.md, classic losses), each a short `terms` on `PairLoss`.

`d` is the value of the loss's `distance` (`"euclidean"`, `"squared_euclidean"`, `"cosine"`
or `"dot"`, see `keras_dml.distances`) between (normalised) embeddings; `P_i` and `N_i`
are the positives and negatives that the `positive=` and `negative=` strategies, or a
`selection=` from `keras_dml.miners.PairMiner`, give anchor `i`. Hinges are written for
distances; for a similarity `keras_dml.distances.margin` turns them around.
"""
import keras
from keras import ops

from keras_dml import checks, distances, miners
from keras_dml.losses.base import MetricLoss, masked_mean

ALL_DISTANCES = tuple(distances.DISTANCES)


class PairTerms:
    """What every pair loss shares, for `MetricLoss` and `TrainableMetricLoss` alike: the
    `distance`, the mining strategies and the `Pairs` its `terms` work on.

    `terms(labels, embeddings, selection=None, references=None)`: `selection` is a mined
    `PairSelection` to use instead of the loss's own strategies, `references` a memory
    to compare the batch with (`CrossBatchMemory`; a loss that cannot sets
    `takes_references = False`). A subclass lists the distances it can use in `DISTANCES`.
    """

    DISTANCES = ALL_DISTANCES
    weighs_anchors = True
    takes_selection = True
    takes_references = True

    def init_pairs(self, distance, positive, negative, semihard_fallback):
        self.distance = distances.check(distance, self.DISTANCES, type(self).__name__)
        self.positive = checks.one_of(positive, "positive", miners.POSITIVE_STRATEGIES)
        self.negative = checks.one_of(negative, "negative", miners.NEGATIVE_STRATEGIES)
        self.semihard_fallback = checks.one_of(semihard_fallback, "semihard_fallback", miners.SEMIHARD_FALLBACKS)

    def check_selection(self, selection, batch_size):
        return miners.check_selection(selection, batch_size)

    def pairs(self, labels, embeddings, references=None):
        """The `keras_dml.miners.Pairs` of the batch (against `references` when given)."""
        return miners.pairs(labels, embeddings, self.distance, references)

    def select(self, pairs, selection=None, semihard_threshold="each"):
        """`selection`, or the `PairSelection` of the loss's own strategies."""
        if selection is not None:
            return selection
        return miners.select(pairs, self.positive, self.negative, self.semihard_fallback, semihard_threshold)

    def masks(self, pairs, selection=None):
        """Boolean `(n, m)` masks of the positive and negative pairs the loss uses."""
        if selection is None and self.positive == "all" and self.negative == "all":
            return pairs.positive_mask, pairs.negative_mask
        chosen = self.select(pairs, selection)
        shape = ops.shape(pairs.positive_mask)
        return (ops.logical_and(miners.selection_mask(chosen.positives, shape), pairs.positive_mask),
                ops.logical_and(miners.selection_mask(chosen.negatives, shape), pairs.negative_mask))

    def pair_values(self, pairs, chosen):
        """Values `(n, k)` of the pairs a `Selection` chose, with gradient.

        A single partner per anchor is recomputed from the embeddings, so its gradient is
        O(n D) and never touches the full matrix.
        """
        if chosen.index is None:
            return pairs.values()
        if chosen.index.shape[1] == 1:
            partners = ops.take(pairs.references, chosen.index[:, 0], axis=0)
            return distances.paired(self.distance)(pairs.anchors, partners)[:, None]
        return ops.take_along_axis(pairs.values(), chosen.index, axis=1)

    def pair_config(self):
        return {"distance": self.distance, "positive": self.positive, "negative": self.negative,
                "semihard_fallback": self.semihard_fallback}


@keras.saving.register_keras_serializable(package="keras_dml")
class PairLoss(PairTerms, MetricLoss):
    """A `MetricLoss` on pairs (see `PairTerms`).

    `semihard_fallback` says what `negative="semihard"` does for a positive with no
    negative farther than it (see `keras_dml.miners.semihard_negatives`): `"nearest"`
    (keras_dml's default) takes the nearest negative, `"farthest"` the farthest
    (TensorFlow Addons' `triplet_semihard_loss`), `"none"` drops the pair
    (pytorch-metric-learning). FaceNet defines no fallback. `normalize`,
    `cross_replica`, `name` and `reduction` are `MetricLoss`'s.
    """

    def __init__(self, distance="euclidean", positive="all", negative="all", semihard_fallback="nearest",
                 **kwargs):
        super().__init__(**kwargs)
        self.init_pairs(distance, positive, negative, semihard_fallback)

    def get_config(self):
        return {**super().get_config(), **self.pair_config()}


def pair_average(pair_terms, mask, valid):
    """Per-anchor terms whose mean over `valid` anchors is the mean of `pair_terms` `(n, m)`
    over all `mask`ed pairs: each anchor's sum times `#valid anchors / #pairs`."""
    mask = ops.logical_and(mask, valid[:, None])
    per_anchor = ops.sum(ops.where(mask, pair_terms, 0.0), axis=1)
    count = ops.sum(ops.cast(mask, "float32"))
    anchors = ops.sum(ops.cast(valid, "float32"))
    return per_anchor * anchors / ops.maximum(count, 1.0)


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

    (for a similarity: `[pos_margin - s_ij]_+^2` and `[s_ik - neg_margin]_+^2`). An anchor
    counts when it has at least one selected pair; a missing side's mean is left out.
    `negative="semihard"` is relative to the anchor's nearest selected positive.

    Example:

    >>> import numpy as np, keras_dml
    >>> loss = keras_dml.losses.ContrastiveLoss(neg_margin=0.5)
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(loss(labels, embeddings)) >= 0.0
    True
    """

    def __init__(self, pos_margin=0.0, neg_margin=0.5, positive="all", negative="all", distance="euclidean",
                 **kwargs):
        super().__init__(distance=distance, positive=positive, negative=negative, **kwargs)
        self.pos_margin = checks.number(pos_margin, "pos_margin")
        self.neg_margin = checks.number(neg_margin, "neg_margin")

    def terms(self, labels, embeddings, selection=None, references=None):
        pairs = self.pairs(labels, embeddings, references)
        positives, negatives = self.select(pairs, selection, semihard_threshold="nearest")
        positive_value = self.pair_values(pairs, positives)
        negative_value = self.pair_values(pairs, negatives)
        has_positive = ops.any(positives.valid, axis=1)
        negative_valid = negatives.valid
        if selection is None and self.negative == "semihard":
            negative_valid = ops.logical_and(negative_valid, has_positive[:, None])
        pull = ops.square(ops.relu(distances.margin(positive_value, self.pos_margin, self.distance)))
        push = ops.square(ops.relu(distances.margin(self.neg_margin, negative_value, self.distance)))
        positive_term = masked_mean(pull, positives.valid, axis=1)
        negative_term = masked_mean(push, negative_valid, axis=1)
        valid = ops.logical_or(has_positive, ops.any(negative_valid, axis=1))
        return positive_term + negative_term, valid

    def get_config(self):
        return {**super().get_config(), "pos_margin": self.pos_margin, "neg_margin": self.neg_margin}


@keras.saving.register_keras_serializable(package="keras_dml")
class TripletLoss(PairLoss):
    """Triplet margin loss (Weinberger & Saul, 2009; FaceNet mining).

    `l_i = mean_{j in P_i, k in N_i} [d_ij - d_ik + margin]_+`  (similarities: `[s_ik - s_ij + margin]_+`)

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

    def __init__(self, margin=0.2, positive="all", negative="all", distance="euclidean", **kwargs):
        super().__init__(distance=distance, positive=positive, negative=negative, **kwargs)
        self.margin = checks.number(margin, "margin")

    def terms(self, labels, embeddings, selection=None, references=None):
        pairs = self.pairs(labels, embeddings, references)
        positives, negatives = self.select(pairs, selection)
        positive_value = distances.oriented(self.pair_values(pairs, positives), self.distance)
        if negatives.index is None:
            every = distances.oriented(pairs.values(), self.distance)
            hinge = _hinge_sums(positive_value + self.margin, every, negatives.valid)
            count = ops.sum(ops.cast(negatives.valid, "float32"), axis=1, keepdims=True)
            hinge = hinge / ops.maximum(count, 1.0)
            valid = ops.logical_and(positives.valid, ops.any(negatives.valid, axis=1, keepdims=True))
        else:
            negative_value = distances.oriented(self.pair_values(pairs, negatives), self.distance)
            hinge = ops.relu(positive_value - negative_value + self.margin)
            valid = ops.logical_and(positives.valid, negatives.valid)
        return masked_mean(hinge, valid, axis=1), ops.any(valid, axis=1)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="keras_dml")
class NPairLoss(PairLoss):
    """Multi-class N-pair loss (Sohn, NeurIPS 2016), on similarities `s = z_i . z_j`
    (`distance="dot"`; a distance `d` enters as `s = -d`).

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

    def __init__(self, temperature=0.1, positive="all", negative="all", distance="dot", **kwargs):
        super().__init__(distance=distance, positive=positive, negative=negative, **kwargs)
        self.temperature = checks.positive(temperature, "temperature")

    def terms(self, labels, embeddings, selection=None, references=None):
        pairs = self.pairs(labels, embeddings, references)
        positives, negatives = self.select(pairs, selection)
        positive_logit = logits(self.pair_values(pairs, positives), self.distance, self.temperature)
        if negatives.index is None:
            scaled = ops.where(negatives.valid, logits(pairs.values(), self.distance, self.temperature), -distances.FAR)
            negative_logits = ops.logsumexp(scaled, axis=1, keepdims=True)
            negative_valid = ops.any(negatives.valid, axis=1, keepdims=True)
        else:
            negative_logits = logits(self.pair_values(pairs, negatives), self.distance, self.temperature)
            negative_valid = negatives.valid
        terms = ops.softplus(negative_logits - positive_logit)
        valid = ops.logical_and(positives.valid, negative_valid)
        return masked_mean(terms, valid, axis=1), ops.any(valid, axis=1)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def logits(values, distance, temperature):
    """Softmax logits of pair values: `s / temperature`, or `-d / temperature` for a distance."""
    return -distances.oriented(values, distance) / temperature


@keras.saving.register_keras_serializable(package="keras_dml")
class MultiSimilarityLoss(PairLoss):
    """Multi-similarity loss with its own pair mining (Wang et al., CVPR 2019).

    On similarities `s` (`distance="cosine"` or `"dot"`), anchor `i` keeps positives with
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

    DISTANCES = distances.SIMILARITIES

    def __init__(self, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1, distance="cosine", **kwargs):
        super().__init__(distance=distance, **kwargs)
        self.alpha = checks.positive(alpha, "alpha")
        self.beta = checks.positive(beta, "beta")
        self.base = checks.number(base, "base")
        self.epsilon = checks.number(epsilon, "epsilon")

    def terms(self, labels, embeddings, selection=None, references=None):
        pairs = self.pairs(labels, embeddings, references)
        sim = pairs.values()
        mined = ops.stop_gradient(sim)
        positive_mask, negative_mask = self.masks(pairs, selection)
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
