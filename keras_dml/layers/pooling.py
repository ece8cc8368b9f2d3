"""Global pooling of a convolutional feature map into one vector per image.

`get_pooling(name)` gives the layer for `"avg" | "max" | "avgmax" | "gem"`; the last two
are defined here, the first two are Keras's own global pooling layers.

Example:

>>> import numpy as np
>>> from keras_dml.layers import GeneralizedMeanPooling2D
>>> features = np.random.default_rng(0).uniform(size=(2, 4, 4, 8)).astype("float32")
>>> tuple(GeneralizedMeanPooling2D(p=3.0)(features).shape)
(2, 8)
"""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_dml")
class GeneralizedMeanPooling2D(keras.layers.Layer):
    """Generalized-mean (GeM) pooling with a learnable exponent (Radenovic et al., TPAMI 2019).

    For each channel of a feature map `x` of shape `(batch, height, width, channels)`:

        y = ( mean_{h, w} max(x, epsilon)^p )^(1 / p)

    `p = 1` is average pooling and `p -> inf` approaches max pooling. `p` is one scalar
    weight shared by all channels, trained with the network when `trainable_p=True`. It is
    used as `max(p, 1)`, so it never drops below average pooling (where `1 / p` would blow
    up). The arithmetic runs in float32 also under a mixed-precision policy, because
    `x^p` overflows float16 for ordinary activation sizes.

    Args:
        p: initial exponent, at least 1 (the paper's default is 3).
        trainable_p: learn `p` (default) or keep it fixed.
        epsilon: lower clamp of the activations, so that `x^p` is defined for `x <= 0`.
    """

    def __init__(self, p=3.0, trainable_p=True, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if p < 1:
            raise ValueError(f"p must be at least 1 (1 is average pooling); got p={p}.")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be positive; got epsilon={epsilon}.")
        self.initial_p = float(p)
        self.trainable_p = bool(trainable_p)
        self.epsilon = float(epsilon)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        self.p = self.add_weight(
            name="p",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_p),
            trainable=self.trainable_p,
            dtype="float32",
        )

    def call(self, inputs):
        x = ops.maximum(ops.cast(inputs, "float32"), self.epsilon)
        p = ops.maximum(self.p, 1.0)
        pooled = ops.mean(ops.power(x, p), axis=(1, 2))
        return ops.cast(ops.power(pooled, 1.0 / p), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[3])

    def get_config(self):
        return {**super().get_config(), "p": self.initial_p, "trainable_p": self.trainable_p,
                "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="keras_dml")
class GlobalAvgMaxPooling2D(keras.layers.Layer):
    """Sum of global average and global max pooling, per channel.

        y = mean_{h, w} x + max_{h, w} x

    The pooling many deep-metric-learning baselines use on ResNet-50 (e.g. Proxy Anchor's
    reference code): the average keeps the whole object, the max its most salient part.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs):
        return ops.mean(inputs, axis=(1, 2)) + ops.max(inputs, axis=(1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[3])


POOLINGS = {
    "avg": keras.layers.GlobalAveragePooling2D,
    "max": keras.layers.GlobalMaxPooling2D,
    "avgmax": GlobalAvgMaxPooling2D,
    "gem": GeneralizedMeanPooling2D,
}


def get_pooling(pooling, **kwargs):
    """A new global pooling layer by name: one of `"avg"`, `"max"`, `"avgmax"`, `"gem"`."""
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling={pooling!r}; expected one of {sorted(POOLINGS)}.")
    return POOLINGS[pooling](**kwargs)
