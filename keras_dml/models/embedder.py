"""`build_embedder`: images -> backbone -> global pooling -> Dense -> L2 normalisation.

The model takes images as they come: raw RGB pixel values in `[0, 255]` (float) for the
`keras.applications` and keras-hub transformer backbones, whose own preprocessing sits
inside the model, and whatever the data holds for the small test backbones (the digits
are `[0, 1]`). Transformers (`keras_dml.models.transformers`) pool their tokens instead
of a feature map: the class token, the mean of the patch tokens, or both.

Example:

>>> from keras_dml.models.embedder import build_embedder
>>> embedder = build_embedder("small_cnn", embedding_dim=32, input_shape=(8, 8, 1), pooling="gem")
>>> embedder.output_shape
(None, 32)
"""
import keras

from keras_dml.layers import ChannelNormalization, get_pooling
from keras_dml.models import pretrained, transformers

# Keras's ResNet-50 was trained on BGR images minus these channel means ("caffe" mode).
RESNET_CAFFE_MEAN = (103.939, 116.779, 123.68)

# name -> (keras.applications constructor, extra keyword arguments). Every model but
# ResNet-50 carries its own Rescaling / Normalization layers when built like this.
APPLICATIONS = {
    "resnet50": ("ResNet50", {}),
    "efficientnet_b0": ("EfficientNetB0", {}),
    "efficientnetv2_b0": ("EfficientNetV2B0", {"include_preprocessing": True}),
    "efficientnetv2_s": ("EfficientNetV2S", {"include_preprocessing": True}),
    "convnext_tiny": ("ConvNeXtTiny", {"include_preprocessing": True}),
    "mobilenetv3_small": ("MobileNetV3Small", {"include_preprocessing": True}),
    "mobilenetv3_large": ("MobileNetV3Large", {"include_preprocessing": True}),
}
SMALL_BACKBONES = ("small_cnn", "small_resnet", "mlp")
# small_resnet: a 3x3 stem at full resolution, then per stage (width, basic blocks), each
# stage halving the resolution (32x32 -> 16x16 -> 8x8 -> 4x4): 0.4M weights, and a third
# of the compute of a CIFAR ResNet whose first stage keeps 32x32.
SMALL_RESNET_STAGES = ((32, 2), (64, 2), (128, 1))
BACKBONES = tuple(APPLICATIONS) + tuple(transformers.TRANSFORMERS) + SMALL_BACKBONES
MIN_APPLICATION_SIZE = 32


