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
from keras_dml.export.exporters import export_embedder, export_pddm_scorer
from keras_dml.export.layout import FORMATS, ONNX_OPSET
from keras_dml.export.model_card import describe_export
from keras_dml.export.verification import ExportVerificationError
from keras_dml.export.write import scorer_function, serving_function

__all__ = ["ExportVerificationError", "FORMATS", "ONNX_OPSET", "describe_export", "export_embedder",
           "export_pddm_scorer", "scorer_function", "serving_function"]
