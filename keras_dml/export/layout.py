"""What an export directory holds: the formats, file names and tensor names every export module uses.

    directory/
        saved_model/        SAVED_MODEL_DIR, signature SIGNATURE
        embedder.onnx       ONNX_FILE (a PDDM scorer: SCORER_ONNX_FILE)
        model_card.json     CARD_FILE
"""
from keras_dml.names import EXPORT_FORMATS as FORMATS

SAVED_MODEL_DIR = "saved_model"
ONNX_FILE = "embedder.onnx"
SCORER_ONNX_FILE = "pddm_scorer.onnx"
CARD_FILE = "model_card.json"
ARTEFACT_NAMES = (SAVED_MODEL_DIR, ONNX_FILE, SCORER_ONNX_FILE, CARD_FILE)
SIGNATURE = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
QUERY_NAME, CANDIDATES_NAME, SCORES_NAME = "query", "candidates", "scores"
ONNX_OPSET = 17
