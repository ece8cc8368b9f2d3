"""The run directory: the one module that writes it and reads it.

    RUN/manifest.json    what keras_dml wrote here: the only files it ever overwrites or deletes
    RUN/config.json      the `TrainConfig` (a resumed run must match it)
    RUN/dataset.json     what the run trained on and is evaluated on: the dataset, the
                         embedder's input shape and input scale, the test split
    RUN/history.jsonl    one line of logs per finished epoch, retrieval metrics included
    RUN/best.keras       the MetricModel at the best val MAP@R of all finished epochs
    RUN/final.keras      the MetricModel after the last epoch
    RUN/metrics.json     the final retrieval metrics; written last, it marks the run finished
    RUN/backup/          while unfinished: state.json and the last epoch's weights
    RUN/logs/            TensorBoard logs

Ownership: a run is created only in a new or empty folder, and `manifest.json` names
every file and folder keras_dml made in it, each recorded before it is written. keras_dml
overwrites and deletes only what the manifest names (a temporary file is named after the
file it becomes); a folder that is not empty and holds no manifest is refused, whatever
it holds, and so is a file in a run that the manifest does not name.

Every file (the manifest too) is written under a temporary name and moved into place
with `os.replace`, so a kill leaves the old file or the new one, never half of one. An
epoch is committed when `backup/state.json` names it: the history line, best.keras and
the weights are written before it, so a run killed at any point resumes from its last
committed epoch, with the best-so-far epoch and value that state names.

Example:

>>> from keras_dml.training import RunDir
>>> run = RunDir("runs/demo")  # doctest: +SKIP
>>> run.metrics()["map_at_r"], run.dataset()["pixel_scale"]  # doctest: +SKIP
(0.397, 0.00392156862745098)
>>> embedder = run.load_embedder("best")  # doctest: +SKIP
"""
import json
import os
import zipfile
from pathlib import Path

import keras

from keras_dml import checks
from keras_dml.names import WEIGHTS

MONITOR = "val_map_at_r"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "keras-dml run directory"


class RunDirError(checks.ArgumentError):
    """The run directory cannot be read, written or resumed as it is; the message says what to do."""

    def __init__(self, message):
        super().__init__("run_dir", message)


