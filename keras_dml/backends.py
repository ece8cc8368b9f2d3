"""What needs TensorFlow: the one import of TensorFlow for the parts that cannot run without it.

The core (losses, layers, models, miners, distances, optimizers, search, evaluation,
`load_glyphs`, `load_digits`, `class_balanced` on arrays, `model.fit`) uses Keras and
NumPy only, so it runs on the JAX and PyTorch backends with TensorFlow not installed.
`tf.data` and TFDS pipelines, image folders, augmentation, the distributed loop and
export (SavedModel, tf2onnx) need TensorFlow; each module of those imports it through
`tensorflow(purpose)`, so a missing TensorFlow is one error that says what to install or
use instead, never an `ImportError` from deep inside.

Example:

>>> from keras_dml import backends
>>> tf = backends.tensorflow("tf.data pipelines (keras_dml.data.augment)")  # doctest: +SKIP
"""
import importlib

import keras

INSTALL = "pip install tensorflow (the default `pip install keras-dml` includes it)"


def tensorflow(purpose, instead=None):
    """The `tensorflow` module, imported for `purpose`; an `ImportError` saying what to do when it cannot be.

    Args:
        purpose: what needs TensorFlow, in words (e.g. `"SavedModel export"`).
        instead: optional words on what works without TensorFlow.
    """
    try:
        return importlib.import_module("tensorflow")
    except ImportError as error:
        alternative = f" Without TensorFlow, use {instead}." if instead else ""
        raise ImportError(
            f"{purpose} needs TensorFlow, which cannot be imported here ({error}); the Keras backend is "
            f"{keras.backend.backend()}. Install it: {INSTALL}.{alternative}"
        ) from None
