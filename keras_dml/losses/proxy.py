"""Proxy-based criteria (docs/methods.md, classic losses and potential field): losses with trainable proxies.

Both are layers (`TrainableMetricLoss`): attach them with
`keras_dml.models.MetricModel(embedder, criterion)` so that `fit` trains the proxies
with the embedder and checkpoints save them. Proxies are L2-normalised when used, like
the embeddings. Labels must lie in `[0, num_classes)`: a ValueError is raised when
their values are known (eager calls); inside a compiled graph an out-of-range label
makes the loss NaN (so `TerminateOnNaN` stops the run), never a silently merged class.
"""
import keras
import numpy as np
from keras import ops

from keras_dml import checks, distances
from keras_dml.losses.base import TrainableMetricLoss

# Distances are clamped below at this value so that repulsion stays finite (section 3).
MIN_DISTANCE = 1e-3
PROXY_TARGETS = ("all", "batch")


@keras.saving.register_keras_serializable(package="keras_dml")
class ProxyLoss(TrainableMetricLoss):
    """A criterion with trainable proxies `self.proxies` for `num_classes` classes.

    Shape `(num_classes, embedding_dim)`, or `(num_classes, proxies_per_class,
    embedding_dim)` when `proxies_per_class` is given; initialised from a standard
    normal, i.e. in uniformly random directions. The proxies are created by `build`,
    which `keras_dml.models.MetricModel` (or the first call) runs with the embeddings'
    shape; `embedding_dim`, when given, creates them at once and is checked against it.
    """

    def __init__(self, num_classes, embedding_dim=None, proxies_per_class=None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = checks.positive_int(num_classes, "num_classes")
        self.embedding_dim = None if embedding_dim is None else checks.positive_int(embedding_dim, "embedding_dim")
        per_class = () if proxies_per_class is None else (checks.positive_int(proxies_per_class, "proxies_per_class"),)
        self.proxy_shape = (self.num_classes, *per_class)
        if self.embedding_dim is not None:
            self.build(None, (None, self.embedding_dim))

    def build(self, labels_shape, embeddings_shape):
        self.embedding_dim = checks.built_width(embeddings_shape, self.embedding_dim, type(self).__name__)
        self.proxies = self.add_weight(
            shape=(*self.proxy_shape, self.embedding_dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="proxies",
        )

    def call(self, labels, embeddings):
        values = checks.concrete_values(labels)
        if values is not None and values.size and (values.min() < 0 or values.max() >= self.num_classes):
            raise ValueError(
                f"labels must lie in [0, num_classes={self.num_classes}) for {type(self).__name__}; "
                f"got values from {values.min()} to {values.max()}."
            )
        return super().call(labels, embeddings)

    def inputs_ok(self, labels, embeddings):
        """Finite inputs and weights, and every label in `[0, num_classes)`."""
        in_range = ops.all(ops.logical_and(labels >= 0, labels < self.num_classes))
        return ops.logical_and(super().inputs_ok(labels, embeddings), in_range)

    def class_ids(self, labels):
        """int32 class ids, safe to gather with under XLA. Out-of-range labels are clipped
        only for the gather: `inputs_ok` makes their loss NaN."""
        return ops.cast(ops.clip(labels, 0, self.num_classes - 1), "int32")

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "embedding_dim": self.embedding_dim}


def _g(x, alpha):
    """`g(x) = x^-alpha / alpha`, or `-log(x)` for `alpha = 0`: the force `-g'(x)` is `x^-(alpha+1)`."""
    if alpha == 0:
        return -ops.log(x)
    return ops.power(x, -alpha) / alpha


def field_energy(points, point_labels, point_charge, charges, charge_labels, alpha, delta_att, delta_rep):
    """`Psi_{c}(r)` for each point `r` of class `c`: the sum over every charge `s` but itself of

    `psi_att(d) = -g(max(d, delta_att))` when `s` has class `c`, else `psi_rep(d) = g(min(d, delta_rep))`,

    with `d = max(||r - s||, MIN_DISTANCE)`. `point_charge[i]` is the index of point `i`
    among the charges (left out of its own sum); `-1` when it is not a charge.
    Returns `(num_points,)`.
    """
    d = ops.maximum(distances.euclidean(points, charges), MIN_DISTANCE)
    same_class = ops.equal(point_labels[:, None], charge_labels[None, :])
    psi = ops.where(same_class, -_g(ops.maximum(d, delta_att), alpha), _g(ops.minimum(d, delta_rep), alpha))
    itself = ops.equal(point_charge[:, None], ops.arange(ops.shape(charges)[0], dtype="int32")[None, :])
    return ops.sum(ops.where(itself, 0.0, psi), axis=1)


@keras.saving.register_keras_serializable(package="keras_dml")
class PotentialFieldLoss(ProxyLoss):
    """Potential field loss (PFML, CVPR 2025), docs/methods.md, potential field.

    Every batch embedding and every proxy (`proxies_per_class` per class) is a charge.
    A charge attracts points of its class and repels the others, both decaying with
    distance `d` (clamped below at 1e-3):

    `psi_att(d) = -g(max(d, delta_att))`, `psi_rep(d) = g(min(d, delta_rep))`,
    `g(x) = x^-alpha / alpha` (`alpha > 0`), `g(x) = -log(x)` (`alpha = 0`).

    Attraction is flat inside `delta_att` and its force `d^-(alpha+1)` decays beyond;
    repulsion acts only inside `delta_rep`. The energy

    `U = sum_i Psi_{y_i}(z_i) + sum_{j,k} Psi_j(p_jk)`

    sums each point's field from all other charges; the loss is `U` divided by the
    number of points summed over.

    `radius_ratio` (keras_dml's addition, not the paper's) sets the radii relative to the
    spread the embedder starts from: at the first call (the first training batch) both
    radii are scaled by `min(1, radius_ratio * mean_d / max(delta_att, delta_rep))`,
    with `mean_d` the mean distance between that batch's embeddings, and the scale is
    kept from then on (the non-trainable weight `radius_scale`, saved with the loss).
    Where the embeddings start spread out (`mean_d` near 1.4 for random directions)
    this keeps the paper's radii; where they start in a small cap (a randomly
    initialised CNN: `mean_d` about 0.1 on glyphs, radii about 0.05), same-class pairs
    lie beyond the attraction radius and attract from the first step.
    `radius_ratio=None` keeps the paper's fixed radii.

    With `proxy_targets="batch"` the proxy sum covers only the classes present in the
    batch (all proxies still act as charges), which keeps a step O(batch x charges) for
    very many classes (SOP: 11,318 x 2 proxies).

    Example:

    >>> import numpy as np, keras_dml
    >>> loss = keras_dml.losses.PotentialFieldLoss(num_classes=3, embedding_dim=8, proxies_per_class=2)
    >>> tuple(loss.proxies.shape)
    (3, 2, 8)
    >>> labels = np.array([0, 0, 1, 2])
    >>> embeddings = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> bool(np.isfinite(loss(labels, embeddings)))
    True
    """

    def __init__(
        self,
        num_classes,
        embedding_dim=None,
        proxies_per_class=15,
        alpha=3.0,
        delta_att=0.2,
        delta_rep=0.2,
        proxy_targets="all",
        radius_ratio=0.5,
        **kwargs,
    ):
        alpha = checks.non_negative(alpha, "alpha")  # 0 is the logarithmic limit
        radius_ratio = None if radius_ratio is None else checks.positive(radius_ratio, "radius_ratio")
        delta_att = checks.positive(delta_att, "delta_att")
        delta_rep = checks.positive(delta_rep, "delta_rep")
        checks.one_of(proxy_targets, "proxy_targets", PROXY_TARGETS)
        super().__init__(num_classes, embedding_dim, proxies_per_class=proxies_per_class, **kwargs)
        self.proxies_per_class = int(proxies_per_class)
        self.alpha = alpha
        self.delta_att = delta_att
        self.delta_rep = delta_rep
        self.proxy_targets = proxy_targets
        self.radius_ratio = radius_ratio

    def build(self, labels_shape, embeddings_shape):
        super().build(labels_shape, embeddings_shape)
        self.radius_scale = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                            aggregation="only_first_replica", name="radius_scale")

    def radii(self, embeddings):
        """`(delta_att, delta_rep)` for this batch; the first call with a spread fixes the scale."""
        if self.radius_ratio is None:
            return self.delta_att, self.delta_rep
        points = ops.stop_gradient(embeddings)
        n = ops.shape(points)[0]
        others = ops.logical_not(ops.eye(n, dtype="bool"))
        pairs = ops.maximum(ops.sum(ops.cast(others, points.dtype)), 1.0)
        mean_d = ops.sum(ops.where(others, distances.euclidean(points), 0.0)) / pairs
        batch_scale = ops.minimum(1.0, self.radius_ratio * mean_d / max(self.delta_att, self.delta_rep))
        # 0 means "not set yet": a batch without spread (one embedding, or all equal) leaves it unset
        kept = ops.convert_to_tensor(self.radius_scale)
        scale = ops.where(kept > 0.0, kept, batch_scale)
        self.radius_scale.assign(scale)
        used = ops.where(scale > 0.0, scale, 1.0)
        return ops.maximum(used * self.delta_att, MIN_DISTANCE), ops.maximum(used * self.delta_rep, MIN_DISTANCE)

    def terms(self, labels, embeddings):
        per_class = self.proxies_per_class
        proxies = distances.l2_normalize(ops.reshape(self.proxies, (-1, self.embedding_dim)))
        proxy_labels = ops.convert_to_tensor(np.repeat(np.arange(self.num_classes, dtype="int32"), per_class))
        classes = self.class_ids(labels)
        n = ops.shape(embeddings)[0]
        if self.proxy_targets == "all":
            target_index = ops.arange(self.num_classes * per_class, dtype="int32")
            targets, target_labels = proxies, proxy_labels
            target_valid = ops.ones_like(target_index, dtype="bool")
        else:  # the proxies of each class present in the batch, counted at its first sample
            slots = ops.arange(per_class, dtype="int32")
            target_index = ops.reshape(classes[:, None] * per_class + slots[None, :], (-1,))
            targets = ops.take(proxies, target_index, axis=0)
            target_labels = ops.repeat(classes, per_class)
            target_valid = ops.repeat(distances.first_occurrence(classes), per_class)
        delta_att, delta_rep = self.radii(embeddings)
        energy = field_energy(
            points=ops.concatenate([embeddings, targets], axis=0),
            point_labels=ops.concatenate([classes, target_labels], axis=0),
            point_charge=ops.concatenate([ops.arange(n, dtype="int32"), n + target_index], axis=0),
            charges=ops.concatenate([embeddings, proxies], axis=0),
            charge_labels=ops.concatenate([classes, proxy_labels], axis=0),
            alpha=self.alpha,
            delta_att=delta_att,
            delta_rep=delta_rep,
        )
        valid = ops.concatenate([ops.ones_like(classes, dtype="bool"), target_valid], axis=0)
        return energy, valid

    def get_config(self):
        return {
            **super().get_config(),
            "proxies_per_class": self.proxies_per_class,
            "alpha": self.alpha,
            "delta_att": self.delta_att,
            "delta_rep": self.delta_rep,
            "proxy_targets": self.proxy_targets,
            "radius_ratio": self.radius_ratio,
        }