class RunDir:
    """A training run's directory: `RunDir(path)` reads it, `create` and `EpochCommit` write it."""

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    # ---- reading -------------------------------------------------------------------------

    def holds_run(self):
        """Whether the directory holds a run of keras_dml's (its manifest)."""
        return (self.path / MANIFEST).is_file()

    def check_new(self):
        """A `RunDirError` unless a new run can be created here: the folder is absent or empty."""
        if not self.path.exists():
            return
        if not self.path.is_dir():
            raise RunDirError(f"run directory {self.path} is a file; choose a new or empty directory.")
        names = sorted(p.name for p in self.path.iterdir() if p.name != _temporary(Path(MANIFEST)).name)
        if names:
            legacy = (" (a run of a keras-dml version before run manifests: it can still be evaluated and "
                      "exported, not resumed)") if "config.json" in names and "metrics.json" in names else ""
            raise RunDirError(f"run directory {self.path} is not empty and holds no keras-dml run ({names[:5]}"
                              f"{legacy}): keras-dml never writes into a folder it did not make; train into a "
                              "new or empty directory.")

    def is_finished(self):
        return (self.path / "metrics.json").is_file()

    def config(self):
        return self._read_json("config.json")

    def dataset(self):
        """`{"dataset", "input_shape", "pixel_scale", "image_size", "test_split", ...}`."""
        return self._read_json("dataset.json")

    def metrics(self):
        return self._read_json("metrics.json")

    def history(self):
        """The logs of each finished epoch, in order."""
        path = self.path / "history.jsonl"
        if not path.exists():
            return []
        try:
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise RunDirError(f"{path} is not valid JSON lines ({error}); {self._start_over}") from None

    def best_epoch(self):
        """`(epoch, val_map_at_r)` of the best finished epoch, or `(None, None)`."""
        scored = [(h[MONITOR], h["epoch"]) for h in self.history() if MONITOR in h]
        if not scored:
            return None, None
        value, epoch = max(scored, key=lambda pair: (pair[0], -pair[1]))
        return epoch, value

    def metrics_of(self, weights="best"):
        """The retrieval metrics of the `weights` model: metrics.json for "final" (None while
        unfinished), the best epoch's logged test metrics for "best" (None before any)."""
        checks.one_of(weights, "weights", WEIGHTS)
        if weights == "final":
            return self.metrics() if self.is_finished() else None
        epoch, _ = self.best_epoch()
        record = next((h for h in self.history() if h["epoch"] == epoch), {})
        return {key[len("val_"):]: value for key, value in record.items() if key.startswith("val_")} or None

    def load_model(self, weights="best"):
        """The saved MetricModel (embedder and criterion) of `weights`: "best" or "final"."""
        checks.one_of(weights, "weights", WEIGHTS)
        path = self.path / f"{weights}.keras"
        if not path.is_file() and weights == "final" and not self.is_finished():
            raise RunDirError(f"{self.path} is unfinished (no final.keras yet): resume it with "
                              f"`keras-dml train --run-dir {self.path} --resume`, or use --weights best.")
        if not path.is_file():
            raise RunDirError(f"{path} is missing: {self.path} holds no {weights} model.")
        try:
            return load_keras_file(path)
        except ValueError as error:
            raise RunDirError(f"{str(error).rstrip('.')}; {self._start_over}") from None

    def load_embedder(self, weights="best"):
        """The embedder part of `load_model(weights)`."""
        return self.load_model(weights).embedder

    # ---- writing: only what the manifest names ------------------------------------------

    def create(self, config, dataset):
        """Make the directory, its manifest, `config.json` and `dataset.json` (a new run, in a new or empty folder)."""
        self.check_new()
        self.path.mkdir(parents=True, exist_ok=True)
        self._write_manifest({"format": MANIFEST_FORMAT, "files": [], "directories": []})
        self.write_json("dataset.json", dataset)
        self.write_json("config.json", config)

    def write_json(self, name, value):
        self.write(name, lambda tmp: tmp.write_text(json.dumps(value, indent=2)))

    def save_model(self, model, weights):
        """`model` (a MetricModel) as `best.keras` or `final.keras`, atomically."""
        self.write(f"{weights}.keras", model.save)

    def write(self, name, write):
        """`write(temporary path)`, then the file replaces `RUN/name`: recorded in the manifest first.

        A `RunDirError` when `RUN/name` exists and the manifest does not name it (keras_dml
        did not write it).
        """
        path = self.path / name
        manifest = self._manifest()
        if name not in manifest["files"]:
            if path.exists() or path.is_symlink():
                raise RunDirError(f"{path} is not a file keras-dml wrote (the manifest does not name it): "
                                  f"keras-dml never overwrites it; move it away, or {self._start_over}")
            self._write_manifest({**manifest, "files": sorted([*manifest["files"], name])})
        _replace_atomically(path, write)

    def remove(self, name):
        """Delete `RUN/name` if the manifest names it (nothing else, ever), then forget it."""
        manifest = self._manifest()
        if name in manifest["files"]:
            (self.path / name).unlink(missing_ok=True)
            self._write_manifest({**manifest, "files": [f for f in manifest["files"] if f != name]})

    def make_directory(self, name):
        """`RUN/name` as a folder: made and recorded when absent (a folder already there stays the user's)."""
        path = self.path / name
        manifest = self._manifest()
        if not path.is_dir():
            if name not in manifest["directories"]:
                self._write_manifest({**manifest, "directories": sorted([*manifest["directories"], name])})
            path.mkdir()
        return path

    def finish(self, model, metrics):
        """Write final.keras, then metrics.json (the run is finished), then drop the backup keras_dml wrote."""
        self.save_model(model, "final")
        self.write_json("metrics.json", metrics)
        for name in self._manifest()["files"]:
            if name.startswith("backup/"):
                self.remove(name)
        backup = self.path / "backup"
        if "backup" in self._manifest()["directories"] and backup.is_dir() and not any(backup.iterdir()):
            backup.rmdir()

    # ---- resuming ------------------------------------------------------------------------

    def committed_epoch(self, epochs):
        """The last committed epoch (0 for none), after checking backup, history and best.keras agree.

        Cuts the history back to that epoch (a line of the epoch a kill interrupted may
        be there). A `RunDirError` says what to do when the pieces contradict each other.
        """
        state_file = self.path / "backup" / "state.json"
        history = self.history()
        if not state_file.exists():
            if len(history) > 1:
                raise RunDirError(f"{self.path} has {len(history)} epochs of history but no backup/state.json: "
                                  f"it cannot be resumed; {self._start_over}")
            self._write_history([])
            return 0
        state = self._read_json("backup/state.json")
        epoch = state.get("epoch")
        if not isinstance(epoch, int) or not 1 <= epoch <= epochs:
            raise RunDirError(f"{state_file} names epoch {epoch!r} of a run of {epochs} epochs: "
                              f"it cannot be resumed; {self._start_over}")
        if len(history) not in (epoch, epoch + 1) or [h.get("epoch") for h in history[:epoch]] != list(
                range(1, epoch + 1)):
            raise RunDirError(f"{state_file} names epoch {epoch} but history.jsonl has epochs "
                              f"{[h.get('epoch') for h in history]}: it cannot be resumed; {self._start_over}")
        if not self.weights_file(epoch).is_file():
            raise RunDirError(f"{self.weights_file(epoch)} is missing: {self.path} cannot be resumed; "
                              f"{self._start_over}")
        if state.get("best_epoch") is not None and not (self.path / "best.keras").is_file():
            raise RunDirError(f"{self.path / 'best.keras'} is missing: {self.path} cannot be resumed; "
                              f"{self._start_over}")
        self._write_history(history[:epoch])
        return epoch

    def restore(self, model, epoch):
        """Load the weights (and optimizer state) committed at `epoch` into `model`."""
        path = self.weights_file(epoch)
        try:
            model.load_weights(path)
        except (OSError, ValueError) as error:
            raise RunDirError(f"{path} cannot be read ({type(error).__name__}: {error}); "
                              f"{self._start_over}") from None

    def weights_file(self, epoch):
        return self.path / "backup" / f"epoch-{epoch:04d}.weights.h5"

    def remove_temporary_files(self):
        """Delete the temporary files a killed write left: those of the files the manifest names."""
        for name in [MANIFEST, *self._manifest()["files"]]:
            _temporary(self.path / name).unlink(missing_ok=True)

    @property
    def _start_over(self):
        return (f"train again in a new --run-dir, or move {self.path} away first "
                "(keras-dml never deletes a run directory).")

    def _read_json(self, name):
        path = self.path / name
        if not path.is_file():
            raise RunDirError(f"{path} is missing: {self.path} is not a finished keras-dml run directory.")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise RunDirError(f"{path} is not valid JSON ({error}); {self._start_over}") from None

    def _write_history(self, history):
        lines = "".join(json.dumps(record) + "\n" for record in history)
        self.write("history.jsonl", lambda tmp: tmp.write_text(lines))

    def _manifest(self):
        path = self.path / MANIFEST
        if not path.is_file():
            raise RunDirError(f"{self.path} holds no keras-dml run (no {MANIFEST}): keras-dml writes only into "
                              "run directories it made.")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise RunDirError(f"{path} is not valid JSON ({error}); {self._start_over}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT or not all(
                isinstance(manifest.get(key), list) and all(isinstance(n, str) for n in manifest[key])
                for key in ("files", "directories")):
            raise RunDirError(f"{path} is not a keras-dml run manifest; {self._start_over}")
        return manifest

    def _write_manifest(self, manifest):
        _replace_atomically(self.path / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))