def build_embedder(backbone, embedding_dim=512, input_shape=(224, 224, 3), weights=None, pooling="avg",
                   freeze_batchnorm=True, normalize=True, token="class", freeze_backbone=False,
                   backbone_options=None):
    """An embedding model: `backbone -> pooling -> Dense(embedding_dim) -> L2 normalise`.

    Args:
        backbone: one of `BACKBONES`: a `keras.applications` network (`"resnet50"`,
            `"efficientnet_b0"`, `"efficientnetv2_b0"`, `"efficientnetv2_s"`,
            `"convnext_tiny"`, `"mobilenetv3_small"`, `"mobilenetv3_large"`), which
            takes RGB `(height, width, 3)` images of at least 32x32 with values in
            `[0, 255]`; a keras-hub vision transformer (`"vit_small"`, `"vit_base"`,
            `"dinov2_small"`, `"dinov2_base"`), which takes square RGB images whose side
            is a multiple of its patch size (16, 14), values in `[0, 255]`; `"small_cnn"`
            (two 3x3 convolutions, any `(height, width, channels)`), `"small_resnet"` (a
            CIFAR-style ResNet of `SMALL_RESNET_STAGES`, any `(height, width, channels)`;
            glyph-pretrained weights ship with keras_dml), or `"mlp"` (one hidden layer
            of 256 on the flattened input).
        embedding_dim: width of the embedding, at least 1.
        input_shape: shape of one image, without the batch dimension.
        weights: `None` (random initialisation); `"glyphs"` for `"small_resnet"` on
            one-channel images (weights pretrained on characters outside every glyph
            split, shipped with keras_dml: `keras_dml.models.pretrained`); or
            `"imagenet"` (Keras downloads the pretrained weights), or a weights file,
            for applications backbones; for
            transformers `None`, `"pretrained"` (the size's keras-hub preset, downloaded
            on first use), or a preset name or local preset directory.
        pooling: `"avg"`, `"max"`, `"avgmax"` (their sum) or `"gem"` (generalized mean
            with a learnable exponent); `"mlp"` has no feature map and takes only the
            default.
        freeze_batchnorm: keep every BatchNormalization layer of the backbone frozen
            (statistics and scale/offset), so it runs in inference mode also during
            `fit`: the usual setting when fine-tuning a pretrained backbone on the small
            batches of metric learning. Set it to False when training from scratch.
        normalize: end with L2 normalisation, so embeddings have unit norm.
        token: transformers only: `"class"` (the class token), `"mean"` (mean of the
            patch tokens) or `"class_mean"` (both, concatenated).
        freeze_backbone: `True` freezes the whole backbone (only the head trains); an
            integer `n` freezes a transformer's patch embedding and its first `n` blocks.
            For a smaller learning rate of the backbone instead, see
            `keras_dml.optimizers.with_lr_multipliers`.
        backbone_options: transformers with `weights=None` only: keras-hub constructor
            arguments that replace keras_dml's size (e.g. `{"num_layers": 2}`).

    Returns:
        A functional `keras.Model` named `f"{backbone}_embedder"` from `images` to
        `(batch, embedding_dim)` embeddings; its backbone is the layer `"backbone"`.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone={backbone!r}; expected one of {list(BACKBONES)}.")
    if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
        raise ValueError(f"embedding_dim must be an integer of at least 1; got embedding_dim={embedding_dim!r}.")
    input_shape = _check_input_shape(backbone, input_shape)
    if backbone == "mlp" and pooling != "avg":
        raise ValueError(f"backbone='mlp' has no feature map to pool; leave pooling at its default, "
                         f"got pooling={pooling!r}.")
    has_feature_map = backbone != "mlp" and backbone not in transformers.TRANSFORMERS
    pooling_layer = get_pooling(pooling, name=f"{pooling}_pooling") if has_feature_map else None
    if pretrained.is_shipped(weights):
        pretrained.check_fit(weights, backbone, input_shape)
    elif weights is not None and backbone in SMALL_BACKBONES:
        raise ValueError(f"backbone={backbone!r} has no pretrained weights but those that ship with keras_dml "
                         f"({', '.join(f'{name!r}' for name in pretrained.SHIPPED)}); got weights={weights!r}.")
    if backbone_options is not None and backbone not in transformers.TRANSFORMERS:
        raise ValueError(f"backbone_options is for the transformer backbones; got backbone={backbone!r}.")
    if freeze_backbone is not True and freeze_backbone is not False and backbone not in transformers.TRANSFORMERS:
        raise ValueError(f"freeze_backbone takes True or False for backbone={backbone!r} (a number of blocks "
                         f"only for transformers); got freeze_backbone={freeze_backbone!r}.")

    images = keras.Input(input_shape, name="images")
    x = images
    if backbone == "resnet50":
        x = ChannelNormalization(RESNET_CAFFE_MEAN, reverse_channels=True, name="resnet_preprocessing")(x)
    if backbone in transformers.TRANSFORMERS:
        mean, std = transformers.pixel_normalization(backbone)
        x = ChannelNormalization(mean, std, name="transformer_preprocessing")(x)
    net = _backbone(backbone, input_shape, weights, backbone_options)
    if freeze_batchnorm:
        for layer in _batchnorm_layers(net):
            layer.trainable = False
    if freeze_backbone is True:
        net.trainable = False
    elif freeze_backbone:
        transformers.freeze_blocks(net, freeze_backbone)
    x = net(x)
    if backbone in transformers.TRANSFORMERS:
        num_patches = (input_shape[0] // transformers.TRANSFORMERS[backbone].patch_size) ** 2
        x = transformers.TokenPooling(token, num_patches, name=f"{token}_token")(x)
    elif pooling_layer is not None:
        x = pooling_layer(x)
    x = keras.layers.Dense(embedding_dim, name="embedding")(x)
    if normalize:
        x = keras.layers.UnitNormalization(name="l2_normalize")(x)
    return keras.Model(images, x, name=f"{backbone}_embedder")


def _check_input_shape(backbone, input_shape):
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ValueError(f"input_shape must be positive integers without the batch dimension; "
                         f"got input_shape={input_shape!r}.")
    if backbone in APPLICATIONS:
        if len(shape) != 3 or shape[2] != 3 or min(shape[:2]) < MIN_APPLICATION_SIZE:
            raise ValueError(
                f"backbone={backbone!r} takes RGB images: input_shape=(height, width, 3) with height "
                f"and width at least {MIN_APPLICATION_SIZE}; got input_shape={shape}. Resize the images "
                "or use backbone='small_cnn' for small inputs."
            )
    elif backbone in transformers.TRANSFORMERS:
        transformers.check_image_shape(backbone, shape)
    elif backbone in ("small_cnn", "small_resnet") and len(shape) != 3:
        raise ValueError(f"backbone={backbone!r} takes images of shape (height, width, channels); "
                         f"got input_shape={shape}.")
    return shape


def _backbone(backbone, input_shape, weights, backbone_options=None):
    """The feature extractor as a model named "backbone", from images to a feature map, vector or tokens."""
    if backbone in transformers.TRANSFORMERS:
        return transformers.build_transformer(backbone, input_shape, weights, backbone_options)
    if backbone in APPLICATIONS:
        constructor, options = APPLICATIONS[backbone]
        try:
            net = getattr(keras.applications, constructor)(
                include_top=False, weights=weights, input_shape=input_shape, **options)
        except Exception as error:  # Keras raises a bare Exception when a download fails
            if "URL fetch failure" not in str(error):
                raise
            raise ConnectionError(
                f"weights={weights!r}: Keras could not download the pretrained {backbone} weights ({error}). "
                "Without network, copy the weights file from a machine that has it (Keras keeps it in "
                "~/.keras/models/) to the same folder here, or pass its path as weights='/path/to/file.h5'."
            ) from None
        net.name = "backbone"
        return net
    if backbone == "small_resnet":
        net = _small_resnet(input_shape)
        if pretrained.is_shipped(weights):
            pretrained.load_weights(net, weights)
        return net
    layers = keras.layers
    if backbone == "small_cnn":
        stack = [layers.Conv2D(32, 3, padding="same", activation="relu"),
                 layers.MaxPooling2D(2, padding="same"),
                 layers.Conv2D(64, 3, padding="same", activation="relu")]
    else:
        stack = [layers.Flatten(), layers.Dense(256, activation="relu")]
    return keras.Sequential([keras.Input(input_shape), *stack], name="backbone")


def _small_resnet(input_shape):
    """A ResNet for small images: 3x3 stem, basic blocks of `SMALL_RESNET_STAGES`, a feature map out."""
    layers = keras.layers
    images = keras.Input(input_shape)
    x = layers.Conv2D(SMALL_RESNET_STAGES[0][0], 3, padding="same", use_bias=False, name="stem_conv")(images)
    x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(name="stem_bn")(x))
    for stage, (width, blocks) in enumerate(SMALL_RESNET_STAGES):
        for block in range(blocks):
            strides = 2 if block == 0 else 1
            x = _basic_block(x, width, strides, name=f"stage{stage + 1}_block{block + 1}")
    return keras.Model(images, x, name="backbone")


def _basic_block(x, width, strides, name):
    """`relu(x' + conv-bn-relu-conv-bn(x))`, where `x'` is `x` or its strided 1x1 projection."""
    layers = keras.layers
    y = layers.Conv2D(width, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.ReLU(name=f"{name}_relu1")(layers.BatchNormalization(name=f"{name}_bn1")(y))
    y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if strides != 1 or x.shape[-1] != width:
        x = layers.Conv2D(width, 1, strides=strides, use_bias=False, name=f"{name}_shortcut")(x)
        x = layers.BatchNormalization(name=f"{name}_shortcut_bn")(x)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, y]))


def _batchnorm_layers(layer):
    """Every BatchNormalization layer inside `layer`, through nested models."""
    for sub in getattr(layer, "layers", ()):
        if isinstance(sub, keras.layers.BatchNormalization):
            yield sub
        else:
            yield from _batchnorm_layers(sub)
