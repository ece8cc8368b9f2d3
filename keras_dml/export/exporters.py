"""The public entry points, `export_embedder` and `export_pddm_scorer`: check the arguments, then write,
verify and describe the artefacts in a staging directory that `atomic` moves into place.

On the TensorFlow backend the artefacts are written in this process (`write`); on any
other backend (JAX) a TensorFlow subprocess writes them (`tensorflow_process`). Either way
they are verified here, against the model's own outputs on the current backend.
"""
import json

import keras
import numpy as np
from keras.src.models.functional import Functional

from keras_dml import checks
from keras_dml.export import atomic, model_card, tensorflow_process, verification, write
from keras_dml.export.layout import FORMATS, ONNX_FILE, ONNX_OPSET, OUTPUT_NAME, SCORER_ONNX_FILE, SCORES_NAME


def export_embedder(model, directory, formats=FORMATS, include_preprocessing=True, verify=True, overwrite=False,
                    metrics=None, pixel_scale=1.0, opset=ONNX_OPSET):
    """Write `model`'s embedder to `directory` as a SavedModel and/or ONNX model, plus a model card.

    Args:
        model: a Keras embedder with one image input of fixed shape (batch size free) and
            one `(batch, embedding_dim)` output, or a model with an `.embedder` attribute
            (`keras_dml.models.MetricModel`), whose embedder alone is exported: never the
            proxies, a PDDM unit or optimizer state.
        directory: where the artefacts go. It is written as a whole at the end (the files
            are made in a temporary sibling directory that is then renamed), so a failure
            leaves `directory` as it was.
        formats: any of `"saved_model"`, `"onnx"`.
        include_preprocessing: the artefacts take raw `uint8` pixels and compute
            `float32(pixels) * pixel_scale` before the embedder. With False they take the
            embedder's own float input.
        verify: reload the artefacts (`tf.saved_model.load`, onnxruntime) and compare their
            embeddings with the Keras model's on random images at batch sizes 1, 3 and 16;
            raise `ExportVerificationError` when the largest absolute difference exceeds 1e-4.
        overwrite: replace a non-empty `directory`; without it, a non-empty one is refused.
        metrics: optional JSON-serialisable dict (e.g. MAP@R on the test set) for the card.
        pixel_scale: what one `uint8` unit is in the embedder's input: 1.0 for embedders
            that take `[0, 255]` values (every `keras.applications` backbone of
            `build_embedder`), `1 / 255` for embedders trained on `[0, 1]` images.
        opset: the ONNX opset.

    Returns:
        The model card (a dict, also written to `directory/model_card.json`); with
        `verify=True` its `"verification"` entry holds the parity figures.
    """
    embedder = getattr(model, "embedder", model)
    formats = _check_formats(formats)
    input_shape = _check_embedder(embedder)
    metrics = _check_metrics(metrics)
    pixel_scale = checks.pixel_scale(pixel_scale)

    def write_verified(staging):
        _write_layer(embedder, staging, "embedder", formats, opset, include_preprocessing, pixel_scale)
        parity = None
        if verify:
            cases = verification.embedder_cases(embedder, input_shape, include_preprocessing, pixel_scale)
            worst, tolerance = verification.verify(staging, formats, ONNX_FILE, OUTPUT_NAME, cases)
            parity = {"batch_sizes": list(verification.VERIFY_BATCH_SIZES), "tolerance": tolerance,
                      "max_abs_diff": worst}
        card = model_card.embedder_card(embedder, formats, input_shape, include_preprocessing, pixel_scale, opset,
                                        metrics, parity)
        model_card.write_card(card, staging)
        return card

    return atomic.write_atomically(directory, overwrite, write_verified)



