"""Export from a JAX (or any non-TensorFlow) backend: a TensorFlow subprocess rebuilds the model and writes it.

The artefacts are TensorFlow graphs, and Keras traces a model into one only on its
TensorFlow backend, which is fixed per process. Keras's own route from JAX,
`model.export(format="tf_saved_model")` through jax2tf, stores the whole model as one
`XlaCallModule` op (JAX 0.10 serialises natively only; checked with Keras 3.15.1):
tf2onnx cannot convert that op, and the SavedModel runs only on the XLA platforms it was
serialised for. So the model is saved (`.keras`, or a layer's config and weights) and
rebuilt with the same weights in a `KERAS_BACKEND=tensorflow` subprocess, which writes the
same artefacts a TensorFlow export writes. The caller then verifies them against the
model's own outputs on its backend.

The subprocess runs `main([REQUEST_FILE])`; it is not meant for users.
"""
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

from keras_dml.export import write

KERAS_FILE = "model.keras"
CONFIG_FILE, WEIGHTS_FILE = "layer.json", "weights.npz"
REQUEST_FILE = "request.json"


def write_in_tensorflow(layer, directory, kind, formats, opset, include_preprocessing=True, pixel_scale=1.0):
    """Write `layer` (an embedder `keras.Model`, or a PDDM layer for `kind="pddm_scorer"`) to `directory`.

    Raises `ValueError` when a class of the model cannot be imported by the subprocess, and
    `RuntimeError` when TensorFlow is missing or the subprocess fails.
    """
    if not _tensorflow_installed():
        raise RuntimeError(f"Export writes TensorFlow graphs, also from KERAS_BACKEND={keras.backend.backend()}: "
                           "install TensorFlow beside it (pip install tensorflow tf2onnx onnx onnxruntime).")
    modules = _class_modules(layer)
    with tempfile.TemporaryDirectory(prefix="keras_dml_export_") as scratch:
        scratch = Path(scratch)
        if kind == "embedder":
            layer.save(scratch / KERAS_FILE)
        else:
            (scratch / CONFIG_FILE).write_text(json.dumps(keras.saving.serialize_keras_object(layer)))
            np.savez(scratch / WEIGHTS_FILE, *[np.asarray(w) for w in layer.get_weights()])
        request = {"scratch": str(scratch), "directory": str(directory), "kind": kind, "formats": list(formats),
                   "opset": opset, "include_preprocessing": include_preprocessing, "pixel_scale": pixel_scale,
                   "modules": modules}
        (scratch / REQUEST_FILE).write_text(json.dumps(request))
        env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        command = f"from {__name__} import main; main([{str(scratch / REQUEST_FILE)!r}])"
        done = subprocess.run([sys.executable, "-c", command], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"The TensorFlow process writing the export failed (exit {done.returncode}):\n"
                           f"{done.stderr[-3000:]}")


def _tensorflow_installed():
    """Whether this Python has TensorFlow to start the subprocess with, without importing it here."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # a finder that hides it; a module left as None in sys.modules
        return False


def _class_modules(layer):
    """The modules the subprocess imports to register the model's own classes; `__main__` ones cannot be."""
    classes = {type(sub) for sub in layer._flatten_layers(include_self=True, recursive=True)}
    custom = {cls for cls in classes if cls.__module__.split(".")[0] != "keras"}
    in_main = sorted(cls.__qualname__ for cls in custom if cls.__module__ == "__main__")
    if in_main:
        raise ValueError(f"Exporting from KERAS_BACKEND={keras.backend.backend()} rebuilds the model in a "
                         f"TensorFlow process, which cannot import classes defined in __main__: {in_main}. "
                         "Move them into an importable module, or export with KERAS_BACKEND=tensorflow.")
    return sorted({cls.__module__ for cls in custom})


def main(argv=None):
    """The subprocess: rebuild the saved layer on TensorFlow and write its artefacts."""
    request = json.loads(Path((sys.argv[1:] if argv is None else argv)[0]).read_text())
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"The export subprocess runs with KERAS_BACKEND=tensorflow; got {keras.backend.backend()!r}.")
    for module in ("keras_dml.layers", "keras_dml.losses", "keras_dml.models", *request["modules"]):
        importlib.import_module(module)
    scratch = Path(request["scratch"])
    if request["kind"] == "embedder":
        layer = keras.saving.load_model(scratch / KERAS_FILE, compile=False)
    else:
        layer = keras.saving.deserialize_keras_object(json.loads((scratch / CONFIG_FILE).read_text()))
        with np.load(scratch / WEIGHTS_FILE) as weights:
            layer.set_weights([weights[f"arr_{i}"] for i in range(len(weights.files))])
    write.write_layer(layer, Path(request["directory"]), request["kind"], request["formats"], request["opset"],
                      request["include_preprocessing"], request["pixel_scale"])
    return 0
