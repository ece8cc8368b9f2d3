"""The TensorFlow side of an export: the serving `tf.function`s and writing them as SavedModel and ONNX.

    embedder ─> serving_function: images [uint8 -> float32 * pixel_scale] -> {"embeddings"}
    PDDM     ─> scorer_function:  (query, candidates) -> {"scores"}
             └─> write_artefacts: saved_model/ and the ONNX file, both from that one function

Both artefacts come from one `tf.function`, so they compute the same thing.
"""
import contextlib
import logging

from keras_dml.export import convert
from keras_dml.export.layout import (CANDIDATES_NAME, INPUT_NAME, ONNX_FILE, OUTPUT_NAME, QUERY_NAME,
                                     SAVED_MODEL_DIR, SCORER_ONNX_FILE, SCORES_NAME, SIGNATURE)


def serving_function(embedder, include_preprocessing=True, pixel_scale=1.0):
    """The `tf.function` both artefacts are made from: `images -> {"embeddings": float32}`."""
    import tensorflow as tf

    shape = (None, *embedder.inputs[0].shape[1:])
    dtype = tf.uint8 if include_preprocessing else tf.as_dtype(embedder.inputs[0].dtype)

    @tf.function(input_signature=[tf.TensorSpec(shape, dtype, name=INPUT_NAME)])
    def serve(images):
        x = images
        if include_preprocessing:
            x = tf.cast(x, tf.float32)
            if pixel_scale != 1:
                x = x * tf.constant(pixel_scale, tf.float32)
        return {OUTPUT_NAME: tf.cast(embedder(x, training=False), tf.float32)}

    return serve


def scorer_function(pddm):
    """The `tf.function` a PDDM scorer is exported from: `(query, candidates) -> {"scores": float32}`."""
    import tensorflow as tf

    dim = pddm.feature_dim

    @tf.function(input_signature=[tf.TensorSpec((None, dim), tf.float32, name=QUERY_NAME),
                                  tf.TensorSpec((None, None, dim), tf.float32, name=CANDIDATES_NAME)])
    def score(query, candidates):
        return {SCORES_NAME: tf.cast(pddm(query[:, None, :], candidates), tf.float32)}

    return score


def write_layer(layer, directory, kind, formats, opset, include_preprocessing=True, pixel_scale=1.0):
    """Write an embedder (`kind="embedder"`) or a PDDM layer (`kind="pddm_scorer"`) to `directory`."""
    if kind == "embedder":
        serve = serving_function(layer, include_preprocessing, pixel_scale)
        write_artefacts(layer, serve, directory, formats, ONNX_FILE, opset, ("batch",))
    else:
        write_artefacts(layer, scorer_function(layer), directory, formats, SCORER_ONNX_FILE, opset,
                        ("batch", "candidates"))


def write_artefacts(layer, serve, directory, formats, onnx_file, opset, dynamic_dims):
    """Write `serve` (which uses `layer`'s variables) to `directory` in each of `formats`."""
    with _quiet_converters():
        if "saved_model" in formats:
            write_saved_model(layer, serve, directory / SAVED_MODEL_DIR)
        if "onnx" in formats:
            convert.write_onnx(serve, directory / onnx_file, opset, dynamic_dims)


def write_saved_model(layer, serve, path):
    """A SavedModel holding the layer's variables and `serve`, also as the serving signature.

    The root is a bare `tf.Module` rather than Keras's `ExportArchive`, whose walk over
    every layer looking for lookup tables (an image embedder has none) took most of the
    export time of an EfficientNet here; for the same reason the gradient functions an
    inference artefact never uses are not traced.
    """
    import tensorflow as tf

    root = tf.Module()
    root.model_variables = list(layer.variables)
    root.serve = serve
    tf.saved_model.save(root, str(path), signatures={SIGNATURE: serve.get_concrete_function()},
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))


@contextlib.contextmanager
def _quiet_converters():
    """Silence TensorFlow's deprecation notices and tf2onnx's progress logs while converting."""
    loggers = [logging.getLogger(name) for name in ("tensorflow", "tf2onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
