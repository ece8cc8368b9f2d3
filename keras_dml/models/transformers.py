"""Vision-transformer backbones from keras-hub (ViT, DINOv2): sizes, presets, tokens, freezing.

This module owns what keras_dml knows of keras-hub's vision transformers: the
architecture of each size (so `weights=None` builds without a download), the preset
each size loads with `weights="pretrained"`, the pixel normalisation each family was
trained with, and how an embedding is read off the token sequence.

| backbone         | keras-hub class  | patch | width | layers | heads | pretrained preset               |
|------------------|------------------|-------|-------|--------|-------|---------------------------------|
| `"vit_small"`    | `ViTBackbone`    | 16    | 384   | 12     | 6     | none in keras-hub (pass a path) |
| `"vit_base"`     | `ViTBackbone`    | 16    | 768   | 12     | 12    | `vit_base_patch16_224_imagenet` |
| `"dinov2_small"` | `DINOV2Backbone` | 14    | 384   | 12     | 6     | `dinov2_small`                  |
| `"dinov2_base"`  | `DINOV2Backbone` | 14    | 768   | 12     | 12    | `dinov2_base`                   |

Both families take images whose height and width are equal and divisible by the patch
size; the embedder puts the family's pixel normalisation in front, so it takes RGB in
`[0, 255]` like the `keras.applications` backbones.

Example (random weights, a tiny stack for a quick test):

>>> from keras_dml.models import build_embedder
>>> embedder = build_embedder("dinov2_small", embedding_dim=16, input_shape=(28, 28, 3),
...                           backbone_options={"num_layers": 1, "hidden_dim": 32, "num_heads": 2,
...                                             "intermediate_dim": 64})
>>> embedder.output_shape
(None, 16)
"""
import dataclasses
import os

import keras
from keras import ops

from keras_dml import checks

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TOKENS = ("class", "mean", "class_mean")


@dataclasses.dataclass(frozen=True)
class TransformerSize:
    """One size of one family: the keras-hub class, its constructor arguments, normalisation, preset."""

    family: str
    architecture: dict
    mean: tuple  # in [0, 1] pixel units
    std: tuple
    preset: str = None

    @property
    def patch_size(self):
        return self.architecture["patch_size"]


def _vit(width, heads, preset=None):
    return TransformerSize("ViTBackbone", {"patch_size": 16, "num_layers": 12, "hidden_dim": width,
                                           "num_heads": heads, "mlp_dim": 4 * width},
                           mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), preset=preset)


def _dinov2(width, heads, preset):
    return TransformerSize("DINOV2Backbone", {"patch_size": 14, "num_layers": 12, "hidden_dim": width,
                                              "num_heads": heads, "intermediate_dim": 4 * width},
                           mean=IMAGENET_MEAN, std=IMAGENET_STD, preset=preset)


TRANSFORMERS = {
    "vit_small": _vit(384, 6),
    "vit_base": _vit(768, 12, "vit_base_patch16_224_imagenet"),
    "dinov2_small": _dinov2(384, 6, "dinov2_small"),
    "dinov2_base": _dinov2(768, 12, "dinov2_base"),
}


def check_image_shape(backbone, input_shape):
    """A `ValueError` unless `input_shape` is square RGB with sides divisible by the patch size."""
    patch = TRANSFORMERS[backbone].patch_size
    if len(input_shape) != 3 or input_shape[2] != 3 or input_shape[0] != input_shape[1]:
        raise ValueError(f"backbone={backbone!r} takes square RGB images, input_shape=(size, size, 3); "
                         f"got input_shape={tuple(input_shape)}.")
    if input_shape[0] % patch or input_shape[0] < patch:
        raise ValueError(f"backbone={backbone!r} cuts images into {patch}x{patch} patches: the image size must "
                         f"be a multiple of {patch}; got input_shape={tuple(input_shape)}.")


def pixel_normalization(backbone):
    """`(mean, std)` in `[0, 255]` pixel units: the family's normalisation of RGB pixels."""
    size = TRANSFORMERS[backbone]
    return tuple(255.0 * m for m in size.mean), tuple(255.0 * s for s in size.std)


