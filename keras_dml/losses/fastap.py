"""FastAP (Cakir et al., CVPR 2019): average precision of each anchor's ranking, through distance histograms."""
import keras
from keras import ops

from keras_dml import checks
from keras_dml.losses.pair import PairLoss

# The largest distance between unit vectors, by distance.
_RANGE = {"squared_euclidean": 4.0, "euclidean": 2.0}


@keras.saving.register_keras_serializable(package="keras_dml")
class FastAPLoss(PairLoss):
    """FastAP (Cakir et al., "Deep Metric Learning to Rank", CVPR 2019): `1 - AP` of each
    anchor's ranking of the batch, with AP computed from soft histograms of distances.

    The distance range `[0, R]` (`R = 4` for `"squared_euclidean"`, `2` for `"euclidean"`
    between unit vectors) is cut into `num_bins` bins with centres `c_b = b R / num_bins`,
    `b = 0..num_bins`; each pair falls softly into its nearest centres,
    `delta_b(d) = [1 - |d - c_b| num_bins / R]_+`. With `h+_b` and `h_b` the positive and
    all-pair histograms of anchor `i` and `H+_b`, `H_b` their cumulative sums:

    `l_i = 1 - 1/|P_i| sum_b h+_b H+_b / H_b`

    averaged over the anchors with a positive, when the batch has a negative pair. It
    needs normalised embeddings.

    Example:

    >>> import numpy as np, keras_dml
    >>> labels = np.array([0, 0, 1, 1])
    >>> x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> 0.0 < float(keras_dml.losses.FastAPLoss(num_bins=10)(labels, x)) < 1.0
    True
    """

    DISTANCES = tuple(_RANGE)

    def __init__(self, num_bins=10, distance="squared_euclidean", **kwargs):
        super().__init__(distance=distance, **kwargs)
        if not self.normalize:
            raise ValueError("FastAPLoss needs normalize=True: its histogram covers the distances of unit vectors.")
        self.num_bins = checks.positive_int(num_bins, "num_bins")

    def terms(self, labels, embeddings, selection=None, references=None):
        pairs = self.pairs(labels, embeddings, references)
        positive_mask, negative_mask = self.masks(pairs, selection)
        width = _RANGE[self.distance] / self.num_bins
        centres = ops.arange(self.num_bins + 1, dtype="float32") * width
        pulse = ops.relu(1.0 - ops.abs(pairs.values()[None, :, :] - centres[:, None, None]) / width)  # (B, n, m)
        positive = ops.transpose(ops.sum(ops.where(positive_mask[None], pulse, 0.0), axis=2))  # (n, B)
        every = positive + ops.transpose(ops.sum(ops.where(negative_mask[None], pulse, 0.0), axis=2))
        precision_sum = positive * ops.cumsum(positive, axis=1)
        total = ops.cumsum(every, axis=1)
        defined = ops.logical_and(precision_sum > 0, total > 0)
        ratio = ops.where(defined, precision_sum / ops.where(defined, total, 1.0), 0.0)
        count = ops.sum(ops.cast(positive_mask, "float32"), axis=1)
        valid = ops.logical_and(count > 0, ops.any(negative_mask))  # one class: AP is 1, nothing to learn
        return 1.0 - ops.sum(ratio, axis=1) / ops.maximum(count, 1.0), valid

    def get_config(self):
        return {**super().get_config(), "num_bins": self.num_bins}
