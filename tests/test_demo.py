"""The one-command main job, end to end, with fewer epochs."""
import pytest

from keras_dml.cli import build_parser, run_demo


@pytest.mark.skipif(__import__("keras").backend.backend() != "tensorflow", reason="TensorFlow backend")
def test_demo_raises_held_out_recall_at_1():
    _, before, after = run_demo(epochs=8, seed=0, verbose=0)
    assert after["recall@1"] > before["recall@1"]
    assert after["map_at_r"] > before["map_at_r"]
    assert before["num_queries"] == after["num_queries"] == 896


def test_demo_rejects_unknown_loss():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--loss", "arcface"])


@pytest.mark.skipif(__import__("keras").backend.backend() != "tensorflow", reason="TensorFlow backend")
def test_demo_command_ends_with_a_verified_export(tmp_path, capsys):
    import json

    from keras_dml.cli import main

    assert main(["demo", "--epochs", "1", "--export-dir", str(tmp_path / "export")]) == 0
    out = capsys.readouterr().out
    assert "after training" in out and "parity with Keras" in out
    card = json.loads((tmp_path / "export" / "model_card.json").read_text())
    assert max(card["verification"]["max_abs_diff"].values()) <= 1e-4
    assert (tmp_path / "export" / "embedder.onnx").is_file()