def build_transformer(backbone, input_shape, weights=None, backbone_options=None):
    """The keras-hub backbone named "backbone": images -> tokens `(batch, tokens, width)`.

    `weights=None` builds keras_dml's configuration of the size (updated with
    `backbone_options`, any argument of the keras-hub class); `"pretrained"` loads the
    size's default keras-hub preset; any other string is a preset name or a local preset
    directory. Presets download on first use (keras-hub caches them).
    """
    import keras_hub

    size = TRANSFORMERS[backbone]
    cls = getattr(keras_hub.models, size.family)
    image_shape = tuple(input_shape)
    if weights is None:
        config = {**size.architecture, **(backbone_options or {})}
        if size.family == "DINOV2Backbone":
            config.setdefault("position_embedding_shape", image_shape)
        return cls(image_shape=image_shape, name="backbone", **config)
    if backbone_options:
        raise ValueError("backbone_options change the architecture, so they need weights=None; "
                         f"got backbone_options={backbone_options!r} with weights={weights!r}.")
    preset = size.preset if weights == "pretrained" else weights
    if preset is None:
        raise ValueError(f"keras-hub has no pretrained preset of backbone={backbone!r}; pass weights= the name "
                         "or local directory of a preset of the same architecture, or weights=None.")
    try:
        net = cls.from_preset(preset, image_shape=image_shape, name="backbone")
    except Exception as error:
        if os.path.isdir(preset):
            raise
        raise RuntimeError(
            f"Could not load the keras-hub preset {preset!r} for backbone={backbone!r} ({type(error).__name__}: "
            f"{error}). Pretrained presets download from Kaggle on first use and are cached; offline, download "
            "the preset on a machine with network (keras_hub.models.Backbone.from_preset, then "
            "backbone.save_to_preset(DIR)) and pass weights=DIR."
        ) from error
    return net


def freeze_blocks(net, blocks):
    """Freeze the patch embedding and the first `blocks` transformer blocks (`True`: everything)."""
    if blocks is True:
        net.trainable = False
        return
    blocks = checks.positive_int(blocks, "freeze_backbone")
    stem, encoder = _stem_and_encoder(net)
    stem.trainable = False
    for block in _blocks(encoder)[:blocks]:
        block.trainable = False


def _stem_and_encoder(net):
    named = {layer.name: layer for layer in net.layers}
    stem = next(layer for name, layer in named.items() if "embedding" in name)
    encoder = next(layer for name, layer in named.items() if "encoder" in name)
    return stem, encoder


def _blocks(encoder):
    """The transformer blocks of a keras-hub encoder, in order."""
    return [layer for layer in encoder._layers if hasattr(layer, "trainable_weights") and layer.trainable_weights
            and ("block" in layer.name or layer.name.startswith("layers_"))]


@keras.saving.register_keras_serializable(package="keras_dml")
class TokenPooling(keras.layers.Layer):
    """One vector per image from a transformer's tokens `(batch, tokens, width)`.

    `"class"`: the class token (the first); `"mean"`: the mean of the patch tokens (the
    last `num_patches`, so register tokens are left out); `"class_mean"`: both,
    concatenated (`2 * width`).
    """

    def __init__(self, token="class", num_patches=None, **kwargs):
        super().__init__(**kwargs)
        self.token = checks.one_of(token, "token", TOKENS)
        self.num_patches = None if num_patches is None else checks.positive_int(num_patches, "num_patches")

    def call(self, tokens):
        cls_token = tokens[:, 0, :]
        if self.token == "class":
            return cls_token
        patches = ops.mean(tokens[:, -self.num_patches:, :], axis=1)
        return patches if self.token == "mean" else ops.concatenate([cls_token, patches], axis=-1)

    def compute_output_shape(self, input_shape):
        width = input_shape[-1] * (2 if self.token == "class_mean" else 1)
        return (input_shape[0], width)

    def get_config(self):
        return {**super().get_config(), "token": self.token, "num_patches": self.num_patches}
