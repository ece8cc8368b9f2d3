"""The model card (`model_card.json`): what an export holds, how to feed it, versions, metrics, parity.

It is also the mark of an export: `read_card` recognises a directory a previous export wrote.
`describe_export` turns a card into the few lines the command line prints.
"""
import json

import keras
import numpy as np

from keras_dml.export.layout import (CANDIDATES_NAME, CARD_FILE, INPUT_NAME, ONNX_FILE, OUTPUT_NAME, QUERY_NAME,
                                     SAVED_MODEL_DIR, SCORER_ONNX_FILE, SCORES_NAME, SIGNATURE)

KINDS = ("embedder", "pddm_scorer")


def embedder_card(embedder, formats, input_shape, include_preprocessing, pixel_scale, opset, metrics, parity):
    """The card of an embedder export; `pixel_scale` is recorded whatever the input dtype."""
    dim = int(embedder.outputs[0].shape[-1])
    if include_preprocessing:
        preprocessing = f"float32(images) * {pixel_scale!r}, then the embedder, whose own layers do the rest"
    else:
        preprocessing = (f"none outside the embedder: feed the float values the Keras model takes, "
                         f"float32(pixels) * {pixel_scale!r}")
    probe = np.random.default_rng(0).uniform(0, 255 * pixel_scale, size=(2, *input_shape)).astype("float32")
    norms = np.linalg.norm(keras.ops.convert_to_numpy(embedder(probe, training=False)), axis=1)
    return {
        "model_name": embedder.name,
        "kind": "embedder",
        "embedding_dim": dim,
        "normalized": bool(np.allclose(norms, 1.0, atol=1e-3)),
        "distance": "euclidean",
        "input": {"name": INPUT_NAME, "shape": [None, *input_shape],
                  "dtype": "uint8" if include_preprocessing else keras.backend.standardize_dtype(embedder.inputs[0].dtype)},
        "output": {"name": OUTPUT_NAME, "shape": [None, dim], "dtype": "float32"},
        "preprocessing": preprocessing,
        "pixel_scale": float(pixel_scale),
        "artefacts": artefacts(formats, ONNX_FILE, opset),
        "versions": versions(formats),
        "metrics": metrics,
        "verification": parity,
    }


def scorer_card(pddm, formats, opset, parity):
    """The card of a PDDM scorer export."""
    dim = pddm.feature_dim
    return {
        "model_name": pddm.name,
        "kind": "pddm_scorer",
        "feature_dim": dim,
        "inputs": [{"name": QUERY_NAME, "shape": [None, dim], "dtype": "float32"},
                   {"name": CANDIDATES_NAME, "shape": [None, None, dim], "dtype": "float32"}],
        "output": {"name": SCORES_NAME, "shape": [None, None], "dtype": "float32"},
        "higher_is_more_similar": True,
        "artefacts": artefacts(formats, SCORER_ONNX_FILE, opset),
        "versions": versions(formats),
        "verification": parity,
    }


def artefacts(formats, onnx_file, opset):
    entries = {}
    if "saved_model" in formats:
        entries["saved_model"] = {"path": SAVED_MODEL_DIR, "signature": SIGNATURE}
    if "onnx" in formats:
        entries["onnx"] = {"path": onnx_file, "opset": opset}
    return entries


def versions(formats):
    """Library versions, and the Keras backend the exported model ran on."""
    import tensorflow as tf

    import keras_dml

    found = {"keras_dml": keras_dml.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
             "keras_backend": keras.backend.backend()}
    if "onnx" in formats:
        import tf2onnx

        found["tf2onnx"] = tf2onnx.__version__
    return found


def write_card(card, directory):
    (directory / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")


def read_card(directory):
    """The card in `directory` when a keras_dml export wrote it, else None."""
    try:
        card = json.loads((directory / CARD_FILE).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(card, dict) and card.get("kind") in KINDS and isinstance(card.get("artefacts"), dict):
        return card
    return None


def describe_export(card, directory):
    """A few lines saying what `export_embedder` wrote to `directory` and how well it matched Keras."""
    lines = [f"Exported {card['model_name']} to {directory}:"]
    inputs = card["inputs"] if "inputs" in card else [card["input"]]
    signature = " -> ".join(", ".join(f"{t['name']} {t['dtype']} {tuple(t['shape'])}" for t in tensors)
                            for tensors in (inputs, [card["output"]]))
    for fmt, artefact in card["artefacts"].items():
        detail = f"signature {artefact['signature']!r}" if fmt == "saved_model" else f"opset {artefact['opset']}"
        lines.append(f"  {artefact['path']:<18} {fmt} ({detail}): {signature}")
    check = card["verification"]
    if check is None:
        lines.append("  not verified (verify=False)")
    else:
        diffs = ", ".join(f"{fmt} {diff:.1e}" for fmt, diff in check["max_abs_diff"].items())
        lines.append(f"  parity with Keras, max |difference| over batch sizes {check['batch_sizes']}: "
                     f"{diffs} (tolerance {check['tolerance']:.0e})")
    return "\n".join(lines)
