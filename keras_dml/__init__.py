"""keras-dml: deep metric learning for Keras 3.

Submodules imported on demand (heavier dependencies): `keras_dml.export` (tf2onnx,
onnxruntime), `keras_dml.visualize` (matplotlib), `keras_dml.training`, `keras_dml.recipes`.
"""
__version__ = "0.1.0"

from keras_dml import (  # noqa: E402
    data, distances, distributed, evaluation, index, layers, losses, miners, models, optimizers, search,
)

__all__ = [
    "data", "distances", "distributed", "evaluation", "index", "layers", "losses", "miners", "models",
    "optimizers", "search", "__version__",
]
