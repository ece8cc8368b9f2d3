"""Classification-style criteria (docs/classification_losses.md): a softmax cross-entropy over trainable class weights.

Each sample's term is the cross-entropy of its class under per-class logits `l_ic`,

    L_i = logsumexp_c(l_ic) - l_iy,   y = y_i,

and the loss is the mean over the batch. The logits come from the cosines between the
L2-normalised embedding and the L2-normalised weights of each class (`self.proxies`,
one or several per class); the criteria differ only in how they make the logits. Like
the other proxy criteria they are layers: train them with
`keras_dml.models.MetricModel(embedder, criterion)`; labels must lie in
`[0, num_classes)` (`ProxyLoss`). Every sample has a term, so only an empty batch gives 0.
"""
import math

import keras
import numpy as np
from keras import ops

from keras_dml import checks, distances
from keras_dml.losses.proxy import ProxyLoss

# The cosine is clamped to this before arccos, whose derivative is infinite at +-1.
_ACOS_LIMIT = 1.0 - 1e-7
# SoftTriple's regulariser: sqrt(2 + delta - 2 w_t.w_s), finite gradient when w_t = w_s.
_CENTER_DELTA = 1e-5


@keras.saving.register_keras_serializable(package="keras_dml")
class SoftmaxProxyLoss(ProxyLoss):
    """Base class: `terms` is the per-sample cross-entropy of `logits(positive, cosines)`.

    Subclasses implement `logits(positive, cosines) -> (logits (n, C), target (n,))` with
    `target[i] = logits[i, y_i]`; `cosines` is `(n, C)` (one proxy per class) or
    `(n, C, K)`, `positive` the `(n, C)` one-hot mask of the labels. The logits are
    functions of cosines, so the embeddings are always normalised (`normalize=True`),
    and `distance` (a `keras_dml.distances` name) must be one of `DISTANCES`.
    """

    DISTANCES = ("cosine",)

    def __init__(self, num_classes, embedding_dim=None, proxies_per_class=None, distance="cosine", normalize=True,
                 **kwargs):
        if normalize is not True:
            raise ValueError(
                f"normalize: {type(self).__name__} works on cosines, so it normalises the embeddings; "
                f"got normalize={normalize!r}."
            )
        if not isinstance(distance, str) or distance not in self.DISTANCES:
            raise ValueError(
                f"distance={distance!r} cannot be used by {type(self).__name__}, whose logits are made from "
                f"cosines; expected one of {list(self.DISTANCES)}."
            )
        super().__init__(num_classes, embedding_dim, proxies_per_class=proxies_per_class, **kwargs)
        self.distance = distance

    def terms(self, labels, embeddings):
        proxies = distances.l2_normalize(ops.reshape(self.proxies, (-1, self.embedding_dim)))
        cosines = ops.reshape(distances.dot_product(embeddings, proxies), (-1, *self.proxy_shape))
        positive = ops.equal(self.class_ids(labels)[:, None], ops.arange(self.num_classes, dtype="int32")[None, :])
        logits, target = self.logits(positive, cosines)
        return ops.logsumexp(logits, axis=1) - target, ops.ones_like(target, dtype="bool")

    def logits(self, positive, cosines):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "distance": self.distance}


def _target(positive, values):
    """`values[i, y_i]`, `(n,)`, from an `(n, C)` matrix and its one-hot mask."""
    return ops.sum(ops.where(positive, values, 0.0), axis=1)


def _margin_logits(positive, cosines, target, scale):
    """`scale * cosines` with the target entries replaced by `scale * target`."""
    return scale * ops.where(positive, target[:, None], cosines), scale * target


