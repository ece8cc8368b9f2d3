"""export/export_embedder.py turns a run directory into artefacts; export/serve_onnx.py searches a folder with them."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from keras_dml.models.embedder import build_embedder

ROOT = Path(__file__).resolve().parent.parent
DIGITS_SCALE = 1 / 255
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export is TensorFlow-specific")


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "export" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small digits run (a real run directory, one short epoch) exported with the script."""
    from keras_dml.training import RunDir, train

    run = tmp_path_factory.mktemp("runs") / "digits"
    config = {"dataset": "digits", "backbone": "small_cnn", "embedding_dim": 16, "image_size": 8,
              "epochs": 1, "steps_per_epoch": 2, "jit_compile": False}
    train(config, run, verbose=0)
    embedder = RunDir(run).load_embedder("best")
    output = run.parent / "exported"
    _script("export_embedder").main([str(run), "--out", str(output)])
    return embedder, run, output


def test_export_script_writes_verified_artefacts_with_the_run_metrics(exported, capsys):
    from keras_dml.training import RunDir

    embedder, run, output = exported
    card = json.loads((output / "model_card.json").read_text())
    assert card["metrics"] == json.loads(json.dumps(RunDir(run).metrics_of("best")))
    assert card["input"]["dtype"] == "uint8" and card["pixel_scale"] == DIGITS_SCALE  # the scale the run recorded
    assert max(card["verification"]["max_abs_diff"].values()) <= 1e-4
    assert (output / "embedder.onnx").is_file() and (output / "saved_model" / "saved_model.pb").is_file()
    capsys.readouterr()
    assert _script("export_embedder").main([str(run), "--out", str(output)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    before = sorted(p.name for p in run.iterdir())
    for target in (run, run.parent):  # the run directory, or one holding it, is never replaced
        assert _script("export_embedder").main([str(run), "--out", str(target), "--overwrite"]) == 2
        assert "holds files an export did not write" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == before
    _script("export_embedder").main([str(run / "final.keras"), "--out", str(output), "--overwrite",
                                     "--formats", "onnx", "--float-input"])
    assert "images float32" in capsys.readouterr().out
    assert sorted(p.name for p in output.iterdir()) == ["embedder.onnx", "model_card.json"]
    _script("export_embedder").main([str(run), "--out", str(output), "--overwrite"])
    text = capsys.readouterr().out
    assert f"Exported {embedder.name} to {output}" in text and "parity with Keras" in text


def _write_gallery(folder):
    """Six 8x8 greyscale digits-like images, two of them copied under other names, and one larger RGB image."""
    rng = np.random.default_rng(0)
    images = {f"img{i}.png": rng.integers(0, 256, size=(8, 8), dtype=np.uint8) for i in range(6)}
    (folder / "copies").mkdir(parents=True)
    for name, pixels in images.items():
        Image.fromarray(pixels).save(folder / name)
    for name in ("img1.png", "img4.png"):
        Image.fromarray(images[name]).save(folder / "copies" / f"copy_{name}")
    Image.fromarray(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(folder / "big.jpg")
    return images


def test_serve_onnx_embeds_a_folder_and_answers_queries(exported, tmp_path):
    embedder, _, output = exported
    images = _write_gallery(tmp_path / "gallery")
    command = [sys.executable, str(ROOT / "export" / "serve_onnx.py"), str(output), str(tmp_path / "gallery")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([*command, "-k", "2", "--json"], capture_output=True, text=True, check=True, env=env)
    answers = {Path(r["query"]).name: r["neighbours"] for r in json.loads(result.stdout)}
    assert len(answers) == 9 and all(len(n) == 2 for n in answers.values())
    # Identical images: keras_dml.search rechecks near-ties in float64, so their distance is ~0.
    assert Path(answers["img1.png"][0]["path"]).name == "copy_img1.png" and answers["img1.png"][0]["distance"] < 1e-3
    assert Path(answers["copy_img4.png"][0]["path"]).name == "img4.png"
    assert all(Path(n["path"]).name != query for query, ns in answers.items() for n in ns)

    # The served distances are the Keras model's, on the same pixels.
    keras_embeddings = {name: keras.ops.convert_to_numpy(embedder(
        pixels[None, :, :, None].astype("float32") * np.float32(DIGITS_SCALE), training=False))[0]
        for name, pixels in images.items()}
    checked = 0
    for query, neighbours in answers.items():
        for neighbour in neighbours:
            name = Path(neighbour["path"]).name.removeprefix("copy_")
            if query in keras_embeddings and name in keras_embeddings:
                expected = np.linalg.norm(keras_embeddings[query] - keras_embeddings[name])
                assert abs(neighbour["distance"] - expected) < 1e-3
                checked += 1
    assert checked >= 10

    result = subprocess.run([*command, "--query", str(tmp_path / "gallery" / "img4.png"), "-k", "3"],
                            capture_output=True, text=True, check=True, env=env)
    assert "9 gallery images embedded to 16 dimensions" in result.stdout
    neighbours = [n.split(" (") for n in result.stdout.splitlines()[1].split(": ")[1].split(", ")]
    assert {name for name, _ in neighbours[:2]} == {"img4.png", "copy_img4.png"}
    assert all(float(d.rstrip(")")) < 1e-3 for _, d in neighbours[:2]) and float(neighbours[2][1].rstrip(")")) > 1e-2
