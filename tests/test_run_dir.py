"""The run directory under kills, tampering and users' own files: one test per way it used to go wrong."""
import json
import shutil
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_dml import training
from keras_dml.training import RunDir, RunDirError
from keras_dml.training.fit import NonFiniteLossError

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow-backend training")

CONFIG = {**training.get_recipe("digits-triplet-easy"),
          "epochs": 3, "steps_per_epoch": 2, "classes_per_batch": 5, "samples_per_class": 8}
PROBE = np.random.default_rng(0).random((6, 8, 8, 1)).astype("float32")


class _Kill(keras.callbacks.Callback):
    """Ctrl-C in the first batch of `epoch` (1-based), or just after that epoch when `after_epoch`."""

    def __init__(self, epoch, after_epoch=False):
        super().__init__()
        self.epoch, self.after_epoch, self.current = epoch, after_epoch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and not self.after_epoch:
            raise KeyboardInterrupt

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch and self.after_epoch:
            raise KeyboardInterrupt


def _embed(run, weights):
    return RunDir(run).load_embedder(weights).predict(PROBE, verbose=0)


def _epochs(run):
    return [h["epoch"] for h in RunDir(run).history()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    path = tmp_path_factory.mktemp("straight") / "run"
    _, metrics = training.train(CONFIG, path, verbose=0)
    return path, metrics


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run stopped right after committing epoch 2 of 3."""
    path = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(KeyboardInterrupt):
        training.train(CONFIG, path, callbacks=[_Kill(2, after_epoch=True)], verbose=0)
    return path


def test_kill_mid_epoch_resumes_to_the_uninterrupted_run_with_its_best(straight, tmp_path):
    path, metrics = straight
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        training.train(CONFIG, killed, callbacks=[_Kill(3)], verbose=0)
    assert _epochs(killed) == [1, 2] and not (killed / "metrics.json").exists()
    _, resumed = training.train(CONFIG, killed, resume=True, verbose=0)
    assert _epochs(killed) == [1, 2, 3]
    for key in ("recall@1", "map_at_r", "r_precision"):
        assert resumed[key] == pytest.approx(metrics[key], abs=1e-6)
    # best.keras is the best of all three epochs, those before the kill included.
    assert RunDir(killed).best_epoch() == RunDir(path).best_epoch()
    np.testing.assert_allclose(_embed(killed, "best"), _embed(path, "best"), atol=1e-5)
    np.testing.assert_allclose(_embed(killed, "final"), _embed(path, "final"), atol=1e-5)


def test_kill_during_the_final_save_is_resumable(straight, tmp_path):
    """SIGKILL while final.keras is half written: no 0-byte model, and --resume finishes without retraining."""
    path, metrics = straight
    run = tmp_path / "run"
    script = (
        "import json, os, signal, sys, keras\n"
        "from keras_dml import training\n"
        "save = keras.Model.save\n"
        "def dying_save(self, filepath, *args, **kwargs):\n"
        "    if 'final.keras' in str(filepath):\n"
        "        open(filepath, 'wb').write(b'PK')\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return save(self, filepath, *args, **kwargs)\n"
        "keras.Model.save = dying_save\n"
        "training.train(json.loads(sys.argv[1]), sys.argv[2], verbose=0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, json.dumps(CONFIG), str(run)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert not (run / "final.keras").exists() and not (run / "metrics.json").exists()
    assert _epochs(run) == [1, 2, 3]

    _, resumed = training.train(CONFIG, run, resume=True, verbose=0)
    assert _epochs(run) == [1, 2, 3]  # nothing retrained, no duplicate lines
    assert resumed["map_at_r"] == pytest.approx(metrics["map_at_r"], abs=1e-6)
    assert not list(run.glob(".*tmp*")) and not (run / "backup").exists()
    np.testing.assert_allclose(_embed(run, "final"), _embed(path, "final"), atol=1e-5)


def test_resume_on_a_finished_run_trains_nothing_and_says_so(straight, capsys):
    path, metrics = straight
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir() if p.is_file()}
    _, again = training.train(CONFIG, path, resume=True, verbose=0)
    assert "nothing to train" in capsys.readouterr().out
    assert again == metrics
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir() if p.is_file()} == before


def _tamper_state_epoch(run):
    (run / "backup" / "state.json").write_text(json.dumps({"epoch": 99, "best_epoch": 1, "val_map_at_r": 0.5}))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


TAMPERINGS = {
    "state at epoch 99": (_tamper_state_epoch, "epoch 99"),
    "weights deleted": (lambda run: (run / "backup" / "epoch-0002.weights.h5").unlink(), "missing"),
    "state deleted": (lambda run: (run / "backup" / "state.json").unlink(), "no backup/state.json"),
    "truncated weights": (lambda run: _truncate(run / "backup" / "epoch-0002.weights.h5"), "cannot be read"),
    "broken state JSON": (lambda run: (run / "backup" / "state.json").write_text("{epoch"), "not valid JSON"),
    "broken config JSON": (lambda run: (run / "config.json").write_text("{"), "not valid JSON"),
    "best.keras deleted": (lambda run: (run / "best.keras").unlink(), "best.keras"),
}


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_inconsistent_backups_are_refused_with_what_to_do(interrupted, tmp_path, tampering):
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    tamper, said = TAMPERINGS[tampering]
    tamper(run)
    with pytest.raises(RunDirError, match=said) as error:
        training.train(CONFIG, run, resume=True, verbose=0)
    assert "new --run-dir" in str(error.value)
    assert not (run / "metrics.json").exists()


def test_unfinished_run_has_no_final_model_and_says_how_to_resume(interrupted):
    with pytest.raises(RunDirError, match="--resume"):
        RunDir(interrupted).load_model("final")
    assert RunDir(interrupted).load_embedder("best").output_shape == (None, 16)


def _two_class_folder(root):
    from PIL import Image

    for c in range(2):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((12, 12, 3), 80 * c + i, "uint8")).save(root / f"class_{c}" / f"{i}.png")
    return root


PROXY_ANCHOR = {"class_name": "ProxyAnchorLoss", "config": {}}


@pytest.mark.parametrize("change, said", [
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"learning_rate": float("inf")}, "learning_rate"),
    ({"loss": {"class_name": "NoSuchLoss", "config": {}}}, "NoSuchLoss"),
    ({"dataset": "no/such/folder"}, "no/such/folder"),
    ({"loss": {"class_name": "TripletLoss", "config": {"margn": 0.1}}}, "margn"),
    ({"loss": {"class_name": "TripletLoss", "config": {"margin": "x"}}}, "margin"),
    ({"classes_per_batch": 1000}, "classes_per_batch"),
    ({"loss": {**PROXY_ANCHOR, "config": {"embedding_dim": 8}}}, "embedding_dim=8"),
    ({"loss": {**PROXY_ANCHOR, "config": {"num_classes": 3}}}, "num_classes=3"),
    ({"dataset": "FOLDER", "test_fraction": 0.5, "backbone": "small_cnn", "image_size": 12}, "classes_per_batch"),
])
def test_a_failed_start_leaves_no_directory(tmp_path, change, said):
    if change.get("dataset") == "FOLDER":
        change = {**change, "dataset": str(_two_class_folder(tmp_path / "photos"))}
    with pytest.raises((ValueError, FileNotFoundError), match=said):
        training.train({**CONFIG, **change}, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


def _contents(folder):
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


USERS_FOLDERS = {
    "a thesis in backup/": {"backup/thesis.tex": b"x"},
    "the user's best.keras": {"best.keras": b"my model"},
    "only a history.jsonl": {"history.jsonl": b'{"epoch": 1}\n'},
    "a temporary-looking file": {"sub/.notes.tmp-1": b"draft", ".a.tmp-2.keras": b"draft"},
    "a config.json": {"config.json": b"{}", "metrics.json": b"{}"},
}


@pytest.mark.parametrize("folder", USERS_FOLDERS)
@pytest.mark.parametrize("resume", [False, True])
def test_a_users_folder_is_refused_and_left_as_it_was(tmp_path, folder, resume):
    run = tmp_path / "p"
    for name, content in USERS_FOLDERS[folder].items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(content)
    before = _contents(run)
    with pytest.raises(RunDirError, match="holds no keras-dml run"):
        training.train(CONFIG, run, resume=resume, verbose=0)
    assert _contents(run) == before


def test_a_run_deletes_and_overwrites_only_what_its_manifest_names(interrupted, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    users = {"backup/thesis.tex": b"x", ".notes.tmp-7": b"draft", "logs/.plot.tmp-3.png": b"png"}
    for name, content in users.items():
        (run / name).write_bytes(content)
    (run / ".best.keras.tmp.keras").write_bytes(b"left by a kill")  # the temporary file of a recorded file
    training.train(CONFIG, run, resume=True, verbose=0)
    assert {name: (run / name).read_bytes() for name in users} == users
    assert sorted(p.name for p in (run / "backup").iterdir()) == ["thesis.tex"]  # the backup's own files went
    assert not (run / ".best.keras.tmp.keras").exists()
    manifest = json.loads((run / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(p.name for p in run.iterdir() if p.is_file() and p.name not in
                                               ("manifest.json", ".notes.tmp-7"))


def test_a_file_in_a_run_that_keras_dml_did_not_write_is_never_overwritten(interrupted, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    (run / "final.keras").write_bytes(b"the user's")
    with pytest.raises(RunDirError, match="final.keras is not a file keras-dml wrote"):
        training.train(CONFIG, run, resume=True, verbose=0)
    assert (run / "final.keras").read_bytes() == b"the user's" and not (run / "metrics.json").exists()


def _poison(model):
    """NaN weights: the loss is NaN at every step."""
    kernel = model.embedder.get_layer("embedding").kernel
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))


class _PoisonWeights(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        _poison(self.model)


def test_a_nan_loss_stops_the_run_and_says_so(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 1, step 1"):
        training.train(CONFIG, run, callbacks=[_PoisonWeights()], verbose=0)
    assert not (run / "best.keras").exists() and not (run / "metrics.json").exists()
    assert RunDir(run).history() == [] and not (run / "backup" / "state.json").exists()


def test_a_nan_loss_stops_keras_dmls_own_loop_too(tmp_path):
    import tensorflow as tf

    from keras_dml.training import data, fit, loop

    config = training.TrainConfig.from_dict(CONFIG)
    description = data.describe(config)
    model = fit._build_model(config, description)
    model.compile(optimizer="adam")
    _poison(model)
    batches, _ = data.training_batches(config, description)
    with pytest.raises(NonFiniteLossError, match="loss is nan"):
        loop.fit(model, tf.distribute.get_strategy(), batches, epochs=1, steps_per_epoch=2,
                 callbacks=[fit.StopOnNonFiniteLoss(RunDir(tmp_path))], verbose=0)


def test_a_directory_holding_a_run_needs_resume_and_the_same_settings(straight):
    path, _ = straight
    with pytest.raises(ValueError, match="already holds a run: choose another directory, or resume it; "
                                         "pass resume=True"):
        training.train(CONFIG, path, verbose=0)
    with pytest.raises(ValueError, match="learning_rate"):
        training.train({**CONFIG, "learning_rate": 0.5}, path, resume=True, verbose=0)
