"""`PDDM`: the position-dependent deep metric unit (Huang et al., NIPS 2016), docs/methods.md, PDDM.

The unit scores a pair of features from their difference and their position:

    u = |f_i - f_j|,   v = (f_i + f_j) / 2
    u' = l2norm(relu(W_u u + b_u)),   v' = l2norm(relu(W_v v + b_v))
    c = relu(W_c [u'; v'] + b_c),     S_ij = W_s c + b_s

A higher score means more similar. The hidden width defaults to the feature width.
"""
import keras
from keras import ops

from keras_dml import checks, distances


@keras.saving.register_keras_serializable(package="keras_dml")
class PDDM(keras.layers.Layer):
    """Scores pairs of features: `pddm(a, b)` on `(..., D)` tensors returns `(...)`.

    `a` and `b` may broadcast against each other (e.g. `(n, 1, D)` and `(1, m, D)`).
    `pddm.pairwise(features)` scores every pair of an `(n, D)` batch as an `(n, n)`
    matrix, symmetric by construction. It holds `(n, n, max(D, 2 * hidden_dim))` tensors,
    which is fine for batches of a few hundred samples (n = 200, D = 128: ~20 MB each)
    but grows quadratically beyond.

    Args:
        hidden_dim: width of the three hidden layers; defaults to the feature width `D`.

    Example:

    >>> import numpy as np
    >>> from keras_dml.layers.pddm import PDDM
    >>> pddm = PDDM(hidden_dim=4)
    >>> x = np.random.default_rng(0).normal(size=(5, 8)).astype("float32")
    >>> tuple(pddm(x[:3], x[2:]).shape), tuple(pddm.pairwise(x).shape)
    ((3,), (5, 5))
    """

    def __init__(self, hidden_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = None if hidden_dim is None else checks.positive_int(hidden_dim, "hidden_dim")
        self.feature_dim = None

    def build(self, a_shape, b_shape=None):
        self._check_widths(a_shape, a_shape if b_shape is None else b_shape)
        self.feature_dim = int(a_shape[-1])
        hidden = self.hidden_dim or self.feature_dim

        def dense(name, fan_in, fan_out):
            kernel = self.add_weight(shape=(fan_in, fan_out), initializer="glorot_uniform", name=f"{name}_kernel")
            bias = self.add_weight(shape=(fan_out,), initializer="zeros", name=f"{name}_bias")
            return kernel, bias

        self.difference = dense("difference", self.feature_dim, hidden)  # W_u, b_u
        self.position = dense("position", self.feature_dim, hidden)  # W_v, b_v
        self.joint = dense("joint", 2 * hidden, hidden)  # W_c, b_c
        self.score = dense("score", hidden, 1)  # W_s, b_s
        self.built = True

    def _check_widths(self, a_shape, b_shape):
        if a_shape[-1] is None or b_shape[-1] is None:
            raise ValueError("PDDM needs a known feature width (the last dimension of its inputs).")
        if a_shape[-1] != b_shape[-1]:
            raise ValueError(
                f"PDDM inputs must have the same feature width; got a with {a_shape[-1]} and b with {b_shape[-1]}."
            )
        if self.feature_dim is not None and a_shape[-1] != self.feature_dim:
            raise ValueError(
                f"PDDM was built for features of width {self.feature_dim}; got inputs of width {a_shape[-1]}."
            )

    def call(self, a, b):
        self._check_widths(a.shape, b.shape)
        u = ops.abs(a - b)
        v = (a + b) / 2.0

        def affine(x, weights):
            return ops.matmul(x, weights[0]) + weights[1]

        u = distances.l2_normalize(ops.relu(affine(u, self.difference)))
        v = distances.l2_normalize(ops.relu(affine(v, self.position)))
        c = ops.relu(affine(ops.concatenate([u, v], axis=-1), self.joint))
        return affine(c, self.score)[..., 0]

    def pairwise(self, features):
        """`(n, n)` scores `S_ij` of every pair of rows of `features` `(n, D)`.

        `u` and `v` are symmetric in `i, j`; the result is averaged with its transpose
        so that `S_ij` and `S_ji` are bitwise equal whatever order the matmuls sum in.
        """
        features = ops.convert_to_tensor(features)
        if len(features.shape) != 2:
            raise ValueError(f"features must have shape (n, feature_dim); got shape {tuple(features.shape)}.")
        scores = self(features[:, None, :], features[None, :, :])
        return (scores + ops.transpose(scores)) / 2.0

    def compute_output_shape(self, a_shape, b_shape):
        return tuple(ops.broadcast_shapes(a_shape, b_shape))[:-1]

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim}
