"""The valid names of each choice keras_dml offers: the one list that checks and help texts read.

Plain Python (no Keras, no TensorFlow), so that `keras-dml --help` can list them
instantly. The modules that implement the names keep their tables keyed by them
(`data.datasets.DATASET_INFOS`, `models.embedder.APPLICATIONS`, `models.transformers.TRANSFORMERS`,
`layers.pooling.POOLINGS`), and tests/test_names.py checks the tables against these lists.

>>> from keras_dml import names
>>> "glyphs" in names.DATASETS, names.WEIGHTS
(True, ('best', 'final'))
"""

# Registered datasets (`keras_dml.data.get_dataset`); an image folder's path is the other kind.
DATASETS = ("digits", "glyphs", "cars196", "cub200", "sop")

# Embedder backbones (`keras_dml.models.build_embedder`), by family.
APPLICATION_BACKBONES = ("resnet50", "efficientnet_b0", "efficientnetv2_b0", "efficientnetv2_s", "convnext_tiny",
                         "mobilenetv3_small", "mobilenetv3_large")
TRANSFORMER_BACKBONES = ("vit_small", "vit_base", "dinov2_small", "dinov2_base")
SMALL_BACKBONES = ("small_cnn", "small_resnet", "mlp")  # pretrained only by the weights keras_dml ships
# Pretrained weights that ship inside keras_dml (`keras_dml.models.pretrained.SHIPPED`), e.g. weights="glyphs".
SHIPPED_WEIGHTS = ("glyphs",)
BACKBONES = APPLICATION_BACKBONES + TRANSFORMER_BACKBONES + SMALL_BACKBONES

# Global poolings of a feature map (`keras_dml.layers.get_pooling`).
POOLINGS = ("avg", "max", "avgmax", "gem")

# Distribution strategies (`keras_dml.distributed.make_strategy`).
STRATEGIES = ("default", "mirrored", "multiworker")

# Training optimizers (`keras_dml.training.build_optimizer`).
OPTIMIZERS = ("adam", "adamw")

# Export formats (`keras_dml.export.export_embedder`).
EXPORT_FORMATS = ("saved_model", "onnx")

# The saved models of a run directory: the best epoch's (by val MAP@R) and the last epoch's.
WEIGHTS = ("best", "final")


def listed(choices):
    """`choices` as help text writes them: "a, b or c"."""
    return ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
