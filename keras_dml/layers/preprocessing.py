"""Per-channel input normalisation, for backbones whose preprocessing is not inside them."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_dml")
class ChannelNormalization(keras.layers.Layer):
    """`y = (x[..., ::-1] - mean) / std` with the channel flip only when `reverse_channels`.

    Puts a backbone's preprocessing inside the model, so that the model takes raw pixel
    values. Keras's ResNet-50 ("caffe" preprocessing) expects BGR images minus the
    ImageNet channel means: `ChannelNormalization(mean=(103.939, 116.779, 123.68),
    reverse_channels=True)` turns an RGB image in `[0, 255]` into exactly that.

    Example:

    >>> import numpy as np
    >>> layer = ChannelNormalization(mean=(1.0, 2.0, 3.0), reverse_channels=True)
    >>> np.asarray(layer(np.array([[10.0, 20.0, 30.0]], "float32"))).tolist()
    [[29.0, 18.0, 7.0]]
    """

    def __init__(self, mean, std=None, reverse_channels=False, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(m) for m in mean]
        self.std = [1.0] * len(self.mean) if std is None else [float(s) for s in std]
        if len(self.std) != len(self.mean):
            raise ValueError(f"mean and std need one value per channel; got mean={mean}, std={std}.")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive; got std={std}.")
        self.reverse_channels = bool(reverse_channels)

    def build(self, input_shape):
        if input_shape[-1] != len(self.mean):
            raise ValueError(
                f"ChannelNormalization has {len(self.mean)} channel means but the input has "
                f"{input_shape[-1]} channels (input shape {tuple(input_shape)})."
            )

    def call(self, inputs):
        x = ops.flip(inputs, axis=-1) if self.reverse_channels else inputs
        mean = ops.convert_to_tensor(self.mean, dtype=x.dtype)
        std = ops.convert_to_tensor(self.std, dtype=x.dtype)
        return (x - mean) / std

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std,
                "reverse_channels": self.reverse_channels}
