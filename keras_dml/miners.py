"""Which positives and negatives each anchor uses (docs/methods.md, mining).

Miners work on a stop-gradient distance matrix `dist` `(n, n)` and boolean label
masks, and return a `Selection`: `index` `(n, m)` holds the column of each chosen
partner and `valid` `(n, m)` says whether that choice exists; `index=None` means every
column (`m = n`) with `valid` the mask itself. Shapes never depend on the data, so every
loss built on them compiles under XLA. Ties go to the lower index.

| strategy | anchor `i` uses |
|---|---|
| `positive="all"` | every positive |
| `positive="easy"` | the nearest positive `argmin_j d_ij` (against class collapse) |
| `positive="hard"` | the farthest positive `argmax_j d_ij` |
| `negative="all"` | every negative |
| `negative="hard"` | the nearest negative `argmin_k d_ik` |
| `negative="semihard"` | the nearest negative with `d_ik > d_ip` (FaceNet); if there is none, `fallback` decides |

Semi-hard fallback, when no negative is farther than the positive (FaceNet defines none):
`"nearest"` takes the nearest negative (keras_dml's default choice), `"farthest"` the
farthest negative (TensorFlow Addons' `triplet_semihard_loss`), `"none"` leaves the pair
invalid (pytorch-metric-learning drops it).

Example:

>>> import numpy as np
>>> from keras_dml import distances, miners
>>> x = np.array([[0.0], [1.0], [3.0], [0.5]], "float32")
>>> pos, neg = distances.label_masks(np.array([0, 0, 0, 1]))
>>> sel = miners.mine_positives(distances.euclidean(x), pos, "easy")
>>> np.asarray(sel.index)[:, 0].tolist()
[1, 0, 1, 0]
"""
from collections import namedtuple

from keras import ops

from keras_dml import checks
from keras_dml.distances import FAR

POSITIVE_STRATEGIES = ("all", "easy", "hard")
NEGATIVE_STRATEGIES = ("all", "hard", "semihard")
SEMIHARD_FALLBACKS = ("nearest", "farthest", "none")

Selection = namedtuple("Selection", ["index", "valid"])


def nearest(dist, mask):
    """Per row, the column of the smallest `dist` where `mask` holds: `(index, valid)`, `(n,)` each."""
    index = ops.argmin(ops.where(mask, dist, FAR), axis=1)
    return ops.cast(index, "int32"), ops.any(mask, axis=1)


def farthest(dist, mask):
    """Per row, the column of the largest `dist` where `mask` holds: `(index, valid)`, `(n,)` each."""
    index = ops.argmax(ops.where(mask, dist, -FAR), axis=1)
    return ops.cast(index, "int32"), ops.any(mask, axis=1)


def _single(index, valid):
    return Selection(index[:, None], valid[:, None])


def mine_positives(dist, positive_mask, strategy="all"):
    """The positives each anchor uses under `strategy` (`"all" | "easy" | "hard"`)."""
    checks.one_of(strategy, "positive", POSITIVE_STRATEGIES)
    if strategy == "all":
        return Selection(None, positive_mask)
    pick = nearest if strategy == "easy" else farthest
    return _single(*pick(dist, positive_mask))


def mine_negatives(dist, negative_mask, strategy="all", positive_dist=None, fallback="nearest"):
    """The negatives each anchor uses under `strategy` (`"all" | "hard" | "semihard"`).

    `"semihard"` needs `positive_dist`, `(n, m)` distances of the positives the
    negatives are paired with, and returns one negative for each of them, with
    `fallback` (`"nearest" | "farthest" | "none"`) where none is farther.
    """
    checks.one_of(strategy, "negative", NEGATIVE_STRATEGIES)
    checks.one_of(fallback, "semihard_fallback", SEMIHARD_FALLBACKS)
    if strategy == "all":
        return Selection(None, negative_mask)
    if strategy == "hard":
        return _single(*nearest(dist, negative_mask))
    if positive_dist is None:
        raise ValueError('negative="semihard" needs the distances of the selected positives.')
    return semihard_negatives(dist, negative_mask, positive_dist, fallback)


def semihard_negatives(dist, negative_mask, positive_dist, fallback="nearest"):
    """For each anchor `i` and threshold `t = positive_dist[i, a]`, the nearest negative
    with `d_ik > t` (FaceNet's semi-hard negative). Where there is none: the nearest
    negative (`fallback="nearest"`), the farthest (`"farthest"`), or no valid choice (`"none"`).

    `dist` and `positive_dist` may be any increasing function of the distance (squared
    distances give the same choices). One threshold per anchor is one masked arg-min;
    many (every positive of the anchor) sort each row's negatives once and binary-search
    them, O(n^2 log n) instead of n^3.
    """
    has_negative = ops.any(negative_mask, axis=1, keepdims=True)
    if positive_dist.shape[1] == 1:
        beyond = ops.logical_and(negative_mask, ops.greater(dist, positive_dist))
        has_semihard = ops.any(beyond, axis=1, keepdims=True)
        pick = farthest if fallback == "farthest" else nearest
        index = ops.where(has_semihard, nearest(dist, beyond)[0][:, None], pick(dist, negative_mask)[0][:, None])
    else:
        masked = ops.where(negative_mask, dist, FAR)
        order = ops.cast(ops.argsort(masked, axis=1), "int32")
        ascending = ops.take_along_axis(masked, order, axis=1)
        rank = count_at_most(ascending, positive_dist)
        negatives = ops.sum(ops.cast(negative_mask, "int32"), axis=1, keepdims=True)
        last = ops.shape(dist)[1] - 1
        has_semihard = rank < negatives
        semi_index = ops.take_along_axis(order, ops.minimum(rank, last), axis=1)
        fallback_rank = ops.maximum(negatives - 1, 0) if fallback == "farthest" else ops.zeros_like(negatives)
        index = ops.where(has_semihard, semi_index, ops.take_along_axis(order, fallback_rank, axis=1))
    valid = has_semihard if fallback == "none" else has_negative
    return Selection(index, ops.broadcast_to(valid, ops.shape(positive_dist)))


def count_at_most(ascending, thresholds):
    """`out[i, a] = #{k : ascending[i, k] <= thresholds[i, a]}` for rows sorted ascending.

    A binary search over every row at once, with gathers: `log2(n) + 1` steps.
    """
    length = ascending.shape[1]
    steps = int(length).bit_length() if length is not None else 31
    size = ops.shape(ascending)[1]
    low = ops.zeros_like(thresholds, dtype="int32")
    high = ops.full_like(thresholds, size, dtype="int32")
    for _ in range(steps):
        middle = (low + high) // 2
        value = ops.take_along_axis(ascending, ops.minimum(middle, size - 1), axis=1)
        right = ops.logical_and(ops.less_equal(value, thresholds), low < high)
        low = ops.where(right, middle + 1, low)
        high = ops.where(right, high, middle)
    return low