class EpochCommit(keras.callbacks.Callback):
    """Commits each finished epoch to the run directory, in an order a kill cannot break.

    1. the epoch's logs are added to `history.jsonl`;
    2. `best.keras` is replaced when `val_map_at_r` beats every earlier epoch's, the
       epochs before a resume included;
    3. the weights and optimizer state go to `backup/epoch-N.weights.h5`;
    4. `backup/state.json` names epoch N: the commit. The previous weights file goes.

    Put it after the callback that computes `val_map_at_r`.
    """

    def __init__(self, run_dir):
        super().__init__()
        self.run = run_dir
        self.best_epoch, self.best = run_dir.best_epoch()

    def on_epoch_end(self, epoch, logs=None):
        number = epoch + 1
        record = {"epoch": number, **{k: float(v) for k, v in (logs or {}).items()}}
        self.run._write_history([*self.run.history()[: number - 1], record])
        if MONITOR in record and (self.best is None or record[MONITOR] > self.best):
            self.run.save_model(self.model, "best")
            self.best_epoch, self.best = number, record[MONITOR]
        self.run.make_directory("backup")
        weights = self.run.weights_file(number).relative_to(self.run.path).as_posix()
        self.run.write(weights, self.model.save_weights)
        self.run.write_json("backup/state.json", {"epoch": number, "best_epoch": self.best_epoch,
                                                  MONITOR: self.best})
        for old in self.run._manifest()["files"]:
            if old.startswith("backup/epoch-") and old != weights:
                self.run.remove(old)


def load_keras_file(path):
    """The model in the `.keras` file `path`; a `ValueError` that says so when it is not a complete one."""
    import keras_dml.layers
    import keras_dml.losses
    import keras_dml.models  # noqa: F401  (the imports register keras_dml's classes)

    path = Path(path)
    if not zipfile.is_zipfile(path):  # Keras reports a truncated archive as "File not found"
        raise ValueError(f"{path} is not a complete .keras file (a .keras file is a zip archive; this one is "
                         "truncated or damaged).")
    try:
        return keras.saving.load_model(path, compile=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} cannot be read ({type(error).__name__}: {error}).") from None


def _temporary(path):
    """The temporary file that becomes `path`: hidden, same folder, same suffixes (Keras checks them)."""
    return path.with_name(f".{path.name}.tmp{''.join(path.suffixes[-2:])}")


def _replace_atomically(path, write):
    """`write(temporary path)` next to `path`, then move it onto `path` in one step."""
    path = Path(path)
    temporary = _temporary(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
