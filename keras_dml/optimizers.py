"""A larger learning rate for proxies, that also holds under Adam.

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
    if not hasattr(keras.optimizers, "MultiOptimizer"):
        raise ImportError(f"with_proxy_lr_multiplier needs Keras >= 3.15 (keras.optimizers.MultiOptimizer); "
                          f"this is Keras {keras.__version__}.")
    if proxy_lr_multiplier <= 0:
        raise ValueError(f"proxy_lr_multiplier must be positive; got {proxy_lr_multiplier}.")
    optimizer = keras.optimizers.get(optimizer)
    if isinstance(optimizer, (keras.optimizers.MultiOptimizer, keras.optimizers.LossScaleOptimizer)):
        raise ValueError(
            f"optimizer must be a plain Keras optimizer, not a {type(optimizer).__name__} "
            "(compile() adds loss scaling itself under mixed_float16)."
        )
    config = optimizer.get_config()
    learning_rate = config["learning_rate"]
    if isinstance(learning_rate, dict):
        schedule = keras.saving.deserialize_keras_object(learning_rate)
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            raise ValueError(
                "with_proxy_lr_multiplier needs a float learning rate or a LearningRateSchedule; "
                f"got {schedule!r}."
            )
        scaled = ScaledSchedule(schedule, proxy_lr_multiplier)
    else:
        scaled = float(learning_rate) * proxy_lr_multiplier
    proxy_config = {**config, "learning_rate": scaled, "name": f"{optimizer.name}_proxies"}
    proxy_optimizer = type(optimizer).from_config(proxy_config)
    return keras.optimizers.MultiOptimizer(keras.optimizers.OptimizerMap(optimizer, {variables: proxy_optimizer}))
