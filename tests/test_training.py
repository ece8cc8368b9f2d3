"""Recipes, `train` into a run directory, kill-and-resume equivalence, and the CLI."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_dml import recipes, training
from keras_dml.cli import build_parser, main

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow-backend training")


def _digits(recipe="digits-triplet-easy", **changes):
    config = recipes.get_recipe(recipe)
    config.update({"epochs": 3, "steps_per_epoch": 4, "classes_per_batch": 5, "samples_per_class": 8, **changes})
    return config


class _InterruptAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def test_every_benchmark_method_has_a_recipe_per_dataset():
    for dataset in ("cars196", "cub200", "sop", "digits"):
        for method in recipes.METHODS:
            assert f"{dataset}-{method}" in recipes.RECIPES
    assert recipes.get_recipe("sop-potential-field")["loss"]["params"]["proxy_targets"] == "batch"
    with pytest.raises(ValueError, match="cars196-potential-field"):
        recipes.get_recipe("cars-potential")


def test_train_writes_a_complete_run_directory(tmp_path):
    model, metrics = training.train(_digits(epochs=2), tmp_path / "run", verbose=0)
    run = tmp_path / "run"
    for name in ("config.json", "history.jsonl", "best.keras", "embedder.keras", "metrics.json"):
        assert (run / name).exists(), name
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and "val_map_at_r" in history[0]
    assert json.loads((run / "metrics.json").read_text())["map_at_r"] == pytest.approx(metrics["map_at_r"])
    reloaded = keras.saving.load_model(run / "embedder.keras")
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.embedder.predict(x, verbose=0), atol=1e-6)

    # The run directory feeds the evaluate and export commands.
    assert main(["evaluate", str(run), "--dataset", "digits", "--plots", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["export", str(run), "--out", str(tmp_path / "export"), "--pixel-scale", "0.0625"]) == 0
    card = json.loads((tmp_path / "export" / "model_card.json").read_text())
    assert card["metrics"]["map_at_r"] == pytest.approx(metrics["map_at_r"])


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    config = _digits()
    _, straight = training.train(config, tmp_path / "straight", verbose=0)
    with pytest.raises(KeyboardInterrupt):
        training.train(config, tmp_path / "killed", callbacks=[_InterruptAfter(2)], verbose=0)
    assert not (tmp_path / "killed" / "metrics.json").exists()
    _, resumed = training.train(config, tmp_path / "killed", resume=True, verbose=0)
    for key in ("recall@1", "map_at_r", "r_precision"):
        assert resumed[key] == pytest.approx(straight[key], abs=1e-6)
    history = [json.loads(line)["epoch"] for line in (tmp_path / "killed" / "history.jsonl").read_text().splitlines()]
    assert history == [1, 2, 3]


def test_run_directory_guards(tmp_path):
    config = _digits(epochs=1)
    training.train(config, tmp_path / "run", verbose=0)
    with pytest.raises(ValueError, match="resume"):
        training.train(config, tmp_path / "run", verbose=0)
    with pytest.raises(ValueError, match="learning_rate"):
        training.train({**config, "learning_rate": 0.5}, tmp_path / "run", resume=True, verbose=0)
    with pytest.raises(ValueError, match="Unknown training setting"):
        training.TrainConfig.from_dict({"epochz": 3})


@pytest.mark.parametrize("method", ["potential-field", "proxy-anchor", "density-triplet", "pddm", "multi-similarity"])
def test_every_digits_recipe_trains(tmp_path, method):
    _, metrics = training.train(_digits(f"digits-{method}", epochs=1, steps_per_epoch=2), tmp_path / method, verbose=0)
    assert 0.0 < metrics["recall@1"] <= 1.0


def test_mirrored_strategy_run_and_strategy_errors(tmp_path):
    _, metrics = training.train(_digits(epochs=1, steps_per_epoch=2, strategy="mirrored"), tmp_path / "m", verbose=0)
    assert 0.0 < metrics["recall@1"] <= 1.0
    with pytest.raises(ValueError, match="multiworker"):
        training.train(_digits(strategy="multiworker"), tmp_path / "w", verbose=0)
    with pytest.raises(ValueError, match="strategy must be one of"):
        training.train(_digits(strategy="tpu-pod"), tmp_path / "t", verbose=0)


def test_mixed_precision_run_restores_the_global_policy(tmp_path):
    before = keras.config.dtype_policy().name
    model, metrics = training.train(_digits(epochs=1, steps_per_epoch=2, mixed_precision="mixed_bfloat16"),
                                    tmp_path / "mp", verbose=0)
    assert model.embedder.dtype_policy.name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before
    assert 0.0 < metrics["recall@1"] <= 1.0


def test_bad_loss_spec_and_optimizer():
    with pytest.raises(ValueError, match="Unknown loss class"):
        training.build_criterion({"class": "ArcFace"}, 5, 16)
    with pytest.raises(ValueError, match="optimizer"):
        training.build_optimizer(training.TrainConfig(optimizer="sgdx"))


def test_cli_recipes_command():
    out = subprocess.run([sys.executable, "-m", "keras_dml.cli", "recipes"], capture_output=True, text=True)
    assert out.returncode == 0 and "cars196-potential-field" in out.stdout


@pytest.mark.parametrize("command", ["demo", "train", "evaluate", "export", "recipes"])
def test_cli_help_on_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0 and f"usage: keras-dml {command}" in capsys.readouterr().out


def test_cli_train_rejects_unknown_recipe_and_bad_override(tmp_path):
    with pytest.raises(ValueError, match="valid recipes"):
        main(["train", "--recipe", "mnist-arcface", "--run-dir", str(tmp_path / "r")])
    with pytest.raises(SystemExit, match="key=value"):
        main(["train", "--recipe", "digits-triplet-easy", "--run-dir", str(tmp_path / "r"), "--set", "epochs"])
