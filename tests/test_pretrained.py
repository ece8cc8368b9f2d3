"""The shipped pretrained weights: their hash and model card, `weights="glyphs"`, and every bad input."""
import json
import os
import shutil

import keras
import numpy as np
import pytest

from keras_dml.data import load_glyphs
from keras_dml.data.glyphs import DEFAULT_CHARACTERS
from keras_dml.evaluation import retrieval_metrics
from keras_dml.models import build_embedder, pretrained
from keras_dml.training import pretrain, recipes

SHAPE = (32, 32, 1)


@pytest.fixture
def weights_copy(tmp_path, monkeypatch):
    """A copy of the shipped weights folder that the test may break."""
    folder = tmp_path / "weights"
    shutil.copytree(pretrained.WEIGHTS_DIR, folder)
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", str(folder))
    return folder


def test_the_shipped_file_matches_its_model_card():
    path, card_path = pretrained.paths("glyphs")
    card = pretrained.model_card("glyphs")
    assert os.path.basename(path) == card["file"] and os.path.basename(card_path) == "small_resnet_glyphs.json"
    assert pretrained.file_sha256(path) == card["sha256"] and os.path.getsize(path) == card["bytes"]
    assert os.path.getsize(path) < 3_000_000
    assert card["recipe"] == "glyphs-pretrain" and card["command"] == pretrained.REBUILD_COMMAND
    assert card["settings"]["seed"] == recipes.PRETRAINING["glyphs-pretrain"]["seed"]
    assert len(card["characters"]) == card["num_characters"] >= 500
    assert not set(card["characters"]) & set(DEFAULT_CHARACTERS)
    assert len(card["fonts_sha256"]) == 64 and card["fonts"] and card["epochs"] >= 1
    assert 0.0 < card["train_accuracy"] <= 1.0 and 0.0 < card["heldout_render_accuracy"] <= 1.0


def test_weights_glyphs_loads_the_backbone_and_a_new_head():
    embedder = build_embedder("small_resnet", 16, input_shape=SHAPE, weights="glyphs")
    path, _ = pretrained.paths("glyphs")
    with np.load(path) as arrays:
        for layer in embedder.get_layer("backbone").layers:
            for variable in layer.weights:
                np.testing.assert_array_equal(variable.numpy(), arrays[f"{layer.name}/{variable.name}"])
    assert embedder.output_shape == (None, 16)
    # Any side of at least 16 takes the same weights (all convolutions).
    assert build_embedder("small_resnet", 8, input_shape=(24, 40, 1), weights="glyphs").output_shape == (None, 8)


def test_pretrained_start_retrieves_held_out_characters_better_than_random():
    images, labels = load_glyphs("test", renders=1)
    keep = labels < 12  # a few held-out characters
    images, labels = images[keep], labels[keep]
    scores = {}
    for weights in (None, "glyphs"):
        keras.utils.set_random_seed(0)
        embedder = build_embedder("small_resnet", 32, input_shape=SHAPE, weights=weights)
        scores[weights] = retrieval_metrics(embedder.predict(images, verbose=0), labels, k=(1,))["recall@1"]
    assert scores["glyphs"] > scores[None] + 0.1, scores


def test_save_weights_gives_the_same_bytes_for_the_same_weights(tmp_path):
    net = build_embedder("small_resnet", 4, input_shape=SHAPE, weights="glyphs").get_layer("backbone")
    pretrained.save_weights(net, tmp_path / "a.npz")
    pretrained.save_weights(net, tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert pretrained.file_sha256(tmp_path / "a.npz") == pretrained.model_card("glyphs")["sha256"]


@pytest.mark.parametrize("backbone, shape", [("small_cnn", SHAPE), ("mlp", SHAPE), ("resnet50", (32, 32, 3)),
                                             ("small_resnet", (32, 32, 3)), ("small_resnet", (8, 8, 1))])
def test_weights_glyphs_that_do_not_fit_name_what_fits(backbone, shape):
    with pytest.raises(ValueError, match=r"weights='glyphs' fit backbone='small_resnet' with "
                                         r"input_shape=\(height, width, 1\).*at least 16"):
        build_embedder(backbone, 8, input_shape=shape, weights="glyphs")


def test_other_weights_for_small_backbones_are_refused():
    with pytest.raises(ValueError, match="backbone='small_resnet'.*'glyphs'.*weights='imagenet'"):
        build_embedder("small_resnet", 8, input_shape=SHAPE, weights="imagenet")


def test_a_missing_weights_file_names_it_and_the_rebuild_command(weights_copy):
    os.remove(weights_copy / "small_resnet_glyphs.npz")
    with pytest.raises(FileNotFoundError, match=r"small_resnet_glyphs\.npz.*missing.*python -m keras_dml\.training\.pretrain"):
        build_embedder("small_resnet", 8, input_shape=SHAPE, weights="glyphs")


def test_a_corrupted_weights_file_names_it_and_the_rebuild_command(weights_copy):
    path = weights_copy / "small_resnet_glyphs.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"small_resnet_glyphs\.npz.*SHA-256.*python -m keras_dml\.training\.pretrain"):
        build_embedder("small_resnet", 8, input_shape=SHAPE, weights="glyphs")


def test_a_replaced_file_whose_card_was_updated_but_whose_arrays_do_not_fit(weights_copy):
    path, card_path = weights_copy / "small_resnet_glyphs.npz", weights_copy / "small_resnet_glyphs.json"
    np.savez(path, other=np.zeros(3))
    card = json.loads(card_path.read_text())
    card["sha256"] = pretrained.file_sha256(path)
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"small_resnet_glyphs\.npz.*do not match.*keras_dml\.training\.pretrain"):
        build_embedder("small_resnet", 8, input_shape=SHAPE, weights="glyphs")


def test_a_missing_model_card_names_it(weights_copy):
    os.remove(weights_copy / "small_resnet_glyphs.json")
    with pytest.raises(ValueError, match=r"small_resnet_glyphs\.json.*model card.*keras_dml\.training\.pretrain"):
        build_embedder("small_resnet", 8, input_shape=SHAPE, weights="glyphs")


def test_the_pretraining_command_refuses_unknown_settings_before_any_work(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pretrain.main(["--set", "epoch=3"])
    assert exit_info.value.code == 2
    assert "Unknown pretraining setting(s) ['epoch']" in capsys.readouterr().err
