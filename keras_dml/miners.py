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

The public entry point is `PairMiner`: it mines a batch once and returns a
`PairSelection` that every pair loss takes as `loss(labels, embeddings, selection=...)`,
so two losses can share one mining step:

>>> import numpy as np, keras_dml
>>> labels = np.array([0, 0, 1, 1, 2, 2])
>>> x = np.random.default_rng(0).normal(size=(6, 8)).astype("float32")
>>> selection = keras_dml.miners.PairMiner(positive="hard", negative="hard")(labels, x)
>>> tuple(selection.positives.index.shape), tuple(selection.negatives.index.shape)
((6, 1), (6, 1))
>>> total = (keras_dml.losses.TripletLoss()(labels, x, selection=selection)
...          + keras_dml.losses.CircleLoss()(labels, x, selection=selection))

The low-level miners below work on one matrix:

>>> from keras_dml import distances, miners
>>> x = np.array([[0.0], [1.0], [3.0], [0.5]], "float32")
>>> pos, neg = distances.label_masks(np.array([0, 0, 0, 1]))
>>> sel = miners.mine_positives(distances.euclidean(x), pos, "easy")
>>> np.asarray(sel.index)[:, 0].tolist()
[1, 0, 1, 0]
"""
from collections import namedtuple

from keras import ops

from keras_dml import checks, distances
from keras_dml.distances import FAR

POSITIVE_STRATEGIES = ("all", "easy", "hard")
NEGATIVE_STRATEGIES = ("all", "hard", "semihard")
SEMIHARD_FALLBACKS = ("nearest", "farthest", "none")

Selection = namedtuple("Selection", ["index", "valid"])
PairSelection = namedtuple("PairSelection", ["positives", "negatives"])
PairSelection.__doc__ = """What a miner chose for each anchor: `positives` and `negatives`, each a `Selection`.
`negatives.index` is `None` (every negative), `(n, 1)` (one per anchor) or, for
`negative="semihard"`, `(n, m)` with one negative for each of the `m` positives."""

Pairs = namedtuple(
    "Pairs", ["values", "order", "positive_mask", "negative_mask", "anchors", "references", "distance"]
)
Pairs.__doc__ = """Anchors against references, as every pair loss and miner sees them: `values()` the
`(n, m)` matrix of the `distance` function, with gradient, and `order()` its stop-gradient
`distances.mining_order` (each computed once, on first use); the boolean label masks; the `(n, D)`
`anchors` and `(m, D)` `references` (the batch itself, or a memory of past embeddings)."""

References = namedtuple("References", ["labels", "embeddings", "valid", "own"])
References.__doc__ = """Embeddings to compare the batch with instead of itself (`CrossBatchMemory`):
`(m,)` labels, `(m, D)` embeddings, `(m,)` bool `valid` (filled slots) and `own` `(n,)`,
the column holding each anchor itself (left out of its pairs)."""


def pairs(labels, embeddings, distance, references=None):
    """The `Pairs` of `(n,)` labels and `(n, D)` embeddings against `references` (default: the batch)."""
    function = distances.get(distance)
    other = embeddings if references is None else references.embeddings
    if references is None:
        positive, negative = distances.label_masks(labels)
    else:
        positive, negative = distances.label_masks(labels, references.labels)
        columns = ops.arange(ops.shape(other)[0], dtype="int32")
        keep = ops.logical_and(references.valid[None, :], ops.not_equal(columns[None, :], references.own[:, None]))
        positive, negative = ops.logical_and(positive, keep), ops.logical_and(negative, keep)
    y = None if references is None else other
    values = _once(lambda: function(embeddings, y))
    order = _once(lambda: distances.mining_order(distance, embeddings, y))
    return Pairs(values, order, positive, negative, embeddings, other, distance)


def _once(compute):
    """`compute`, called on first use only."""
    computed = []

    def value():
        if not computed:
            computed.append(compute())
        return computed[0]

    return value


def select(pairs, positive="all", negative="all", semihard_fallback="nearest", semihard_threshold="each"):
    """The `PairSelection` of `pairs` under the named strategies.

    A semi-hard negative is farther than its positive: with `semihard_threshold="each"`
    (FaceNet, triplets) every selected positive gets its own, with `"nearest"`
    (contrastive) each anchor gets one, beyond its nearest selected positive.
    """
    order = pairs.order()
    positives = mine_positives(order, pairs.positive_mask, positive)
    thresholds = None
    if negative == "semihard":
        thresholds = order if positives.index is None else ops.take_along_axis(order, positives.index, axis=1)
        if semihard_threshold == "nearest":
            thresholds = ops.min(ops.where(positives.valid, thresholds, FAR), axis=1, keepdims=True)
    negatives = mine_negatives(order, pairs.negative_mask, negative, thresholds, semihard_fallback)
    return PairSelection(positives, negatives)


def selection_mask(selection, shape):
    """The chosen `(n, m)` pairs of a `Selection` as a boolean mask (fixed shape, O(n k))."""
    if selection.index is None:
        return selection.valid
    index = ops.cast(selection.index, "int32")
    rows = ops.broadcast_to(ops.arange(ops.shape(index)[0], dtype="int32")[:, None], ops.shape(index))
    coordinates = ops.stack([ops.reshape(rows, (-1,)), ops.reshape(index, (-1,))], axis=1)
    counts = ops.scatter(coordinates, ops.reshape(ops.cast(selection.valid, "float32"), (-1,)), shape)
    return counts > 0


def check_selection(selection, batch_size):
    """`selection` if it is a `PairSelection` for `batch_size` anchors, else a `ValueError` naming it."""
    if not isinstance(selection, PairSelection):
        raise ValueError(
            "selection must be a keras_dml.miners.PairSelection (from a miner such as "
            f"keras_dml.miners.PairMiner); got {type(selection).__name__}."
        )
    for side in selection:
        rows = side.valid.shape[0]
        if batch_size is not None and rows is not None and rows != batch_size:
            raise ValueError(f"selection has {rows} anchors but the batch has {batch_size} embeddings.")
    return selection


class PairMiner:
    """Mines a batch once; any pair loss takes the result as `selection=`.

    `positive` (`"all" | "easy" | "hard"`), `negative` (`"all" | "hard" | "semihard"`) and
    `semihard_fallback` are the strategies of the table above, chosen on the named
    `distance` of the (normalised, when `normalize`) embeddings. The result is a
    `PairSelection` of fixed shape with no gradient; `references` compares the batch with
    a memory instead of itself (`References`).

    Example:

    >>> import numpy as np, keras_dml
    >>> miner = keras_dml.miners.PairMiner(positive="easy", negative="semihard")
    >>> labels = np.array([0, 0, 1, 1])
    >>> x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(keras_dml.losses.TripletLoss()(labels, x, selection=miner(labels, x))) >= 0.0
    True
    """

    def __init__(self, positive="all", negative="all", distance="euclidean", normalize=True,
                 semihard_fallback="nearest"):
        self.positive = checks.one_of(positive, "positive", POSITIVE_STRATEGIES)
        self.negative = checks.one_of(negative, "negative", NEGATIVE_STRATEGIES)
        self.distance = distances.check(distance, tuple(distances.DISTANCES), "PairMiner")
        self.normalize = bool(normalize)
        self.semihard_fallback = checks.one_of(semihard_fallback, "semihard_fallback", SEMIHARD_FALLBACKS)

    def __call__(self, labels, embeddings, references=None):
        """The `PairSelection` of integer `labels` `(n,)` and float `embeddings` `(n, D)`
        (checked by the loss that takes the selection)."""
        embeddings = ops.cast(embeddings, "float32")
        labels = ops.reshape(ops.convert_to_tensor(labels), (-1,))
        if len(embeddings.shape) != 2 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(f"embeddings must have shape (batch_size, embedding_dim) and labels one entry per "
                             f"row; got {tuple(embeddings.shape)} and {tuple(labels.shape)}.")
        if self.normalize:
            embeddings = distances.l2_normalize(embeddings)
        return self.select(pairs(labels, embeddings, self.distance, references))

    def select(self, pairs):
        """The `PairSelection` of already prepared `Pairs`."""
        return select(pairs, self.positive, self.negative, self.semihard_fallback)

    def get_config(self):
        return {"positive": self.positive, "negative": self.negative, "distance": self.distance,
                "normalize": self.normalize, "semihard_fallback": self.semihard_fallback}


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