@keras.saving.register_keras_serializable(package="keras_dml")
class NormalizedSoftmaxLoss(SoftmaxProxyLoss):
    """Normalized softmax loss (Zhai and Wu, "Classification is a strong baseline for deep
    metric learning", BMVC 2019): `l_ic = cos(theta_ic) / temperature`.

    Example:

    >>> import numpy as np, keras_dml
    >>> loss = keras_dml.losses.NormalizedSoftmaxLoss(num_classes=3, temperature=0.05)
    >>> x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(loss(np.array([0, 0, 1, 2]), x)) > 0.0  # the first call creates the (3, 8) weights
    True
    """

    def __init__(self, num_classes, embedding_dim=None, temperature=0.05, **kwargs):
        temperature = checks.positive(temperature, "temperature")
        super().__init__(num_classes, embedding_dim, **kwargs)
        self.temperature = temperature

    def logits(self, positive, cosines):
        return cosines / self.temperature, _target(positive, cosines) / self.temperature

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="keras_dml")
class CosFaceLoss(SoftmaxProxyLoss):
    """CosFace, large margin cosine loss (Wang et al., CVPR 2018): an additive cosine margin,

    `l_iy = scale * (cos(theta_iy) - margin)`, `l_ic = scale * cos(theta_ic)` for `c != y`.

    `margin` in `[0, 2)` (cosines lie in [-1, 1]); `scale > 0`.

    Example:

    >>> import numpy as np, keras_dml
    >>> loss = keras_dml.losses.CosFaceLoss(num_classes=3, margin=0.35, scale=64.0)
    >>> x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(loss(np.array([0, 0, 1, 2]), x)) > 0.0
    True
    """

    def __init__(self, num_classes, embedding_dim=None, margin=0.35, scale=64.0, **kwargs):
        margin = checks.half_open(margin, "margin", 0.0, 2.0)
        scale = checks.positive(scale, "scale")
        super().__init__(num_classes, embedding_dim, **kwargs)
        self.margin, self.scale = margin, scale

    def logits(self, positive, cosines):
        return _margin_logits(positive, cosines, _target(positive, cosines) - self.margin, self.scale)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "scale": self.scale}


@keras.saving.register_keras_serializable(package="keras_dml")
class ArcFaceLoss(SoftmaxProxyLoss):
    """ArcFace, additive angular margin loss (Deng et al., CVPR 2019): with `theta_ic` the
    angle between embedding `i` and the weights of class `c`,

    `l_iy = scale * cos(theta_iy + margin)` while `theta_iy <= pi - margin`, else
    `scale * (cos(theta_iy) - margin sin(margin))` (the paper's code: it keeps the logit
    decreasing in the angle), and `l_ic = scale * cos(theta_ic)` for `c != y`.

    `margin` in radians, in `[0, pi)` (0.5 in the paper; 28.6 degrees = 0.4992 is
    pytorch-metric-learning's default); `scale > 0`.

    Example:

    >>> import numpy as np, keras_dml
    >>> loss = keras_dml.losses.ArcFaceLoss(num_classes=3, margin=0.5, scale=64.0)
    >>> x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(loss(np.array([0, 0, 1, 2]), x)) > 0.0
    True
    """

    def __init__(self, num_classes, embedding_dim=None, margin=0.5, scale=64.0, **kwargs):
        margin = checks.half_open(margin, "margin", 0.0, math.pi)
        scale = checks.positive(scale, "scale")
        super().__init__(num_classes, embedding_dim, **kwargs)
        self.margin, self.scale = margin, scale

    def class_cosines(self, cosines):
        """`(n, C)` cosines to each class: the proxies' cosines as they are."""
        return cosines

    def logits(self, positive, cosines):
        cosines = self.class_cosines(cosines)
        target = _target(positive, cosines)
        angle = ops.arccos(ops.clip(target, -_ACOS_LIMIT, _ACOS_LIMIT))
        with_margin = ops.where(
            angle <= math.pi - self.margin,
            ops.cos(angle + self.margin),
            target - self.margin * math.sin(self.margin),
        )
        return _margin_logits(positive, cosines, with_margin, self.scale)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "scale": self.scale}


@keras.saving.register_keras_serializable(package="keras_dml")
class SubCenterArcFaceLoss(ArcFaceLoss):
    """Sub-center ArcFace (Deng et al., ECCV 2020): ArcFace with `sub_centers` weight
    vectors per class, the class's cosine being its best sub-center's,

    `cos(theta_ic) = max_k cos(embedding_i, w_ck)`, then the ArcFace logits.

    A class's noisy samples can gather at a non-dominant sub-center instead of pulling
    the dominant one. Proxies have shape `(num_classes, sub_centers, embedding_dim)`.

    Example:

    >>> import numpy as np, keras_dml
    >>> loss = keras_dml.losses.SubCenterArcFaceLoss(num_classes=3, embedding_dim=8, sub_centers=3)
    >>> tuple(loss.proxies.shape)
    (3, 3, 8)
    """

    def __init__(self, num_classes, embedding_dim=None, margin=0.5, scale=64.0, sub_centers=3, **kwargs):
        sub_centers = checks.positive_int(sub_centers, "sub_centers")
        super().__init__(num_classes, embedding_dim, margin=margin, scale=scale, proxies_per_class=sub_centers,
                         **kwargs)
        self.sub_centers = sub_centers

    def class_cosines(self, cosines):
        return ops.max(cosines, axis=2)

    def get_config(self):
        return {**super().get_config(), "sub_centers": self.sub_centers}


