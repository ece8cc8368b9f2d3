"""`PDDMLoss`: hard quadruplet mining with a PDDM unit and the double-header hinge (docs/methods.md, PDDM).

A layer (`TrainableMetricLoss`): attach it with `keras_dml.models.MetricModel(embedder,
criterion)` so that `fit` trains its unit `loss.pddm` with the embedder and checkpoints
save it; `model.embedder` leaves it out.
"""
import keras
from keras import ops

from keras_dml import checks, distances, miners
from keras_dml.layers.pddm import PDDM
from keras_dml.losses.base import TrainableMetricLoss

QUADRUPLETS = ("batch", "per_anchor")


def _squared_distance(a, b):
    """Row-by-row `||a_i - b_i||^2`, `(n,)`."""
    return ops.sum(ops.square(a - b), axis=-1)


@keras.saving.register_keras_serializable(package="keras_dml")
class PDDMLoss(TrainableMetricLoss):
    """PDDM quadruplet loss (Huang et al., NIPS 2016).

    With `S` the scores of the unit `self.pddm` on the (L2-normalised) embeddings and
    `d` their Euclidean distances, quadruplets `(i, j, k, l)` are mined on the
    stop-gradient score matrix. `quadruplets="batch"` (the paper: "one hard quadruplet
    from a random batch during each forward pass") takes one per batch:

    - `(i, j) = argmin S_ij` over the positive pairs whose members have negatives
      (the most dissimilar positive pair of the batch),
    - `k = argmax_{k negative of i} S_ik`, `l = argmax_{l negative of j} S_jl`
      (the hardest negative of each member).

    `quadruplets="per_anchor"` (keras_dml's first version) takes one per anchor `i`
    with a positive and a negative: `j = argmin_{j positive of i} S_ij`, `k` and `l` as above.
    For each quadruplet

    `E_m = [alpha + S_ik - S_ij]_+ + [alpha + S_jl - S_ij]_+`,
    `E_e = [beta + d_ij^2 - d_ik^2]_+ + [beta + d_ij^2 - d_jl^2]_+`,

    and the loss is the mean over quadruplets of `E_m + lam * E_e` (0, with zero
    gradients, when there is none). The selected scores are recomputed pair by pair, so
    the gradient never flows through the `(n, n)` score matrix. Ties go to the lower index.

    The defaults `alpha = beta = lam = 0.5` are keras_dml's: the paper's values could not
    be found (one re-implementation uses `beta = 1.0`; docs/methods.md, PDDM).

    Args:
        embedding_dim: width of the embeddings (the unit's input width); optional, `build`
            takes it from the embeddings (`MetricModel` builds it), and checks it when given.
        hidden_dim: width of the unit's hidden layers; defaults to `embedding_dim`.
        alpha: margin of the score hinge.
        beta: margin of the embedding hinge (on squared distances).
        lam: weight of the embedding hinge.
        quadruplets: `"batch"` (the paper's rule, default) or `"per_anchor"`.

    Example:

    >>> import numpy as np
    >>> from keras_dml.losses.pddm import PDDMLoss
    >>> loss = PDDMLoss()  # the width comes from the first embeddings it sees
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(loss(labels, embeddings)) > 0.0
    True
    """

    def __init__(self, embedding_dim=None, hidden_dim=None, alpha=0.5, beta=0.5, lam=0.5, quadruplets="batch",
                 **kwargs):
        super().__init__(**kwargs)
        self.embedding_dim = None if embedding_dim is None else checks.positive_int(embedding_dim, "embedding_dim")
        self.hidden_dim = None if hidden_dim is None else checks.positive_int(hidden_dim, "hidden_dim")
        self.alpha = checks.non_negative(alpha, "alpha")
        self.beta = checks.non_negative(beta, "beta")
        self.lam = checks.non_negative(lam, "lam")
        self.quadruplets = checks.one_of(quadruplets, "quadruplets", QUADRUPLETS)
        self.pddm = PDDM(hidden_dim=hidden_dim, dtype=self.dtype_policy, name="pddm")
        if self.embedding_dim is not None:
            self.build(None, (None, self.embedding_dim))

    def build(self, labels_shape, embeddings_shape):
        self.embedding_dim = checks.built_width(embeddings_shape, self.embedding_dim, type(self).__name__)
        self.pddm.build((None, self.embedding_dim), (None, self.embedding_dim))

    def mine(self, labels, embeddings):
        """`(i, j, k, l, valid)`, each `(m,)`: the quadruplets, `m = 1` (`"batch"`) or `n`."""
        scores = ops.stop_gradient(self.pddm.pairwise(embeddings))
        positive_mask, negative_mask = distances.label_masks(labels)
        has_negative = ops.any(negative_mask, axis=1)
        if self.quadruplets == "batch":
            n = ops.shape(scores)[0]
            pairs = ops.logical_and(positive_mask, ops.logical_and(has_negative[:, None], has_negative[None, :]))
            flat = ops.cast(ops.argmin(ops.reshape(ops.where(pairs, scores, distances.FAR), (-1,))), "int32")
            i, j = ops.reshape(flat // n, (1,)), ops.reshape(flat % n, (1,))
            valid = ops.reshape(ops.any(pairs), (1,))
        else:
            i = ops.arange(ops.shape(scores)[0], dtype="int32")
            j, has_positive = miners.nearest(scores, positive_mask)
            valid = ops.logical_and(has_positive, has_negative)
        hardest_negative, _ = miners.farthest(scores, negative_mask)
        return i, j, ops.take(hardest_negative, i), ops.take(hardest_negative, j), valid

    def terms(self, labels, embeddings):
        i, j, k, l, valid = self.mine(labels, embeddings)
        e_i, e_j, e_k, e_l = (ops.take(embeddings, index, axis=0) for index in (i, j, k, l))
        s_ij, s_ik, s_jl = self.pddm(e_i, e_j), self.pddm(e_i, e_k), self.pddm(e_j, e_l)
        d_ij, d_ik, d_jl = _squared_distance(e_i, e_j), _squared_distance(e_i, e_k), _squared_distance(e_j, e_l)
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
            "quadruplets": self.quadruplets,
        }
