"""Export from KERAS_BACKEND=jax: both artefacts, verified against the JAX model, also checked here on TensorFlow."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

# Runs with KERAS_BACKEND=jax: exports an embedder and a PDDM scorer, saves the JAX model's
# own outputs on fixed inputs, and checks that a class defined in __main__ is refused clearly.
JAX_EXPORT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import keras, numpy as np
    from keras_dml.export import export_embedder, export_pddm_scorer
    from keras_dml.layers import PDDM
    from keras_dml.models.embedder import build_embedder

    assert keras.backend.backend() == "jax"
    out = Path(sys.argv[1])
    keras.utils.set_random_seed(0)
    embedder = build_embedder("small_cnn", embedding_dim=16, input_shape=(8, 8, 1))
    card = export_embedder(embedder, out / "embedder", pixel_scale=1 / 255)
    pixels = np.random.default_rng(1).integers(0, 256, size=(5, 8, 8, 1)).astype("uint8")
    np.save(out / "pixels.npy", pixels)
    np.save(out / "embeddings.npy", np.asarray(embedder(pixels.astype("float32") / 255, training=False)))

    pddm = PDDM(hidden_dim=8)
    pddm.build((None, 16), (None, 16))
    scorer_card = export_pddm_scorer(pddm, out / "scorer", formats="onnx")
    query, candidates = np.ones((2, 16), "float32") / 4, np.eye(16, dtype="float32")[None, :3].repeat(2, 0)
    np.save(out / "scores.npy", np.asarray(pddm(query[:, None, :], candidates)))

    @keras.saving.register_keras_serializable(package="jax_test")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inputs = keras.Input((4,))
    try:
        export_embedder(keras.Model(inputs, Twice()(keras.layers.Dense(3)(inputs))), out / "refused")
        refused = None
    except ValueError as error:
        refused = str(error)
    (out / "result.json").write_text(json.dumps({"card": card, "scorer_card": scorer_card, "refused": refused}))
""")


def test_export_from_jax_writes_both_formats_matching_the_jax_model(tmp_path):
    pytest.importorskip("jax")
    onnxruntime = pytest.importorskip("onnxruntime")
    tf = pytest.importorskip("tensorflow")
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", JAX_EXPORT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())

    card = result["card"]
    assert card["versions"]["keras_backend"] == "jax" and card["pixel_scale"] == 1 / 255
    assert set(card["verification"]["max_abs_diff"]) == {"saved_model", "onnx"}
    assert max(card["verification"]["max_abs_diff"].values()) <= 1e-4
    assert result["scorer_card"]["kind"] == "pddm_scorer" and set(result["scorer_card"]["artefacts"]) == {"onnx"}
    assert "cannot import classes defined in __main__: ['Twice']" in result["refused"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "embedder", "embeddings.npy", "pixels.npy", "result.json", "scorer", "scores.npy"]

    # Checked again here, independently of the exporter: the artefacts reproduce the JAX model's outputs.
    pixels, expected = np.load(tmp_path / "pixels.npy"), np.load(tmp_path / "embeddings.npy")
    session = onnxruntime.InferenceSession(str(tmp_path / "embedder" / "embedder.onnx"),
                                           providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["embeddings"], {"images": pixels})[0], expected, atol=1e-4, rtol=0)
    signature = tf.saved_model.load(str(tmp_path / "embedder" / "saved_model")).signatures["serving_default"]
    np.testing.assert_allclose(signature(images=tf.constant(pixels))["embeddings"].numpy(), expected,
                               atol=1e-4, rtol=0)
    scorer = onnxruntime.InferenceSession(str(tmp_path / "scorer" / "pddm_scorer.onnx"),
                                          providers=["CPUExecutionProvider"])
    query, candidates = np.ones((2, 16), "float32") / 4, np.eye(16, dtype="float32")[None, :3].repeat(2, 0)
    np.testing.assert_allclose(scorer.run(["scores"], {"query": query, "candidates": candidates})[0],
                               np.load(tmp_path / "scores.npy"), atol=1e-4, rtol=0)
