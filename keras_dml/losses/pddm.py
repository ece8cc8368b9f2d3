"""`PDDMLoss`: hard quadruplet mining with a PDDM unit and the double-header hinge (METHODS.md section 5).

A layer (`TrainableMetricLoss`): attach it with `keras_dml.models.MetricModel(embedder,
criterion)` so that `fit` trains its unit `loss.pddm` with the embedder and checkpoints
save it; `model.embedder` leaves it out.
"""
import keras
from keras import ops

from keras_dml import checks, distances, miners
from keras_dml.layers.pddm import PDDM
from keras_dml.losses.base import TrainableMetricLoss


def _squared_distance(a, b):
    """Row-by-row `||a_i - b_i||^2`, `(n,)`."""
    return ops.sum(ops.square(a - b), axis=-1)


@keras.saving.register_keras_serializable(package="keras_dml")
class PDDMLoss(TrainableMetricLoss):
    """PDDM quadruplet loss (Huang et al., NIPS 2016).

    With `S` the scores of the unit `self.pddm` on the (L2-normalised) embeddings and
    `d` their Euclidean distances, every anchor `i` with a positive and a negative
    gives one quadruplet, mined on the stop-gradient score matrix:

    - `j = argmin_{j positive of i} S_ij` (its hardest positive),
    - `k = argmax_{k negative of i} S_ik`, `l = argmax_{l negative of j} S_jl`
      (the hardest negatives of both members; `j` has a negative whenever `i` does);

    `E_m = [alpha + S_ik - S_ij]_+ + [alpha + S_jl - S_ij]_+`,
    `E_e = [beta + d_ij^2 - d_ik^2]_+ + [beta + d_ij^2 - d_jl^2]_+`,
    `loss = mean over quadruplets of E_m + lam * E_e` (0, with zero gradients, when
    there is none). The selected scores are recomputed pair by pair, so the gradient
    never flows through the `(n, n)` score matrix.

    Args:
        embedding_dim: width of the embeddings (the unit's input width).
        hidden_dim: width of the unit's hidden layers; defaults to `embedding_dim`.
        alpha: margin of the score hinge.
        beta: margin of the embedding hinge (on squared distances).
        lam: weight of the embedding hinge.

    Example:

    >>> import numpy as np
    >>> from keras_dml.losses.pddm import PDDMLoss
    >>> loss = PDDMLoss(embedding_dim=8)
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(loss(labels, embeddings)) > 0.0
    True
    """

    def __init__(self, embedding_dim, hidden_dim=None, alpha=0.5, beta=0.5, lam=0.5, **kwargs):
        super().__init__(**kwargs)
        for argument, value in (("alpha", alpha), ("beta", beta), ("lam", lam)):
            if value < 0:
                raise ValueError(f"{argument} must be >= 0; got {value}.")
        self.embedding_dim = checks.positive_int(embedding_dim, "embedding_dim")
        self.hidden_dim = None if hidden_dim is None else checks.positive_int(hidden_dim, "hidden_dim")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.lam = float(lam)
        self.pddm = PDDM(hidden_dim=hidden_dim, dtype=self.dtype_policy, name="pddm")
        self.pddm.build((None, self.embedding_dim), (None, self.embedding_dim))
        self.built = True

    def mine(self, labels, embeddings):
        """`(j, k, l, valid)`, `(n,)` each: the quadruplet `(i, j, k, l)` of each anchor `i`."""
        scores = ops.stop_gradient(self.pddm.pairwise(embeddings))
        positive_mask, negative_mask = distances.label_masks(labels)
        j, has_positive = miners.nearest(scores, positive_mask)
        k, has_negative = miners.farthest(scores, negative_mask)
        l = ops.take(k, j)
        return j, k, l, ops.logical_and(has_positive, has_negative)

    def terms(self, labels, embeddings):
        j, k, l, valid = self.mine(labels, embeddings)
        e_j, e_k, e_l = (ops.take(embeddings, index, axis=0) for index in (j, k, l))
        s_ij, s_ik, s_jl = self.pddm(embeddings, e_j), self.pddm(embeddings, e_k), self.pddm(e_j, e_l)
        d_ij, d_ik, d_jl = _squared_distance(embeddings, e_j), _squared_distance(embeddings, e_k), _squared_distance(e_j, e_l)
        score_hinge = ops.relu(self.alpha + s_ik - s_ij) + ops.relu(self.alpha + s_jl - s_ij)
        embedding_hinge = ops.relu(self.beta + d_ij - d_ik) + ops.relu(self.beta + d_ij - d_jl)
        return score_hinge + self.lam * embedding_hinge, valid

    def get_config(self):
        return {
            **super().get_config(),
            "embedding_dim": self.embedding_dim,
            "hidden_dim": self.hidden_dim,
            "alpha": self.alpha,
            "beta": self.beta,
            "lam": self.lam,
        }