@keras.saving.register_keras_serializable(package="keras_dml")
class SoftTripleLoss(SoftmaxProxyLoss):
    """SoftTriple loss (Qian et al., ICCV 2019): `centers_per_class` centers per class,
    a class's similarity their softmax-weighted mean,

    `S_ic = sum_k softmax_k(cos_ick / gamma) cos_ick`,
    `l_ic = la * (S_ic - margin [c = y_i])`,

    plus `tau` times the centers' regulariser
    `R = sum_c sum_{k < k'} sqrt(2 + 1e-5 - 2 w_ck . w_ck') / (C K (K - 1))`
    (the paper's tau = 0.2; 0, the default, as in pytorch-metric-learning, leaves it out).

    Example:

    >>> import numpy as np, keras_dml
    >>> loss = keras_dml.losses.SoftTripleLoss(num_classes=3, centers_per_class=4, tau=0.2)
    >>> x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(loss(np.array([0, 0, 1, 2]), x)) > 0.0
    True
    """

    def __init__(self, num_classes, embedding_dim=None, centers_per_class=10, la=20.0, gamma=0.1, margin=0.01,
                 tau=0.0, **kwargs):
        centers_per_class = checks.positive_int(centers_per_class, "centers_per_class")
        la, gamma = checks.positive(la, "la"), checks.positive(gamma, "gamma")
        margin = checks.half_open(margin, "margin", 0.0, 2.0)
        tau = checks.non_negative(tau, "tau")
        super().__init__(num_classes, embedding_dim, proxies_per_class=centers_per_class, **kwargs)
        self.centers_per_class, self.la, self.gamma, self.margin, self.tau = centers_per_class, la, gamma, margin, tau

    def logits(self, positive, cosines):
        similarity = ops.sum(ops.softmax(cosines / self.gamma, axis=2) * cosines, axis=2)
        logits = self.la * (similarity - self.margin * ops.cast(positive, similarity.dtype))
        return logits, _target(positive, logits)

    def terms(self, labels, embeddings):
        terms, valid = super().terms(labels, embeddings)
        if self.tau == 0 or self.centers_per_class == 1:  # no pair of centers: R = 0
            return terms, valid
        return terms + self.tau * self.regularizer(), valid

    def regularizer(self):
        """`R`, the centers' spread within each class (scalar)."""
        centers = distances.l2_normalize(self.proxies)
        k = self.centers_per_class
        gram = ops.einsum("ckd,cld->ckl", centers, centers)
        pairs = ops.convert_to_tensor(np.triu(np.ones((k, k), dtype=bool), 1))
        spread = ops.sqrt(ops.maximum(2.0 + _CENTER_DELTA - 2.0 * gram, _CENTER_DELTA))
        return ops.sum(ops.where(pairs[None], spread, 0.0)) / (self.num_classes * k * (k - 1))

    def get_config(self):
        return {
            **super().get_config(),
            "centers_per_class": self.centers_per_class,
            "la": self.la,
            "gamma": self.gamma,
            "margin": self.margin,
            "tau": self.tau,
        }


@keras.saving.register_keras_serializable(package="keras_dml")
class ProxyNCALoss(SoftmaxProxyLoss):
    """ProxyNCA (Movshovitz-Attias et al., ICCV 2017), in its softmax form over every proxy
    (as pytorch-metric-learning and ProxyNCA++ compute it):

    `l_ic = -scale * d(embedding_i, p_c)` for a distance, `scale * s(embedding_i, p_c)` for
    a similarity (`distance="cosine"` or `"dot"`), on L2-normalised embeddings and proxies.

    `distance` is one of `keras_dml.distances.DISTANCES` (default `"squared_euclidean"`,
    the paper's); `scale > 0` (1 in the paper, 9 in ProxyNCA++, i.e. temperature 1/9).

    Example:

    >>> import numpy as np, keras_dml
    >>> loss = keras_dml.losses.ProxyNCALoss(num_classes=3, scale=9.0)
    >>> x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    >>> float(loss(np.array([0, 0, 1, 2]), x)) > 0.0
    True
    """

    DISTANCES = tuple(distances.DISTANCES)

    def __init__(self, num_classes, embedding_dim=None, scale=1.0, distance="squared_euclidean", **kwargs):
        scale = checks.positive(scale, "scale")
        super().__init__(num_classes, embedding_dim, distance=distance, **kwargs)
        self.scale = scale

    def logits(self, positive, cosines):
        # On unit vectors every distance is a function of the cosine.
        if self.distance in distances.SIMILARITIES:
            closeness = cosines
        else:
            squared = ops.maximum(2.0 - 2.0 * cosines, 0.0)
            closeness = -(squared if self.distance == "squared_euclidean" else distances.safe_sqrt(squared))
        logits = self.scale * closeness
        return logits, _target(positive, logits)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