@keras.saving.register_keras_serializable(package="keras_dml")
class ProxyAnchorLoss(ProxyLoss):
    """Proxy Anchor loss (Kim et al., CVPR 2020): one proxy per class as the anchor.

    With `s(x, p)` the cosine similarity, `X_p+` / `X_p-` the batch samples of / not of
    proxy `p`'s class and `P+` the proxies with a positive in the batch:

    `L = 1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} exp(-alpha (s(x, p) - delta)))
       + 1/|P| sum_{p in P} log(1 + sum_{x in X_p-} exp(alpha (s(x, p) + delta)))`

    Example:

    >>> import numpy as np, keras_dml
    >>> loss = keras_dml.losses.ProxyAnchorLoss(num_classes=3, embedding_dim=8)
    >>> tuple(loss.proxies.shape)
    (3, 8)
    >>> labels = np.array([0, 0, 1, 2])
    >>> embeddings = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(loss(labels, embeddings)) > 0.0
    True
    """

    def __init__(self, num_classes, embedding_dim=None, alpha=32.0, delta=0.1, **kwargs):
        alpha = checks.positive(alpha, "alpha")
        delta = checks.non_negative(delta, "delta")
        super().__init__(num_classes, embedding_dim, **kwargs)
        self.alpha = alpha
        self.delta = delta

    def terms(self, labels, embeddings):
        proxies = distances.l2_normalize(self.proxies)
        similarity = distances.dot_product(embeddings, proxies)  # (n, num_classes)
        positive = ops.equal(self.class_ids(labels)[:, None], ops.arange(self.num_classes, dtype="int32")[None, :])
        pull = ops.where(positive, -self.alpha * (similarity - self.delta), -distances.FAR)
        push = ops.where(positive, -distances.FAR, self.alpha * (similarity + self.delta))
        per_proxy = ops.stack([ops.softplus(ops.logsumexp(pull, axis=0)), ops.softplus(ops.logsumexp(push, axis=0))])
        valid = ops.stack([ops.any(positive, axis=0), ops.ones_like(per_proxy[1], dtype="bool")])
        return per_proxy, valid

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "delta": self.delta}
