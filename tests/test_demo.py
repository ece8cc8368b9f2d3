"""`keras-dml demo` -> `evaluate` -> `export` on the demo's run directory, with tiny settings."""
import json

import keras
import pytest

from keras_dml.cli import _free_run_dir, build_parser, main
from keras_dml.training import RunDir

TINY = ["--set", "epochs=2", "steps_per_epoch=2"]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow backend")
def test_demo_leaves_a_run_that_evaluate_and_export_take_without_flags(tmp_path, capsys):
    run = tmp_path / "runs" / "demo"
    assert main(["demo", "--run-dir", str(run), *TINY]) == 0
    out = capsys.readouterr().out
    for said in ("untrained", "final (epoch 2)", "best (epoch", "Recall@1: the share", "parity with Keras",
                 "one uint8 unit = 0.00392157 (recorded in the run directory)"):
        assert said in out, said
    card = json.loads((run / "export" / "model_card.json").read_text())
    assert card["pixel_scale"] == 1 / 255  # the glyphs' input scale, recorded by the run
    assert max(card["verification"]["max_abs_diff"].values()) <= 1e-4

    assert main(["evaluate", str(run)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["map_at_r"] == pytest.approx(RunDir(run).best_epoch()[1], abs=1e-6)
    assert main(["export", str(run), "--out", str(tmp_path / "exported"), "--formats", "onnx"]) == 0
    assert json.loads((tmp_path / "exported" / "model_card.json").read_text())["pixel_scale"] == 1 / 255


def test_a_second_demo_takes_a_fresh_directory(tmp_path):
    (tmp_path / "demo").mkdir()
    assert _free_run_dir(tmp_path / "demo") == tmp_path / "demo"
    (tmp_path / "demo" / "config.json").write_text("{}")
    assert _free_run_dir(tmp_path / "demo") == tmp_path / "demo-2"


def test_demo_rejects_unknown_flags():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--loss", "arcface"])
