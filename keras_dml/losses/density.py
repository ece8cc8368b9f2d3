"""Density adaptivity regularizer (IEEE TMM 2020; docs/methods.md, density).

A margin loss can pack a class into too tight a ball. For every class `c` with at least
2 samples in the batch, on the (normalised) embeddings:

- centre `mu_c = mean_{i in c} z_i`, spread `sigma_c = mean_{i in c} ||z_i - mu_c||`;
- gap `g_c = min_{c' != c} ||mu_c - mu_c'||` to the nearest other class centre in the
  batch (any class present, singletons included), with the gradient stopped;
- `R = mean_c [rho * g_c - sigma_c]_+`.

A class is penalised only while it is denser than a fraction `rho` of its gap; the
gradient then spreads its points around their own centre and never moves centres
towards each other. A batch with one class, or with only singletons, gives `R = 0`.

Shapes are static (XLA): the class of sample `i` is the row `i` of the label-equality
matrix, so its centre and spread are masked means over that row, and every class is
counted once, at its first sample. `DensityAdaptive` adds `R` to its base loss through
the loss template (`keras_dml.losses.base`): one more row of terms.

Example:

>>> import numpy as np, keras_dml
>>> loss = keras_dml.losses.DensityAdaptive(keras_dml.losses.ContrastiveLoss(), weight=3.0, rho=0.125)
>>> labels = np.array([0, 0, 1, 1])
>>> embeddings = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
>>> float(loss(labels, embeddings)) > 0.0
True
"""
import keras
from keras import ops

from keras_dml import checks, distances
from keras_dml.losses.base import MetricLoss, all_finite, check_embeddings, check_labels, masked_mean


def class_statistics(labels, embeddings):
    """Per-sample statistics of the sample's class, all `(n,)`, static shapes.

    Returns `(spread, gap, weight, valid)`: `spread[i] = sigma_{y_i}`; `gap[i] = g_{y_i}`
    (stop-gradient); `weight[i] = 1 / |y_i|`, so summing `weight * x` over samples sums
    `x` once per class; `valid[i]` says the class has >= 2 samples and another class
    is in the batch. `spread` is 0 where not valid, `gap` where there is no other class.
    """
    labels = ops.reshape(labels, (-1,))
    same = ops.cast(ops.equal(labels[:, None], labels[None, :]), embeddings.dtype)
    class_size = ops.sum(same, axis=1)
    centres = ops.matmul(same, embeddings) / class_size[:, None]
    to_centre = distances.paired_euclidean(embeddings, centres)
    spread = ops.matmul(same, to_centre[:, None])[:, 0] / class_size
    centre_dist = ops.stop_gradient(distances.euclidean(centres))
    other_class = same < 0.5
    has_other = ops.any(other_class, axis=1)
    gap = ops.where(has_other, ops.min(ops.where(other_class, centre_dist, distances.FAR), axis=1), 0.0)
    valid = ops.logical_and(class_size >= 2.0, has_other)
    spread = ops.where(valid, spread, 0.0)
    return spread, gap, 1.0 / class_size, valid


def regularizer_terms(labels, embeddings, rho):
    """`([rho * g_c - sigma_c]_+, valid)`, `(n,)` each: one valid entry per class that
    counts, at its first sample, so that their mean is `R`."""
    spread, gap, _, valid = class_statistics(labels, embeddings)
    return ops.relu(rho * gap - spread), ops.logical_and(valid, distances.first_occurrence(labels))


def density_regularizer(labels, embeddings, rho=0.25, normalize=True):
    """The density regularizer `R` of a batch (docs/methods.md, density), a float32 scalar.

    Args:
        labels: integer class ids, `(n,)` or `(n, 1)`.
        embeddings: `(n, D)`; L2-normalised first when `normalize=True`.
        rho: fraction of the gap to the nearest other class below which a class's
            spread is penalised, in `(0, 1]`; default from the sweep in docs/density.md.

    Example:

    >>> import numpy as np
    >>> from keras_dml.losses import density_regularizer
    >>> x = np.array([[1, 0], [1, 0.01], [0, 1], [0.01, 1]], "float32")
    >>> float(density_regularizer(np.array([0, 0, 1, 1]), x, rho=0.5)) > 0.3
    True
    """
    rho = checks.fraction(rho, "rho")
    embeddings = check_embeddings(embeddings, argument="embeddings")
    labels = check_labels(labels, batch_size=embeddings.shape[0], argument="labels")
    if embeddings.shape[0] == 0:
        return ops.sum(embeddings) * 0.0
    prepared = distances.l2_normalize(embeddings) if normalize else embeddings
    value = masked_mean(*regularizer_terms(labels, prepared, rho))
    return ops.where(all_finite(embeddings), value, float("nan"))


@keras.saving.register_keras_serializable(package="keras_dml")
class DensityAdaptive(MetricLoss):
    """`base_loss + weight * R`, with `R` the density regularizer on the same embeddings.

    `R` is computed on the embeddings exactly as the base loss sees them (normalised
    when `base_loss.normalize`). Any keras_dml `MetricLoss` can be wrapped.

    Args:
        base_loss: a keras_dml loss, e.g. `ContrastiveLoss()`, `TripletLoss()`, `NPairLoss()`.
        weight: `lambda >= 0`, the regularizer's weight.
        rho: in `(0, 1]`; a class is penalised while its spread is below `rho` times
            the distance from its centre to the nearest other class centre.

    The defaults (`weight=1.0, rho=0.25`) won the validation sweep on glyphs
    (docs/density.md). The old `rho=0.125` never opened the hinge there: margin losses
    keep `sigma_c / g_c` above about 0.2. At `rho=0.25` only the densest classes are
    penalised; `rho=0.5` opened it for a quarter to a half of the classes and cost
    contrastive and triplet MAP@R. Tune both for a new dataset.

    Example:

    >>> import keras, keras_dml
    >>> loss = keras_dml.losses.DensityAdaptive(keras_dml.losses.ContrastiveLoss())
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> model.compile(optimizer="adam", loss=loss)
    """

    def __init__(self, base_loss, weight=1.0, rho=0.25, name=None):
        if not isinstance(base_loss, MetricLoss):
            raise ValueError(
                "base_loss must be a keras_dml loss (a keras_dml.losses.MetricLoss such as "
                f"TripletLoss()); got {type(base_loss).__name__}."
            )
        super().__init__(
            normalize=base_loss.normalize,
            cross_replica=base_loss.cross_replica,
            name=name or f"density_adaptive_{base_loss.name}",
        )
        self.base_loss = base_loss
        self.weight = checks.non_negative(weight, "weight")
        self.rho = checks.fraction(rho, "rho")

    def terms(self, labels, embeddings):
        """The base loss's terms and `weight` times the regularizer's, as two rows."""
        base_terms, base_valid = self.base_loss.terms(labels, embeddings)
        penalty, penalty_valid = regularizer_terms(labels, embeddings, self.rho)
        return ops.stack([base_terms, self.weight * penalty]), ops.stack([base_valid, penalty_valid])

    def get_config(self):
        return {
            "name": self.name,
            "base_loss": keras.saving.serialize_keras_object(self.base_loss),
            "weight": self.weight,
            "rho": self.rho,
        }

    @classmethod
    def from_config(cls, config):
        from keras_dml import losses

        return cls(**{**config, "base_loss": losses.get(config["base_loss"])})
