"""Pairwise distances, similarities and label masks, written with `keras.ops` only,
and the library-wide numeric constants they use.

Every pairwise function takes embeddings `x` of shape `(n, D)` and optionally `y` of
shape `(m, D)` (default: `x` itself) and returns an `(n, m)` matrix.

Example:

>>> import numpy as np
>>> from keras_dml import distances
>>> x = np.eye(3, dtype="float32")
>>> tuple(distances.euclidean(x).shape)
(3, 3)
"""
from keras import ops

# Library-wide constants.
# Stands in for "no such pair" in masked reductions (miners, losses): finite, so
# nothing downstream can turn it into inf or NaN, and larger than any distance or
# scaled similarity between real (normalised) embeddings.
FAR = 1e9
# Squared distances below this are treated as exactly zero by `euclidean`, so the
# square root never sees a value whose gradient would be infinite.
_SQRT_EPSILON = 1e-12


def dot_product(x, y=None):
    """Similarity `s_ij = x_i . y_j`."""
    y = x if y is None else y
    return ops.matmul(x, ops.transpose(y))


def cosine_similarity(x, y=None):
    """Similarity `s_ij = x_i . y_j / (||x_i|| ||y_j||)`; zero vectors give 0."""
    x = l2_normalize(x)
    y = x if y is None else l2_normalize(y)
    return dot_product(x, y)


def squared_euclidean(x, y=None):
    """Distance `d_ij^2 = ||x_i - y_j||^2 = ||x_i||^2 + ||y_j||^2 - 2 x_i . y_j`, clamped at 0."""
    y_given = y is not None
    y = y if y_given else x
    x_sq = ops.sum(ops.square(x), axis=-1)
    y_sq = ops.sum(ops.square(y), axis=-1) if y_given else x_sq
    d2 = x_sq[:, None] + y_sq[None, :] - 2.0 * dot_product(x, y)
    return ops.maximum(d2, 0.0)


def safe_sqrt(d2):
    """`sqrt(d2)` whose gradient is 0 (not inf or NaN) where `d2` is (numerically) 0."""
    positive = d2 > _SQRT_EPSILON
    return ops.where(positive, ops.sqrt(ops.where(positive, d2, 1.0)), 0.0)


def euclidean(x, y=None):
    """Distance `d_ij = ||x_i - y_j||`, with a gradient that stays finite at `d_ij = 0`."""
    return safe_sqrt(squared_euclidean(x, y))


def l2_normalize(x):
    """Rows scaled to unit length, `x_i / ||x_i||`; a zero row stays zero (finite gradient).

    Each row is first divided by its largest absolute entry, so its squared norm lies
    in `[1, D]`: exact and finite in float32 for norms from 1e-30 to 1e30. That scale is
    a constant for the gradient, which is exact because the result does not depend on it.
    A row with a single non-zero entry gets the exact gradient too (zero along itself).
    """
    scale = ops.stop_gradient(ops.max(ops.abs(x), axis=-1, keepdims=True))
    x = x / ops.where(scale > 0, scale, 1.0)
    norm_sq = ops.sum(ops.square(x), axis=-1, keepdims=True)
    # Only a zero row is floored. `maximum(norm_sq, 1)` would also touch every row with
    # a single non-zero entry (common after a ReLU), whose norm_sq is 1 up to rounding:
    # at that tie the norm's gradient is halved (JAX) or dropped, a wrong gradient.
    return x * ops.rsqrt(ops.where(norm_sq > 0, norm_sq, 1.0))


DISTANCES = {
    "euclidean": euclidean,
    "squared_euclidean": squared_euclidean,
    "cosine": cosine_similarity,
    "dot": dot_product,
}
# The one place that says which pairwise functions are similarities (larger = closer);
# pytorch-metric-learning calls this `is_inverted`. Everything below derives from it.
SIMILARITIES = ("cosine", "dot")


def get(name):
    """The pairwise function called `name`: one of `DISTANCES`' keys."""
    if name not in DISTANCES:
        raise ValueError(
            f"Unknown distance={name!r}; expected one of {sorted(DISTANCES)}."
        )
    return DISTANCES[name]


def is_similarity(name):
    """True when larger values of the named function mean *closer*."""
    get(name)
    return name in SIMILARITIES


def check(name, allowed, owner):
    """`name`, or a `ValueError` naming `distance` unless `owner` (a loss's name) can use it."""
    get(name)
    if name not in allowed:
        raise ValueError(f"{owner} cannot use distance={name!r}; expected one of {list(allowed)}.")
    return name


def oriented(values, name):
    """Values of the named function turned so that smaller means closer: distances as
    they are, similarities negated. Miners choose on this order; hinge losses written
    for distances (`[d_ap - d_an + m]_+`) use it for similarities too."""
    return -values if is_similarity(name) else values


def margin(x, y, name):
    """How far `x` lies beyond `y` on the *far* side: `x - y` for a distance, `y - x` for a
    similarity (pytorch-metric-learning's `distance.margin`). `[margin(d_ij, m)]_+` is a
    positive pair's violation, `[margin(m, d_ik)]_+` a negative pair's."""
    return y - x if is_similarity(name) else x - y


def mining_order(name, x, y=None):
    """The stop-gradient `(n, m)` matrix a miner chooses on for the named function:
    `oriented` values, with the squared distance standing in for `euclidean` (the same
    order, no square root)."""
    if name == "euclidean":
        name = "squared_euclidean"
    return ops.stop_gradient(oriented(get(name)(x, y), name))


def to_mining_order(values, name):
    """Pair values of the named function put on `mining_order`'s scale."""
    if name == "euclidean":
        return ops.square(values)
    return oriented(values, name)


def paired(name):
    """The row-by-row form `(x, y) -> (n,)` of the named pairwise function."""
    get(name)
    return {
        "euclidean": paired_euclidean,
        "squared_euclidean": lambda x, y: ops.sum(ops.square(x - y), axis=-1),
        "cosine": lambda x, y: paired_dot(l2_normalize(x), l2_normalize(y)),
        "dot": paired_dot,
    }[name]


def label_masks(labels, other_labels=None):
    """Boolean `(positive, negative)` masks for a batch of integer labels.

    `positive[i, j]` is true for `i != j` with the same label (the diagonal is left out
    when `other_labels` is not given); `negative[i, j]` for different labels.
    """
    labels = ops.reshape(labels, (-1,))
    other = labels if other_labels is None else ops.reshape(other_labels, (-1,))
    same = ops.equal(labels[:, None], other[None, :])
    positive = same
    if other_labels is None:
        n = ops.shape(labels)[0]
        positive = ops.logical_and(same, ops.logical_not(ops.eye(n, dtype="bool")))
    return positive, ops.logical_not(same)


def first_occurrence(labels):
    """`(n,)` bool: True where a label appears for the first time in the batch."""
    n = ops.shape(labels)[0]
    index = ops.arange(n, dtype="int32")
    earlier_same = ops.logical_and(ops.equal(labels[:, None], labels[None, :]), index[None, :] < index[:, None])
    return ops.logical_not(ops.any(earlier_same, axis=1))


def paired_euclidean(x, y):
    """Row-by-row distance `||x_i - y_i||`, `(n,)`, finite gradient at 0."""
    return safe_sqrt(ops.sum(ops.square(x - y), axis=-1))


def paired_dot(x, y):
    """Row-by-row similarity `x_i . y_i`, `(n,)`."""
    return ops.sum(x * y, axis=-1)
