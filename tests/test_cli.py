"""The command line: help without TensorFlow, errors in its own terms, image folders end to end."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_dml import checks
from keras_dml.cli import _config, build_parser, describe_error, main
from keras_dml.training import RunDir

tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow-backend training")
FOLDER_SETTINGS = ["test_fraction=0.5", "backbone=small_cnn", "image_size=32", "epochs=2", "steps_per_epoch=2",
                   "classes_per_batch=3", "samples_per_class=2", "embedding_dim=8"]


@pytest.mark.parametrize("command", ["demo", "train", "evaluate", "export", "recipes"])
def test_help_on_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0 and f"usage: keras-dml {command}" in capsys.readouterr().out


def test_help_starts_no_tensorflow_and_lists_the_settings():
    script = ("import sys\nfrom keras_dml.cli import main\ntry:\n    main(['train', '--help'])\n"
              "except SystemExit:\n    pass\nprint('tensorflow loaded:', 'tensorflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "tensorflow loaded: False" in out.stdout and out.stderr == ""
    assert "learning_rate        float     default 0.001" in out.stdout
    assert "null for none" in out.stdout


def test_recipes_command_lists_and_shows_sources(capsys):
    assert main(["recipes"]) == 0 and "cars196-potential-field" in capsys.readouterr().out
    assert main(["recipes", "cub200-potential-field"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "supplement via a secondary source" in lines["warmup_epochs"] and "paper" in lines["loss.alpha"]


def test_argument_errors_are_worded_with_their_flags():
    from keras_dml.data.tfds_datasets import ArchivesNotFoundError
    from keras_dml.export.atomic import ExportExistsError

    exists = ExportExistsError("directory", "out holds a previous export", {"overwrite": True})
    assert isinstance(exists, FileExistsError) and str(exists) == "out holds a previous export; pass overwrite=True."
    assert describe_error("export", exists) == "argument --out: out holds a previous export; pass --overwrite."
    archives = ArchivesNotFoundError("manual_dir", "not prepared", {"manual_dir": "/path/to/that/folder",
                                                                    "download": True})
    assert describe_error("train", archives) == ("argument --set manual_dir: not prepared; pass --set manual_dir="
                                                 """/path/to/that/folder or --set data_options='{"download": true}'.""")
    weights = checks.ArgumentError("weights", "backbone=mlp has no pretrained weights", {"weights": None})
    assert describe_error("train", weights).endswith("pass --set weights=null.")
    assert describe_error("export", checks.ArgumentError("weights", "no final.keras")) == \
        "argument --weights: no final.keras"
    assert describe_error("train", ValueError("plain")) == "plain"


def test_repeated_set_flags_add_up():
    args = build_parser().parse_args(["train", "--recipe", "digits-triplet-easy", "--set", "epochs=1",
                                      "--set", "mixed_precision=mixed_bfloat16", "steps_per_epoch=2"])
    config = _config(args.recipe, args.set, None)
    assert (config["epochs"], config["mixed_precision"], config["steps_per_epoch"]) == (1, "mixed_bfloat16", 2)


@pytest.mark.parametrize("arguments, said", [
    (["train", "--recipe", "mnist-arcface"], "Unknown recipe 'mnist-arcface'"),
    (["train", "--recipe", "digits-triplet-easy", "--set", "epochs"], "--set takes key=value"),
    (["train", "--recipe", "digits-triplet-easy", "--set", "epochs=x"], "epochs takes an integer"),
    (["train", "--recipe", "digits-triplet-easy", "--set", "lr=0.1"], "Unknown training setting 'lr'"),
    (["train", "--recipe", "digits-triplet-easy", "--set", "dataset=no/such/folder"], "no/such/folder"),
    (["train", "--recipe", "digits-triplet-easy", "--set", "loss={\"class_name\": \"ArcFace\"}"], "ArcFace"),
    (["train", "--resume"], "--recipe"),
    (["train", "--recipe", "digits-triplet-easy", "--set", "epochs=1", "--set", "epochs=2"],
     "argument --set epochs: epochs is set twice (epochs=1 and epochs=2)"),
    (["train", "--recipe", "digits-triplet-easy", "--set", "epochs=1", "seed=1", "epochs=2"], "epochs is set twice"),
    (["train", "--recipe", "digits-triplet-easy", "--set", "data_options=[1]"],
     'data_options takes a JSON object, e.g. data_options={"by": "font"'),
    (["train", "--recipe", "digits-triplet-easy", "--set", "weights=imagenet"],
     "argument --set weights: backbone=mlp has no pretrained weights but those that ship with keras_dml (glyphs); "
     "got weights=imagenet; pass --set weights=null."),
    (["train", "--recipe", "digits-triplet-easy", "--set", 'loss={"class_name": "TripletLoss", "config": '
      '{"margin": "x"}}'], "argument --set loss: loss="),
    (["train", "--recipe", "digits-triplet-easy", "--set", 'loss={"class_name": "TripletLoss", "config": '
      '{"margin": "x"}}'], "margin must be a finite number; got margin='x'"),
    (["train", "--recipe", "digits-triplet-easy", "--set", "learning_rate=inf"], "argument --set learning_rate"),
    (["train", "--recipe", "digits-triplet-easy", "--set", "classes_per_batch=1000"], "classes_per_batch=1000"),
    (["train", "--recipe", "digits-triplet-easy", "--set", "backbone=resnet5"], "argument --set backbone"),
])
def test_errors_are_one_line_with_exit_2_and_leave_no_run_directory(tmp_path, capsys, arguments, said):
    run = tmp_path / "run"
    assert main([*arguments[:1], "--run-dir", str(run), *arguments[1:]]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 2
    assert not run.exists()


@pytest.mark.parametrize("scale", ["inf", "nan", "1e30", "0", "-1"])
def test_export_pixel_scale_is_checked_in_one_line(tmp_path, capsys, scale):
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "out"), "--pixel-scale", scale]) == 2
    err = capsys.readouterr().err
    assert err.startswith("keras-dml export: error: argument --pixel-scale: pixel_scale must be a number in")
    assert len(err.strip().splitlines()) == 2 and not (tmp_path / "out").exists()


def test_a_users_folder_is_not_touched_by_train(tmp_path, capsys):
    (tmp_path / "p" / "backup").mkdir(parents=True)
    (tmp_path / "p" / "backup" / "thesis.tex").write_text("x")
    assert main(["train", "--recipe", "digits-triplet-easy", "--run-dir", str(tmp_path / "p"),
                 "--set", "epochs=2", "steps_per_epoch=2"]) == 2
    err = capsys.readouterr().err
    assert "argument --run-dir" in err and "holds no keras-dml run" in err
    assert (tmp_path / "p" / "backup" / "thesis.tex").read_text() == "x"
    assert [p.name for p in (tmp_path / "p").rglob("*")] == ["backup", "thesis.tex"]


def test_a_folder_of_corrupt_images_is_two_lines(tmp_path, capsys):
    for c in range(3):
        (tmp_path / "bad" / f"c{c}").mkdir(parents=True)
        for i in range(3):
            (tmp_path / "bad" / f"c{c}" / f"{i}.png").write_text("not an image")
    assert main(["train", "--recipe", "digits-triplet-easy", "--run-dir", str(tmp_path / "run"), "--set",
                 f"dataset={tmp_path / 'bad'}", "test_fraction=0.5", "backbone=small_cnn", "image_size=32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no readable images" in err[0] and "warning" in err[1], err
    assert not (tmp_path / "run").exists()


@tensorflow_only
def test_a_nan_loss_exits_non_zero_and_says_so(tmp_path, capsys, monkeypatch):
    from keras_dml.training import fit

    build = fit._build_model

    def nan_model(config, description):
        model = build(config, description)
        kernel = model.embedder.get_layer("embedding").kernel
        kernel.assign(np.full(kernel.shape, np.nan, "float32"))
        return model

    monkeypatch.setattr(fit, "_build_model", nan_model)
    run = tmp_path / "run"
    assert main(["train", "--recipe", "digits-triplet-easy", "--run-dir", str(run), "--set", "epochs=2",
                 "steps_per_epoch=2"]) == 2
    err = capsys.readouterr().err
    assert "the training loss is nan at epoch 1, step 1" in err and len(err.strip().splitlines()) == 2
    assert not (run / "best.keras").exists() and not (run / "metrics.json").exists()


def test_evaluate_and_export_errors(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "--dataset" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "best.keras is missing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _image_folder(root, classes=6, images=4):
    """`root/class_<c>/<i>.png`: 36 x 44 noisy images of one colour per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        colour = rng.integers(0, 256, size=3)
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(images):
            pixels = np.clip(colour + rng.normal(0, 40, size=(36, 44, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(root / f"class_{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A run trained from the command line on an image folder of 6 classes, 3 held out."""
    root = tmp_path_factory.mktemp("folder")
    photos = _image_folder(root / "photos")
    run = root / "run"
    code = main(["train", "--recipe", "digits-triplet-easy", "--run-dir", str(run),
                 "--set", f"dataset={photos}", *FOLDER_SETTINGS])
    assert code == 0
    return run


def test_offline_pretrained_weights_say_what_to_do(tmp_path, capsys, monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/weights.h5: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    photos = _image_folder(tmp_path / "photos", classes=4, images=2)
    run = tmp_path / "run"
    assert main(["train", "--recipe", "digits-triplet-easy", "--run-dir", str(run), "--set", f"dataset={photos}",
                 "test_fraction=0.5", "backbone=mobilenetv3_small", "weights=imagenet", "image_size=32",
                 "classes_per_batch=2"]) == 2
    err = capsys.readouterr().err
    assert "could not download" in err and "--set weights=/path/to/file.h5" in err and "~/.keras/models" in err
    assert not run.exists()


def _evaluate(run, capsys, *flags):
    capsys.readouterr()
    assert main(["evaluate", str(run), *flags]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out.split("Plots written")[0]), captured.err


@tensorflow_only
def test_folder_run_records_its_dataset_and_test_split(folder_run):
    description = RunDir(folder_run).dataset()
    assert description["dataset"].endswith("photos") and description["options"] == {"test_fraction": 0.5}
    assert description["input_shape"] == [32, 32, 3] and description["pixel_scale"] == 1.0
    assert description["num_train_classes"] == 3
    test_classes = description["classes"]["test"]
    assert len(test_classes) == 3 and not set(test_classes) & set(description["classes"]["train"])
    assert sorted({path.split("/")[-2] for path in description["test_files"]}) == sorted(test_classes)
    assert len(description["test_files"]) == 12


@tensorflow_only
def test_evaluate_final_equals_the_last_epoch_the_run_recorded(folder_run, capsys):
    metrics, err = _evaluate(folder_run, capsys, "--weights", "final")
    assert "final weights" in err
    last = RunDir(folder_run).history()[-1]
    for key in ("recall@1", "recall@2", "r_precision", "map_at_r"):
        assert metrics[key] == pytest.approx(last[f"val_{key}"], abs=1e-6)
    assert metrics["num_queries"] == 12  # the 3 held-out classes x 4 images


@tensorflow_only
def test_a_truncated_model_is_reported_as_truncated(folder_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(folder_run, run)
    (run / "best.keras").write_bytes((run / "best.keras").read_bytes()[:300])
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "best.keras is not a complete .keras file" in err and "truncated" in err and "not found" not in err


@tensorflow_only
def test_resume_from_the_command_line_takes_the_runs_own_settings(folder_run, capsys):
    capsys.readouterr()
    assert main(["train", "--run-dir", str(folder_run), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "nothing to train" in out and "best (epoch" in out
    assert main(["train", "--recipe", "digits-triplet-easy", "--run-dir", str(folder_run)]) == 2
    assert capsys.readouterr().err.startswith(f"keras-dml train: error: argument --run-dir: run directory {folder_run} "
                                              "already holds a run: choose another directory, or resume it; pass "
                                              "--resume.")


@tensorflow_only
def test_evaluate_defaults_to_the_best_epoch(folder_run, tmp_path, capsys):
    metrics, err = _evaluate(folder_run, capsys, "--plots", str(tmp_path / "plots"))
    assert "best weights" in err
    assert (tmp_path / "plots" / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = RunDir(folder_run)
    best_epoch, best_value = run.best_epoch()
    assert metrics["map_at_r"] == pytest.approx(best_value, abs=1e-6)


@tensorflow_only
def test_export_takes_the_run_and_says_which_weights_and_scale(folder_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["export", str(folder_run), "--out", str(tmp_path / "out"), "--weights", "final",
                 "--formats", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "final weights" in out and "one uint8 unit = 1 (recorded in the run directory)" in out
    card = json.loads((tmp_path / "out" / "model_card.json").read_text())
    assert card["pixel_scale"] == 1.0
    assert card["metrics"]["map_at_r"] == pytest.approx(RunDir(folder_run).metrics()["map_at_r"])
    assert main(["export", str(folder_run), "--out", str(tmp_path / "out")]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
