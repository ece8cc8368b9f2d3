"""Lifted structure losses: every positive pair against all the negatives of its members."""
import keras
from keras import ops

from keras_dml import distances
from keras_dml.losses.pair import PairLoss, pair_average


def _masked_logsumexp(values, mask, axis=1):
    """`log sum exp` over the `mask`ed entries; `-FAR` (a finite "log 0") where there is none."""
    return ops.logsumexp(ops.where(mask, values, -distances.FAR), axis=axis)


@keras.saving.register_keras_serializable(package="keras_dml")
class LiftedStructureLoss(PairLoss):
    """Lifted structured embedding loss (Oh Song et al., CVPR 2016).

    For every positive pair `(i, j)`:

    `J_ij = log(sum_{k in N_i} exp(neg_margin - d_ik) + sum_{l in N_j} exp(neg_margin - d_jl)) + d_ij - pos_margin`

    and the loss is `mean_{(i, j)} [J_ij]_+^2 / 2` over the positive pairs (both orders),
    when the batch has a negative pair. It needs each positive's own negatives, so it
    compares the batch with itself only (no `CrossBatchMemory`).

    Example:

    >>> import numpy as np, keras_dml
    >>> labels = np.array([0, 0, 1, 1])
    >>> x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(keras_dml.losses.LiftedStructureLoss(neg_margin=1.0)(labels, x)) > 0.0
    True
    """

    takes_references = False

    def __init__(self, neg_margin=1.0, pos_margin=0.0, distance="euclidean", **kwargs):
        super().__init__(distance=distance, **kwargs)
        self.neg_margin = float(neg_margin)
        self.pos_margin = float(pos_margin)

    def terms(self, labels, embeddings, selection=None, references=None):
        if references is not None:
            raise ValueError("LiftedStructureLoss needs the negatives of each positive, which a memory lacks: "
                             "wrap another loss in CrossBatchMemory.")
        pairs = self.pairs(labels, embeddings)
        positive_mask, negative_mask = self.masks(pairs, selection)
        values = pairs.values()
        push = _masked_logsumexp(distances.margin(self.neg_margin, values, self.distance), negative_mask)
        structure = ops.logaddexp(push[:, None], push[None, :])
        pull = distances.margin(values, self.pos_margin, self.distance)
        per_pair = ops.square(ops.relu(structure + pull)) / 2.0
        valid = ops.logical_and(ops.any(positive_mask, axis=1), ops.any(negative_mask))
        return pair_average(per_pair, positive_mask, valid), valid

    def get_config(self):
        return {**super().get_config(), "neg_margin": self.neg_margin, "pos_margin": self.pos_margin}


@keras.saving.register_keras_serializable(package="keras_dml")
class GeneralizedLiftedStructureLoss(PairLoss):
    """Generalised lifted structure loss (Hermans et al., "In Defense of the Triplet Loss
    for Person Re-Identification", 2017, section 2), one term per anchor:

    `l_i = [log sum_{j in P_i} exp(d_ij - pos_margin) + log sum_{k in N_i} exp(neg_margin - d_ik)]_+`

    averaged over the anchors with a positive and a negative.

    Example:

    >>> import numpy as np, keras_dml
    >>> labels = np.array([0, 0, 1, 1])
    >>> x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(keras_dml.losses.GeneralizedLiftedStructureLoss()(labels, x)) > 0.0
    True
    """

    def __init__(self, neg_margin=1.0, pos_margin=0.0, distance="euclidean", **kwargs):
        super().__init__(distance=distance, **kwargs)
        self.neg_margin = float(neg_margin)
        self.pos_margin = float(pos_margin)

    def terms(self, labels, embeddings, selection=None, references=None):
        pairs = self.pairs(labels, embeddings, references)
        positive_mask, negative_mask = self.masks(pairs, selection)
        values = pairs.values()
        pull = _masked_logsumexp(distances.margin(values, self.pos_margin, self.distance), positive_mask)
        push = _masked_logsumexp(distances.margin(self.neg_margin, values, self.distance), negative_mask)
        valid = ops.logical_and(ops.any(positive_mask, axis=1), ops.any(negative_mask, axis=1))
        return ops.relu(ops.where(valid, pull + push, 0.0)), valid

    def get_config(self):
        return {**super().get_config(), "neg_margin": self.neg_margin, "pos_margin": self.pos_margin}
