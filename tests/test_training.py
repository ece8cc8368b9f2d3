"""Recipes, settings, `train` into a run directory, warm-up, strategies and mixed precision."""
import json

import keras
import numpy as np
import pytest

from keras_dml import checks, names, training
from keras_dml.training import RunDir, TrainConfig, recipes

tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow-backend training")


def _digits(recipe="digits-triplet-easy", **changes):
    config = recipes.get_recipe(recipe)
    config.update({"epochs": 2, "steps_per_epoch": 3, "classes_per_batch": 5, "samples_per_class": 8, **changes})
    return config


def test_every_benchmark_method_has_a_recipe_per_dataset():
    for dataset in ("cars196", "cub200", "sop", "digits"):
        for method in recipes.METHODS:
            TrainConfig.from_dict(recipes.get_recipe(f"{dataset}-{method}"))  # every recipe passes the checks
    assert recipes.get_recipe("sop-potential-field")["loss"]["config"]["proxy_targets"] == "batch"
    with pytest.raises(ValueError, match="cars196-potential-field"):
        recipes.get_recipe("cars-potential")


def test_potential_field_recipes_follow_the_supplement_with_sources():
    cars, cub, sop = (recipes.get_recipe(f"{d}-potential-field") for d in ("cars196", "cub200", "sop"))
    assert cars["classes_per_batch"] * cars["samples_per_class"] == 100 == sop["classes_per_batch"] * 2
    assert (cars["epochs"], cars["warmup_epochs"], cars["learning_rate"], cars["proxy_lr_multiplier"]) == \
        (200, 1, 1e-4, 100.0)
    assert (cars["weight_decay"], cub["weight_decay"]) == (1e-4, 5e-4)
    assert (cars["loss"]["config"]["proxies_per_class"], sop["loss"]["config"]["proxies_per_class"]) == (15, 2)
    sources = recipes.sources("cub200-potential-field")
    assert sources["loss.alpha"] == recipes.PAPER and sources["learning_rate"] == recipes.SUPPLEMENT
    assert sources["classes_per_batch"].startswith(recipes.OURS)
    assert set(cars) - {"dataset", "loss"} <= set(sources)  # every setting has its source


def test_dinov2_potential_field_recipes_are_the_papers_dino_setting_on_keras_hub():
    for dataset in ("cars196", "cub200", "sop"):
        recipe = recipes.get_recipe(f"{dataset}-dinov2-potential-field")
        TrainConfig.from_dict(recipe)
        base = recipes.get_recipe(f"{dataset}-potential-field")
        assert (recipe["backbone"], recipe["embedding_dim"], recipe["weights"]) == ("dinov2_small", 384, "pretrained")
        assert recipe["loss"] == base["loss"] and recipe["epochs"] == base["epochs"]
        assert recipe["image_size"] % 14 == 0
    sources = recipes.sources("cub200-dinov2-potential-field")
    assert sources["embedding_dim"].startswith(recipes.PAPER) and sources["backbone"].startswith(recipes.OURS)


def test_settings_parse_as_their_type_and_bad_ones_name_the_setting():
    assert TrainConfig.parse("dataset", "photos/cats") == "photos/cats"
    assert TrainConfig.parse("weights", "null") is None
    assert TrainConfig.parse("learning_rate", "3e-5") == 3e-5
    assert TrainConfig.parse("freeze_batchnorm", "false") is False
    assert TrainConfig.parse("jit_compile", "auto") == "auto"
    assert TrainConfig.parse("loss", '{"class_name": "TripletLoss", "config": {}}')["class_name"] == "TripletLoss"
    with pytest.raises(ValueError, match="epochs takes an integer"):
        TrainConfig.parse("epochs", "many")
    with pytest.raises(ValueError, match="Unknown training setting 'epochz'"):
        TrainConfig.parse("epochz", "3")
    with pytest.raises(ValueError, match="Unknown training setting"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match='data_options takes a JSON object, e.g. data_options={"by": "font"'):
        TrainConfig.parse("data_options", "[1]")
    for bad, name in [({"warmup_epochs": 5, "epochs": 5}, "warmup_epochs"),
                      ({"test_fraction": 1.0}, "test_fraction"), ({"split_seed": "a"}, "split_seed"),
                      ({"data_options": []}, "data_options"), ({"weight_decay": 1e-4, "optimizer": "adam"}, "weight_decay"),
                      ({"optimizer": "sgdx"}, "optimizer"), ({"loss": {"class": "TripletLoss"}}, "loss"),
                      ({"learning_rate": float("inf")}, "learning_rate"), ({"learning_rate": float("nan")}, "learning_rate"),
                      ({"proxy_lr_multiplier": float("inf")}, "proxy_lr_multiplier"),
                      ({"weight_decay": float("inf"), "optimizer": "adamw"}, "weight_decay"),
                      ({"backbone": "resnet5"}, "backbone"), ({"pooling": "mean"}, "pooling"),
                      ({"weights": "imagenet", "backbone": "small_cnn"}, "weights"), ({"epochz": 1}, "epochz")]:
        with pytest.raises(checks.ArgumentError, match=name) as error:
            TrainConfig.from_dict(bad)
        assert error.value.name == name
    assert "learning_rate" in TrainConfig.describe_settings()


