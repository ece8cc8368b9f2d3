"""Per-group learning rates (proxies faster, a pretrained backbone slower), that also hold under Adam.

Proxy-based losses train their proxies faster than the backbone (the potential-field
paper: 100x). Scaling the proxies' gradient does not do it under Adam or AdamW, whose
step is invariant to the gradient's scale. `with_proxy_lr_multiplier` instead gives the
proxy variables their own copy of the optimizer, at `proxy_lr_multiplier` times its
learning rate (a schedule is scaled step by step), inside a
`keras.optimizers.MultiOptimizer`. Both copies keep their own moments, and AdamW's
decoupled weight decay scales with each copy's learning rate, as a per-group learning
rate does in other frameworks. `MultiOptimizer` arrived in Keras 3.15; the rest of
keras_dml does not need it.

Example:

>>> import keras, keras_dml
>>> optimizer = keras_dml.optimizers.with_proxy_lr_multiplier(keras.optimizers.Adam(1e-4), 100.0)
>>> [round(float(o.learning_rate), 6) for o in optimizer.optimizers]
[0.01, 0.0001]
"""
import keras

# Matches the variable path of every keras_dml proxy table, e.g. "potential_field_loss/proxies".
PROXY_VARIABLES = r"(.*/)?proxies"


@keras.saving.register_keras_serializable(package="keras_dml")
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`factor * schedule(step)`."""

    def __init__(self, schedule, factor):
        self.schedule = schedule
        self.factor = float(factor)

    def __call__(self, step):
        return self.factor * self.schedule(step)

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "factor": self.factor}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["schedule"]), config["factor"])


def with_proxy_lr_multiplier(optimizer, proxy_lr_multiplier, variables=PROXY_VARIABLES):
    """`optimizer` for every variable, and a copy at `proxy_lr_multiplier` x its learning
    rate for the variables whose path fully matches the regular expression `variables`.

    Returns a `keras.optimizers.MultiOptimizer` to pass to `model.compile(optimizer=...)`.
    Callbacks that change the learning rate must address `optimizer.optimizers[i]`.
    """
    if proxy_lr_multiplier <= 0:
        raise ValueError(f"proxy_lr_multiplier must be positive; got {proxy_lr_multiplier}.")
    return with_lr_multipliers(optimizer, {variables: proxy_lr_multiplier})


def with_lr_multipliers(optimizer, multipliers):
    """`optimizer` for every variable, and for each `{pattern: factor}` of `multipliers` a
    copy at `factor` x its learning rate for the variables whose path fully matches the
    regular expression `pattern` (or is exactly one of the paths in a list).

    A smaller rate for a pretrained backbone than for the new head and proxies:

    >>> import keras, keras_dml
    >>> embedder = keras_dml.models.build_embedder("small_cnn", 8, input_shape=(8, 8, 1))
    >>> optimizer = keras_dml.optimizers.with_lr_multipliers(
    ...     keras.optimizers.Adam(1e-3), {keras_dml.optimizers.PROXY_VARIABLES: 100.0,
    ...                                   keras_dml.optimizers.variable_paths(embedder.get_layer("backbone")): 0.1})
    >>> [round(float(o.learning_rate), 6) for o in optimizer.optimizers]
    [0.1, 0.0001, 0.001]
    """
    if not hasattr(keras.optimizers, "MultiOptimizer"):
        raise ImportError(f"with_lr_multipliers needs Keras >= 3.15 (keras.optimizers.MultiOptimizer); "
                          f"this is Keras {keras.__version__}.")
    optimizer = keras.optimizers.get(optimizer)
    if isinstance(optimizer, (keras.optimizers.MultiOptimizer, keras.optimizers.LossScaleOptimizer)):
        raise ValueError(
            f"optimizer must be a plain Keras optimizer, not a {type(optimizer).__name__} "
            "(compile() adds loss scaling itself under mixed_float16)."
        )
    optimizer_map = {}
    for index, (pattern, factor) in enumerate(multipliers.items()):
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 0:
            raise ValueError(f"multipliers must map patterns to positive factors; got {pattern!r}: {factor!r}.")
        suffix = "proxies" if pattern == PROXY_VARIABLES else f"x{index}"  # "proxies": the name checkpoints know
        scaled = _scaled_copy(optimizer, factor, f"{optimizer.name}_{suffix}")
        for key in (pattern,) if isinstance(pattern, str) else pattern:
            optimizer_map[key] = scaled
    return keras.optimizers.MultiOptimizer(keras.optimizers.OptimizerMap(optimizer, optimizer_map))


def variable_paths(layer):
    """The paths of `layer`'s variables, as a key of `with_lr_multipliers` (matched exactly)."""
    return tuple(variable.path for variable in layer.variables)


def _scaled_copy(optimizer, factor, name):
    """A fresh optimizer of `optimizer`'s class and config at `factor` x its learning rate."""
    config = optimizer.get_config()
    learning_rate = config["learning_rate"]
    if isinstance(learning_rate, dict):
        schedule = keras.saving.deserialize_keras_object(learning_rate)
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            raise ValueError(
                "learning-rate multipliers need a float learning rate or a LearningRateSchedule; "
                f"got {schedule!r}."
            )
        scaled = ScaledSchedule(schedule, factor)
    else:
        scaled = float(learning_rate) * factor
    return type(optimizer).from_config({**config, "learning_rate": scaled, "name": name})