def export_pddm_scorer(pddm, directory, formats=FORMATS, verify=True, overwrite=False, opset=ONNX_OPSET):
    """Write a trained PDDM unit as a re-ranking scorer: `(query, candidates) -> scores`.

    The artefacts take `query` `(n, D)` and `candidates` `(n, c, D)` float32 embeddings
    (both dimensions `n` and `c` free) and return `scores` `(n, c)`, `S(query_i,
    candidate_ij)`, higher = more similar: the scorer `keras_dml.index.Index.search(...,
    rerank=...)` takes, served without the embedder's training code. Written, verified
    (at `(n, c)` = (1, 1), (3, 5), (16, 7)) and moved into place like `export_embedder`.

    Args:
        pddm: a built `keras_dml.layers.PDDM`, or an object holding one as `.pddm` (the
            `PDDMLoss` criterion, e.g. `metric_model.criterion`).
        directory, formats, verify, overwrite, opset: as for `export_embedder`.

    Returns:
        The model card, also written to `directory/model_card.json`.
    """
    pddm = getattr(pddm, "pddm", pddm)
    formats = _check_formats(formats)
    if not isinstance(pddm, keras.layers.Layer) or not pddm.built or not getattr(pddm, "feature_dim", None):
        raise ValueError(f"pddm must be a built keras_dml.layers.PDDM (or hold one as .pddm); got {pddm!r}.")

    def write_verified(staging):
        _write_layer(pddm, staging, "pddm_scorer", formats, opset)
        parity = None
        if verify:
            worst, tolerance = verification.verify(staging, formats, SCORER_ONNX_FILE, SCORES_NAME,
                                                   verification.scorer_cases(pddm))
            parity = {"batch_sizes": list(verification.VERIFY_BATCH_SIZES),
                      "candidates": list(verification.VERIFY_CANDIDATES), "tolerance": tolerance,
                      "max_abs_diff": worst}
        card = model_card.scorer_card(pddm, formats, opset, parity)
        model_card.write_card(card, staging)
        return card

    return atomic.write_atomically(directory, overwrite, write_verified)


def _write_layer(layer, staging, kind, formats, opset, include_preprocessing=True, pixel_scale=1.0):
    """`write.write_layer` in this process on TensorFlow, else in a TensorFlow subprocess."""
    writer = write.write_layer if keras.backend.backend() == "tensorflow" else tensorflow_process.write_in_tensorflow
    writer(layer, staging, kind, formats, opset, include_preprocessing, pixel_scale)


def _check_formats(formats):
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"Unknown export format(s) {unknown}; formats must be a non-empty "
                         f"selection of {list(FORMATS)}, got formats={formats!r}.")
    return tuple(f for f in FORMATS if f in formats)


def _check_embedder(embedder):
    """The embedder's input shape without the batch; raises ValueError for what cannot be exported."""
    if not isinstance(embedder, keras.Model):
        raise ValueError(f"model must be a keras.Model (or have an .embedder that is one); got {type(embedder)}.")
    inputs, outputs = getattr(embedder, "inputs", None), getattr(embedder, "outputs", None)
    if not inputs or not outputs:
        raise ValueError(f"{embedder.name} has no known input shape: build it on keras.Input(shape) "
                         "(a functional or Sequential model) before exporting.")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"An embedder has one input and one output; {embedder.name} has "
                         f"{len(inputs)} inputs and {len(outputs)} outputs.")
    if len(outputs[0].shape) != 2:
        raise ValueError(f"An embedder outputs (batch, embedding_dim); {embedder.name} outputs shape "
                         f"{tuple(outputs[0].shape)}.")
    input_shape = tuple(inputs[0].shape[1:])
    if None in input_shape:
        raise ValueError(f"Export needs a fixed input shape besides the batch; {embedder.name} takes "
                         f"{tuple(inputs[0].shape)}.")
    unregistered = sorted(_unserializable_classes(embedder))
    if unregistered:
        raise ValueError(f"{embedder.name} uses custom classes Keras cannot reload: {unregistered}. "
                         "Decorate them with @keras.saving.register_keras_serializable() and give them "
                         "get_config, so the exported model can be traced back to a .keras file.")
    return input_shape


def _unserializable_classes(layer):
    """Names of the classes in `layer`'s config that Keras cannot reload.

    A functional or Sequential model's config lists its layers, so those are checked too;
    any other layer rebuilds its sublayers from its own config (keras-hub's `ViTBackbone`
    makes unregistered `ViTEncoder` layers), so only its own class counts.
    """
    found = set() if _is_serializable(type(layer)) else {f"{type(layer).__module__}.{type(layer).__qualname__}"}
    if isinstance(layer, keras.Sequential) or type(layer).get_config is Functional.get_config:
        for sublayer in layer.layers:
            found |= _unserializable_classes(sublayer)
    return found


def _is_serializable(cls):
    if cls.__module__.split(".")[0] == "keras":
        return True
    return keras.saving.get_registered_object(keras.saving.get_registered_name(cls)) is cls


def _check_metrics(metrics):
    if metrics is None:
        return None
    try:
        return json.loads(json.dumps(metrics, default=_numpy_scalar))
    except (TypeError, ValueError) as error:
        raise ValueError(f"metrics must be a JSON-serialisable dict; {error}") from None


def _numpy_scalar(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{value!r} of type {type(value).__name__} is not JSON-serialisable")
