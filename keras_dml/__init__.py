"""keras-dml: deep metric learning for Keras 3.

Every submodule loads on first use (`keras_dml.losses.TripletLoss` imports
`keras_dml.losses` then), so that `import keras_dml` and `keras-dml --help` do not start
TensorFlow. The core runs on the JAX and PyTorch backends without TensorFlow installed;
`keras_dml.backends` says which parts need it. Loading a saved model with
`keras.saving.load_model` needs the modules that define its classes imported first:
`import keras_dml.losses, keras_dml.models, keras_dml.layers` (Keras imports a class's
module itself only for the keras packages), or
`keras_dml.training.RunDir(path).load_model()`, which does it. `keras_dml.export` needs
tf2onnx and onnxruntime, `keras_dml.visualize` matplotlib.
"""
import importlib

__version__ = "0.1.0"

__all__ = [
    "backends", "data", "distances", "distributed", "evaluation", "index", "layers", "losses", "miners", "models",
    "optimizers", "search", "__version__",
]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"keras_dml.{name}")
    raise AttributeError(f"module 'keras_dml' has no attribute {name!r}")