def test_the_settings_help_lists_the_names_the_checks_take():
    help_lines = {line.split()[0]: line for line in TrainConfig.describe_settings().splitlines()}
    for setting, valid in [("dataset", names.DATASETS), ("backbone", names.BACKBONES), ("pooling", names.POOLINGS),
                           ("optimizer", names.OPTIMIZERS), ("strategy", names.STRATEGIES)]:
        for name in valid:
            assert name in help_lines[setting], (setting, name)
            TrainConfig.from_dict({setting: name, **({"pooling": "avg"} if setting == "backbone" else {})})
    assert "glyphs" in help_lines["dataset"]


def test_every_recipe_loss_builds_through_losses_get():
    from keras_dml import losses

    for name, recipe in recipes.RECIPES.items():
        loss = losses.get(recipe["loss"], num_classes=5, embedding_dim=recipe["embedding_dim"])
        assert type(loss).__name__ == recipe["loss"]["class_name"], name
    density = losses.get(recipes.get_recipe("digits-density-triplet")["loss"])
    assert type(density.base_loss).__name__ == "TripletLoss"


@tensorflow_only
def test_train_writes_a_complete_run_directory(tmp_path):
    model, metrics = training.train(_digits(), tmp_path / "run", verbose=0)
    run = RunDir(tmp_path / "run")
    for name in ("config.json", "dataset.json", "history.jsonl", "best.keras", "final.keras", "metrics.json"):
        assert (run.path / name).exists(), name
    assert not (run.path / "backup").exists()
    assert [h["epoch"] for h in run.history()] == [1, 2] and "val_map_at_r" in run.history()[0]
    assert run.metrics()["map_at_r"] == pytest.approx(metrics["map_at_r"])
    assert run.history()[-1]["val_map_at_r"] == pytest.approx(metrics["map_at_r"])
    assert run.dataset()["pixel_scale"] == 1 / 255 and run.dataset()["input_shape"] == [8, 8, 1]
    assert run.dataset()["classes"]["test"] == ["5", "6", "7", "8", "9"]
    assert json.loads((run.path / "config.json").read_text()) == TrainConfig.from_dict(_digits()).to_dict()
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(run.load_embedder("final").predict(x, verbose=0),
                               model.embedder.predict(x, verbose=0), atol=1e-6)


@tensorflow_only
def test_warmup_epochs_train_the_head_with_the_backbone_frozen(tmp_path):
    class Snapshots(keras.callbacks.Callback):
        """Backbone and head kernels before training and after each epoch."""

        def __init__(self):
            super().__init__()
            self.weights = []

        def _snapshot(self):
            embedder = self.model.embedder
            self.weights.append([np.array(embedder.get_layer("backbone").weights[0]),
                                 np.array(embedder.get_layer("embedding").kernel)])

        def on_train_begin(self, logs=None):
            if not self.weights:
                self._snapshot()

        def on_epoch_end(self, epoch, logs=None):
            self._snapshot()

    snapshots = Snapshots()
    model, _ = training.train(_digits("digits-potential-field", epochs=2, warmup_epochs=1), tmp_path / "run",
                              callbacks=[snapshots], verbose=0)
    (backbone_0, head_0), (backbone_1, head_1), (backbone_2, head_2) = snapshots.weights
    np.testing.assert_array_equal(backbone_1, backbone_0)  # frozen in the warm-up epoch
    assert not np.array_equal(head_1, head_0)  # while the head trains
    assert not np.array_equal(backbone_2, backbone_1)  # and trains after it
    assert model.embedder.get_layer("backbone").trainable
    assert [h["epoch"] for h in RunDir(tmp_path / "run").history()] == [1, 2]


@tensorflow_only
@pytest.mark.parametrize("method", ["proxy-anchor", "density-triplet", "pddm", "multi-similarity"])
def test_every_digits_recipe_trains(tmp_path, method):  # potential-field: the warm-up test
    _, metrics = training.train(_digits(f"digits-{method}", epochs=1, steps_per_epoch=2), tmp_path / method, verbose=0)
    assert 0.0 < metrics["recall@1"] <= 1.0


@tensorflow_only
def test_mirrored_strategy_run_and_strategy_errors(tmp_path):
    _, metrics = training.train(_digits(epochs=1, steps_per_epoch=2, strategy="mirrored"), tmp_path / "m", verbose=0)
    assert 0.0 < metrics["recall@1"] <= 1.0
    with pytest.raises(ValueError, match="multiworker"):
        training.train(_digits(strategy="multiworker"), tmp_path / "w", verbose=0)
    with pytest.raises(ValueError, match="strategy"):
        training.train(_digits(strategy="tpu-pod"), tmp_path / "t", verbose=0)
    assert not (tmp_path / "w").exists() and not (tmp_path / "t").exists()


@tensorflow_only
def test_mixed_precision_run_restores_the_global_policy(tmp_path):
    before = keras.config.dtype_policy().name
    model, metrics = training.train(_digits(epochs=1, steps_per_epoch=2, mixed_precision="mixed_bfloat16"),
                                    tmp_path / "mp", verbose=0)
    assert model.embedder.dtype_policy.name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before
    assert 0.0 < metrics["recall@1"] <= 1.0
