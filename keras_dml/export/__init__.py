"""Export a trained embedder as a TF SavedModel and an ONNX model, verified against Keras.

    embedder ─> serving function: images [uint8 -> float32 * pixel_scale] -> embeddings
             ├─> saved_model/      signature "serving_default" (TF Serving, tf.saved_model.load)
             ├─> embedder.onnx     the same function frozen, converted by tf2onnx, dynamic batch
             └─> model_card.json   shapes, dtypes, preprocessing, versions, metrics, parity

`export_pddm_scorer` does the same for a trained PDDM unit, as a re-ranking scorer
`(query (n, D), candidates (n, c, D)) -> scores (n, c)` (`pddm_scorer.onnx`).

The package, one idea per module:

    exporters     the public entry points: argument checks, then write, verify, card
    write         the serving tf.functions, written as SavedModel and ONNX
    convert       tf2onnx: freezing and the graph surgery ONNX needs
    verification  parity of the reloaded artefacts with Keras
    model_card    model_card.json, also the mark of a previous export
    atomic        staging directory, target checks, the move into place
    layout        file, tensor and format names

Example:

>>> from keras_dml.models.embedder import build_embedder
>>> from keras_dml.export import export_embedder
>>> embedder = build_embedder("small_cnn", embedding_dim=16, input_shape=(8, 8, 1))
>>> card = export_embedder(embedder, "digits_export", pixel_scale=1 / 255)  # doctest: +SKIP
>>> card["verification"]["max_abs_diff"]  # doctest: +SKIP
{'saved_model': 0.0, 'onnx': 1.2e-07}
"""
import json
from pathlib import Path

import keras

from keras_dml.export.exporters import export_embedder, export_pddm_scorer
from keras_dml.export.layout import FORMATS, ONNX_OPSET
from keras_dml.export.verification import ExportVerificationError
from keras_dml.export.write import scorer_function, serving_function

__all__ = ["ExportVerificationError", "FORMATS", "ONNX_OPSET", "describe_export", "export_embedder",
           "export_pddm_scorer", "load_embedder", "scorer_function", "serving_function"]


def load_embedder(source):
    """`(embedder, metrics)` from a `.keras` file or a training run directory.

    A run directory holds `embedder.keras` (or a single other `.keras` file) and, when
    present, `metrics.json`. A saved model with an `.embedder` attribute (MetricModel)
    gives its embedder.
    """
    import keras_dml.layers  # noqa: F401  (registers keras_dml's serialisable classes)
    import keras_dml.losses  # noqa: F401
    import keras_dml.models  # noqa: F401

    path = Path(source)
    metrics = None
    if path.is_dir():
        if (path / "metrics.json").is_file():
            metrics = json.loads((path / "metrics.json").read_text())
        files = [path / "embedder.keras"] if (path / "embedder.keras").is_file() else sorted(path.glob("*.keras"))
        if len(files) != 1:
            raise ValueError(f"{path} must hold embedder.keras or exactly one .keras file; "
                             f"found {[f.name for f in files]}.")
        path = files[0]
    elif path.suffix != ".keras" or not path.is_file():
        raise ValueError(f"source must be a .keras file or a run directory; got {source!r}.")
    model = keras.saving.load_model(path, compile=False)
    return getattr(model, "embedder", model), metrics


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
