"""Softmax-over-pairs losses with labels: supervised contrastive (SupCon) and NT-Xent (SimCLR)."""
import keras
from keras import ops

from keras_dml import checks, distances
from keras_dml.losses.pair import PairLoss, logits, pair_average


@keras.saving.register_keras_serializable(package="keras_dml")
class SupConLoss(PairLoss):
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020), "L_out".

    With logits `u_ij = s_ij / temperature` (a distance enters as `s = -d`):

    `l_i = -mean_{j in P_i} log(exp(u_ij) / sum_{a in P_i + N_i} exp(u_ia))`

    averaged over the anchors with a positive, when the batch has a negative pair.

    Example:

    >>> import numpy as np, keras_dml
    >>> labels = np.array([0, 0, 1, 1])
    >>> x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(keras_dml.losses.SupConLoss(temperature=0.1)(labels, x)) > 0.0
    True
    """

    def __init__(self, temperature=0.1, distance="cosine", **kwargs):
        super().__init__(distance=distance, **kwargs)
        self.temperature = checks.positive(temperature, "temperature")

    def terms(self, labels, embeddings, selection=None, references=None):
        pairs = self.pairs(labels, embeddings, references)
        positive_mask, negative_mask = self.masks(pairs, selection)
        scaled = logits(pairs.values(), self.distance, self.temperature)
        either = ops.logical_or(positive_mask, negative_mask)
        denominator = ops.logsumexp(ops.where(either, scaled, -distances.FAR), axis=1, keepdims=True)
        log_prob = ops.where(positive_mask, scaled - denominator, 0.0)
        count = ops.sum(ops.cast(positive_mask, "float32"), axis=1)
        valid = ops.logical_and(count > 0, ops.any(negative_mask))
        return -ops.sum(log_prob, axis=1) / ops.maximum(count, 1.0), valid

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="keras_dml")
class NTXentLoss(PairLoss):
    """NT-Xent, the normalised temperature-scaled cross entropy of SimCLR (Chen et al.,
    ICML 2020; Sohn's N-pair loss with a temperature), with labels saying which pairs
    are positive (two views of one image share a label).

    For every positive pair `(i, j)`, with `u = s / temperature` (a distance: `s = -d`):

    `l_ij = -log(exp(u_ij) / (exp(u_ij) + sum_{k in N_i} exp(u_ik)))`

    averaged over the positive pairs (NPairLoss averages per anchor first), when the
    batch has a negative pair.

    Example:

    >>> import numpy as np, keras_dml
    >>> labels = np.array([0, 1, 2, 0, 1, 2])  # two views of three images
    >>> x = np.random.default_rng(0).normal(size=(6, 8)).astype("float32")
    >>> float(keras_dml.losses.NTXentLoss(temperature=0.07)(labels, x)) > 0.0
    True
    """

    def __init__(self, temperature=0.07, distance="cosine", **kwargs):
        super().__init__(distance=distance, **kwargs)
        self.temperature = checks.positive(temperature, "temperature")

    def terms(self, labels, embeddings, selection=None, references=None):
        pairs = self.pairs(labels, embeddings, references)
        positive_mask, negative_mask = self.masks(pairs, selection)
        scaled = logits(pairs.values(), self.distance, self.temperature)
        negatives = ops.logsumexp(ops.where(negative_mask, scaled, -distances.FAR), axis=1, keepdims=True)
        per_pair = ops.softplus(negatives - scaled)  # -log(e^u / (e^u + sum_k e^u_ik))
        valid = ops.logical_and(ops.any(positive_mask, axis=1), ops.any(negative_mask))
        return pair_average(per_pair, positive_mask, valid), valid

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
