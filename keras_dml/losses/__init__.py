"""Metric-learning losses: `loss(labels, embeddings)` -> float32 scalar.

Stateless losses are `keras.losses.Loss` subclasses (`compile(loss=...)` on any model);
criteria with trainable weights (proxies, the PDDM unit) are layers, trained through
`keras_dml.models.MetricModel`. `get` builds any of them from a configuration, like
`keras.losses.get`; `serialize` is its inverse.
"""
import inspect

import keras

from keras_dml.losses.base import MetricLoss, TrainableMetricLoss
from keras_dml.losses.circle import CircleLoss
from keras_dml.losses.classification import (
    ArcFaceLoss, CosFaceLoss, NormalizedSoftmaxLoss, ProxyNCALoss, SoftTripleLoss, SubCenterArcFaceLoss,
)
from keras_dml.losses.density import DensityAdaptive, density_regularizer
from keras_dml.losses.fastap import FastAPLoss
from keras_dml.losses.functional import functional_form
from keras_dml.losses.lifted import GeneralizedLiftedStructureLoss, LiftedStructureLoss
from keras_dml.losses.margin import MarginLoss
from keras_dml.losses.memory import CrossBatchMemory
from keras_dml.losses.multiple import MultipleLosses
from keras_dml.losses.pair import ContrastiveLoss, MultiSimilarityLoss, NPairLoss, PairLoss, TripletLoss
from keras_dml.losses.pddm import PDDMLoss
from keras_dml.losses.proxy import PotentialFieldLoss, ProxyAnchorLoss
from keras_dml.losses.supcon import NTXentLoss, SupConLoss

# The losses `get` builds, by class name: one a line.
LOSSES = {
    cls.__name__: cls
    for cls in (
        ContrastiveLoss,
        TripletLoss,
        NPairLoss,
        MultiSimilarityLoss,
        CircleLoss,
        SupConLoss,
        NTXentLoss,
        LiftedStructureLoss,
        GeneralizedLiftedStructureLoss,
        FastAPLoss,
        MarginLoss,
        MultipleLosses,
        CrossBatchMemory,
        DensityAdaptive,
        PotentialFieldLoss,
        ProxyAnchorLoss,
        PDDMLoss,
        ArcFaceLoss,
        CosFaceLoss,
        SubCenterArcFaceLoss,
        NormalizedSoftmaxLoss,
        SoftTripleLoss,
        ProxyNCALoss,
    )
}

# The functional form of each stateless loss (keras_dml.losses.functional): one a line.
contrastive_loss = functional_form(ContrastiveLoss, "contrastive_loss")
triplet_loss = functional_form(TripletLoss, "triplet_loss")
npair_loss = functional_form(NPairLoss, "npair_loss")
multi_similarity_loss = functional_form(MultiSimilarityLoss, "multi_similarity_loss")
circle_loss = functional_form(CircleLoss, "circle_loss")
supcon_loss = functional_form(SupConLoss, "supcon_loss")
ntxent_loss = functional_form(NTXentLoss, "ntxent_loss")
lifted_structure_loss = functional_form(LiftedStructureLoss, "lifted_structure_loss")
generalized_lifted_structure_loss = functional_form(GeneralizedLiftedStructureLoss, "generalized_lifted_structure_loss")
fast_ap_loss = functional_form(FastAPLoss, "fast_ap_loss")

__all__ = [
    "MetricLoss", "TrainableMetricLoss", "PairLoss",
    *LOSSES,
    "density_regularizer",
    "contrastive_loss", "triplet_loss", "npair_loss", "multi_similarity_loss", "circle_loss", "supcon_loss",
    "ntxent_loss", "lifted_structure_loss", "generalized_lifted_structure_loss", "fast_ap_loss",
    "get", "serialize", "LOSSES",
]

# Constructor arguments that `get` fills from the task when a configuration lacks them.
_TASK_ARGUMENTS = ("num_classes", "embedding_dim")


def _parameters(cls):
    """The constructor arguments `cls` takes: its own and, through `**kwargs`, its keras_dml
    bases' (and a layer's `name`, `dtype`, `trainable`)."""
    names = set()
    for base in cls.__mro__:
        if base.__module__.startswith("keras_dml") and "__init__" in vars(base):
            names |= {p.name for p in inspect.signature(base.__init__).parameters.values()
                      if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self"}
    if issubclass(cls, keras.layers.Layer):
        names |= {"name", "dtype", "trainable"}
    return names


def _required(cls, argument):
    parameter = inspect.signature(cls).parameters.get(argument)
    return parameter is not None and parameter.default is inspect.Parameter.empty


def serialize(loss):
    """`loss` as Keras's serialized form (a JSON-able dict); `get` rebuilds it."""
    return keras.saving.serialize_keras_object(loss)


def get(identifier, *, num_classes=None, embedding_dim=None):
    """The keras_dml loss described by `identifier`.

    `identifier` is one of:
    - a loss instance (returned as is);
    - a class name, e.g. `"TripletLoss"` (default arguments);
    - the short form `{"class_name": "TripletLoss", "config": {"margin": 0.1}}`;
    - Keras's serialized form, `keras_dml.losses.serialize(loss)`.

    A nested loss (`DensityAdaptive`'s `base_loss`, `CrossBatchMemory`'s `loss`,
    `MultipleLosses`' `losses`) may take any of these forms.
    `num_classes` and `embedding_dim` fill those constructor arguments when the class
    takes them (proxy losses, `PDDMLoss`) and the configuration does not set them.

    Example:

    >>> import keras_dml
    >>> loss = keras_dml.losses.get({"class_name": "TripletLoss", "config": {"margin": 0.1}})
    >>> loss.margin
    0.1
    >>> keras_dml.losses.get("ProxyAnchorLoss", num_classes=10, embedding_dim=8).num_classes
    10
    >>> keras_dml.losses.get(keras_dml.losses.serialize(loss)).margin
    0.1
    """
    if isinstance(identifier, (MetricLoss, TrainableMetricLoss)):
        return identifier
    if isinstance(identifier, str):
        identifier = {"class_name": identifier, "config": {}}
    if not isinstance(identifier, dict) or not isinstance(identifier.get("class_name"), str):
        raise ValueError(
            "loss must be a keras_dml loss, a class name, or a dict "
            f"{{'class_name': ..., 'config': {{...}}}}; got {identifier!r}."
        )
    name = identifier["class_name"]
    if name not in LOSSES:
        raise ValueError(f"Unknown loss class_name={name!r}; expected one of {sorted(LOSSES)}.")
    cls = LOSSES[name]
    config = dict(identifier.get("config") or {})
    parameters = _parameters(cls)
    unknown = sorted(set(config) - set(parameters))
    if unknown:
        raise ValueError(f"Unknown {name} config key(s) {unknown}; expected some of {sorted(parameters)}.")
    for nested in ("base_loss", "loss"):
        if nested in config:
            config[nested] = get(config[nested], num_classes=num_classes, embedding_dim=embedding_dim)
    if "losses" in config:
        config["losses"] = [get(loss, num_classes=num_classes, embedding_dim=embedding_dim) for loss in config["losses"]]
    for argument, value in zip(_TASK_ARGUMENTS, (num_classes, embedding_dim)):
        if argument in parameters and config.get(argument) is None:
            if value is not None:
                config[argument] = value
            elif _required(cls, argument):
                raise ValueError(f"{name} needs {argument}: set it in its config or pass {argument}= to get().")
    return keras.saving.deserialize_keras_object(
        {**identifier, "class_name": name, "config": config}, custom_objects={name: cls}
    )
