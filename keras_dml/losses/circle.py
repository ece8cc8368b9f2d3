"""Circle loss (Sun et al., CVPR 2020): pair similarities, each weighted by how far it is from its optimum."""
import keras
from keras import ops

from keras_dml import checks, distances
from keras_dml.losses.pair import PairLoss


@keras.saving.register_keras_serializable(package="keras_dml")
class CircleLoss(PairLoss):
    """Circle loss (Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity
    Optimization", CVPR 2020), on similarities `s` (`distance="cosine"` or `"dot"`).

    With `a_p = [1 + m - s_ij]_+` and `a_n = [s_ik + m]_+` (no gradient through them):

    `l_i = softplus(logsumexp_{j in P_i} -gamma a_p (s_ij - (1 - m)) + logsumexp_{k in N_i} gamma a_n (s_ik - m))`

    averaged over the anchors with a positive and a negative. `m` is the relaxation
    margin, `gamma` the scale; the defaults (`m=0.4, gamma=80`) are the paper's for
    fine-grained retrieval (faces: 0.25, 256).

    Example:

    >>> import numpy as np, keras_dml
    >>> labels = np.array([0, 0, 1, 1])
    >>> x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(keras_dml.losses.CircleLoss(m=0.25, gamma=64)(labels, x)) > 0.0
    True
    """

    DISTANCES = distances.SIMILARITIES

    def __init__(self, m=0.4, gamma=80.0, distance="cosine", **kwargs):
        super().__init__(distance=distance, **kwargs)
        self.m = checks.non_negative(m, "m")
        self.gamma = checks.positive(gamma, "gamma")

    def terms(self, labels, embeddings, selection=None, references=None):
        pairs = self.pairs(labels, embeddings, references)
        sim = pairs.values()
        fixed = ops.stop_gradient(sim)
        positive_mask, negative_mask = self.masks(pairs, selection)
        pull = -self.gamma * ops.relu(1.0 + self.m - fixed) * (sim - (1.0 - self.m))
        push = self.gamma * ops.relu(fixed + self.m) * (sim - self.m)
        positive_term = ops.logsumexp(ops.where(positive_mask, pull, -distances.FAR), axis=1)
        negative_term = ops.logsumexp(ops.where(negative_mask, push, -distances.FAR), axis=1)
        valid = ops.logical_and(ops.any(positive_mask, axis=1), ops.any(negative_mask, axis=1))
        return ops.softplus(ops.where(valid, positive_term + negative_term, 0.0)), valid

    def get_config(self):
        return {**super().get_config(), "m": self.m, "gamma": self.gamma}
