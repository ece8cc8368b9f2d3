"""Parity of reloaded artefacts with the Keras model: random inputs, largest absolute difference, tolerance.

The tolerance is relative to the output's scale: `TOLERANCE * max(1, max |Keras output|)`,
so float32 rounding of an unnormalised embedder with outputs in the hundreds passes,
and unit-norm embeddings are held to `TOLERANCE` itself.

The artefacts are reloaded as a user would (`tf.saved_model.load`, an onnxruntime session
on the CPU) and run at several batch sizes, so the dynamic batch dimension is exercised.
"""
import keras
import numpy as np

from keras_dml.export.layout import (CANDIDATES_NAME, INPUT_NAME, QUERY_NAME, SAVED_MODEL_DIR, SIGNATURE)

VERIFY_BATCH_SIZES = (1, 3, 16)
VERIFY_CANDIDATES = (1, 5, 7)  # candidates per query for the scorer, one count per batch size
TOLERANCE = 1e-4  # relative to max(1, the largest |output|)


class ExportVerificationError(RuntimeError):
    """An exported artefact's embeddings differ from the Keras model's beyond the tolerance."""


def verify(directory, formats, onnx_file, output_name, cases):
    """`(worst, tolerance)`: each reloaded artefact's largest absolute difference from Keras over
    `cases` of `(feed, expected)`, and the tolerance it was held to (`tolerance_for(cases)`).

    Raises `ExportVerificationError` when an artefact returns another shape or differs by
    more than the tolerance.
    """
    runners = {}
    if "saved_model" in formats:
        import tensorflow as tf

        signature = tf.saved_model.load(str(directory / SAVED_MODEL_DIR)).signatures[SIGNATURE]
        runners["saved_model"] = lambda feed: signature(**{k: tf.constant(v) for k, v in feed.items()})[output_name]
    if "onnx" in formats:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(directory / onnx_file), providers=["CPUExecutionProvider"])
        runners["onnx"] = lambda feed: session.run([output_name], feed)[0]

    worst = dict.fromkeys(runners, 0.0)
    for feed, expected in cases:
        for fmt, run in runners.items():
            got = np.asarray(run(feed))
            if got.shape != expected.shape:
                shapes = {name: value.shape for name, value in feed.items()}
                raise ExportVerificationError(f"{fmt} returned shape {got.shape} for inputs {shapes}; "
                                              f"Keras returned {expected.shape}.")
            worst[fmt] = max(worst[fmt], float(np.max(np.abs(got - expected))))
    tolerance = tolerance_for(cases)
    failed = {fmt: diff for fmt, diff in worst.items() if not diff <= tolerance}
    if failed:
        raise ExportVerificationError(f"Exported {output_name} differ from Keras's by up to {failed} "
                                      f"(tolerance {tolerance:.3g}); nothing was written.")
    return worst, tolerance


def tolerance_for(cases):
    """`TOLERANCE` scaled by the largest |Keras output| in `cases` (at least 1).

    A non-finite Keras output leaves `TOLERANCE` unscaled, so its difference (inf or NaN) fails.
    """
    largest = max(float(np.max(np.abs(expected), initial=0.0)) for _, expected in cases)
    return TOLERANCE * max(1.0, largest) if np.isfinite(largest) else TOLERANCE


def embedder_cases(embedder, input_shape, include_preprocessing, pixel_scale):
    """Random uint8 images at each verification batch size, fed as the artefacts take them, and Keras's embeddings."""
    rng = np.random.default_rng(0)
    cases = []
    for batch_size in VERIFY_BATCH_SIZES:
        pixels = rng.integers(0, 256, size=(batch_size, *input_shape)).astype("uint8")
        floats = pixels.astype("float32") * np.float32(pixel_scale)
        expected = keras.ops.convert_to_numpy(embedder(floats, training=False)).astype("float32")
        feed = pixels if include_preprocessing else floats.astype(keras.backend.standardize_dtype(embedder.inputs[0].dtype))
        cases.append(({INPUT_NAME: feed}, expected))
    return cases


def scorer_cases(pddm):
    """Random unit-norm queries and candidates at each (batch, candidates) size, and Keras's scores."""
    rng = np.random.default_rng(0)
    cases = []
    for batch_size, candidates in zip(VERIFY_BATCH_SIZES, VERIFY_CANDIDATES):
        query = rng.normal(size=(batch_size, pddm.feature_dim)).astype("float32")
        pool = rng.normal(size=(batch_size, candidates, pddm.feature_dim)).astype("float32")
        query /= np.linalg.norm(query, axis=-1, keepdims=True)
        pool /= np.linalg.norm(pool, axis=-1, keepdims=True)
        expected = keras.ops.convert_to_numpy(pddm(query[:, None, :], pool)).astype("float32")
        cases.append(({QUERY_NAME: query, CANDIDATES_NAME: pool}, expected))
    return cases
