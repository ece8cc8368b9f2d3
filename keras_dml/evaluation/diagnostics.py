"""Embedding-space diagnostics: how tight the classes are, how far apart, and whether
a class keeps its sub-clusters (modes).

On L2-normalised embeddings (`normalize=True`), for each class `c` with at least 2 samples:

- spread `sigma_c = mean_{i in c} ||z_i - mu_c||`, with `mu_c` the class centre;
- gap `g_c = min_{c' != c} ||mu_c - mu_c'||`, the distance to the nearest other centre;

the same quantities as the density regularizer (docs/methods.md section 5). Given a mode id
per sample (which sub-cluster of its class it was drawn from), the mode-preservation
score is the share of each sample's `k` nearest same-class neighbours that come from
its own mode: about 1 when the modes stay apart, about the chance rate (1/3 for three
equal modes) when a class has collapsed onto one cluster (class-collapse paper, ICCV 2021).

`class_structure` and `mode_preservation` work in NumPy on a whole set, one class at a
time (never an `n x n` matrix over the set). `ClassSpread` and `ClassGap` are Keras
metrics that average the per-batch values during `fit` / `evaluate`.

Example:

>>> import numpy as np
>>> from keras_dml.evaluation.diagnostics import class_structure
>>> x = np.array([[1, 0.1], [1, -0.1], [-0.1, 1], [0.1, 1]], "float32")
>>> stats = class_structure(x, np.array([0, 0, 1, 1]))
>>> round(stats["spread"], 2), round(stats["gap"], 2)
(0.1, 1.41)
"""
import keras
import numpy as np
from keras import ops

from keras_dml import distances
from keras_dml.search import inputs
from keras_dml.losses.density import class_statistics


def _check_set(embeddings, labels, normalize):
    embeddings = inputs.check_embeddings(embeddings).astype("float64")
    labels = inputs.check_column(labels, len(embeddings), "labels")
    if normalize:
        embeddings = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    return embeddings, labels


def class_structure(embeddings, labels, normalize=True):
    """Mean spread and mean gap over the classes of a set that have >= 2 samples.

    Returns a dict: `spread` (mean `sigma_c`), `gap` (mean `g_c`), `classes` (how many
    classes were averaged). Needs at least 2 classes, one of them with 2 samples.
    """
    embeddings, labels = _check_set(embeddings, labels, normalize)
    classes, inverse = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"labels must hold at least 2 classes to measure a gap; got {len(classes)}.")
    counts = np.bincount(inverse)
    centres = np.stack([embeddings[inverse == c].mean(axis=0) for c in range(len(classes))])
    spreads = np.array(
        [np.linalg.norm(embeddings[inverse == c] - centres[c], axis=1).mean() for c in range(len(classes))]
    )
    centre_dist = np.linalg.norm(centres[:, None] - centres[None, :], axis=-1)
    np.fill_diagonal(centre_dist, np.inf)
    gaps = centre_dist.min(axis=1)
    keep = counts >= 2
    if not keep.any():
        raise ValueError("labels has no class with at least 2 samples; spread is undefined.")
    return {"spread": float(spreads[keep].mean()), "gap": float(gaps[keep].mean()), "classes": int(keep.sum())}


def mode_preservation(embeddings, labels, modes, k=5, normalize=True):
    """Whether each class keeps its modes apart in the embedding.

    For every sample, the share of its `k` nearest same-class neighbours (fewer when
    its class is smaller) drawn from its own mode. Returns a dict:

    - `score`: that share, averaged over samples;
    - `modes_kept`: per class, the modes whose samples average a share above 1/2,
      averaged over classes (3 for three intact modes, usually 0 for a collapsed class).
    """
    embeddings, labels = _check_set(embeddings, labels, normalize)
    modes = inputs.check_column(modes, len(labels), "modes")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1; got k={k}.")
    shares, kept = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            continue
        x, own_modes = embeddings[members], modes[members]
        dist = np.linalg.norm(x[:, None] - x[None, :], axis=-1)
        np.fill_diagonal(dist, np.inf)
        neighbours = np.argsort(dist, axis=1, kind="stable")[:, : min(int(k), len(members) - 1)]
        share = (own_modes[neighbours] == own_modes[:, None]).mean(axis=1)
        shares.append(share)
        kept.append(sum(share[own_modes == m].mean() > 0.5 for m in np.unique(own_modes)))
    if not shares:
        raise ValueError("labels has no class with at least 2 samples; there are no neighbours to compare.")
    return {"score": float(np.concatenate(shares).mean()), "modes_kept": float(np.mean(kept))}


class _ClassStatistic(keras.metrics.Mean):
    """Mean over the batches' classes of one per-class statistic (spread or gap)."""

    def __init__(self, normalize=True, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.normalize = bool(normalize)

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__} does not take sample_weight.")
        embeddings = ops.cast(y_pred, "float32")
        if self.normalize:
            embeddings = distances.l2_normalize(embeddings)
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        spread, gap, weight, valid = class_statistics(labels, embeddings)
        weight = ops.where(valid, weight, 0.0)
        classes = ops.sum(weight)
        value = self.statistic(spread, gap)
        super().update_state(ops.sum(weight * value) / ops.maximum(classes, 1.0), sample_weight=classes)

    def get_config(self):
        return {**super().get_config(), "normalize": self.normalize}


@keras.saving.register_keras_serializable(package="keras_dml")
class ClassSpread(_ClassStatistic):
    """Mean intra-class spread `sigma_c` of the batches' classes with >= 2 samples.

    Example:

    >>> import keras, keras_dml
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> model.compile(loss=keras_dml.losses.TripletLoss(),
    ...               metrics=[keras_dml.evaluation.diagnostics.ClassSpread()])
    """

    def __init__(self, normalize=True, name="class_spread", dtype=None):
        super().__init__(normalize=normalize, name=name, dtype=dtype)

    def statistic(self, spread, gap):
        return spread


@keras.saving.register_keras_serializable(package="keras_dml")
class ClassGap(_ClassStatistic):
    """Mean distance `g_c` from a class centre to the nearest other class centre in the batch."""

    def __init__(self, normalize=True, name="class_gap", dtype=None):
        super().__init__(normalize=normalize, name=name, dtype=dtype)

    def statistic(self, spread, gap):
        return gap
