"""The run directory: the one module that writes it and reads it.

    RUN/config.json      the `TrainConfig` (a resumed run must match it)
    RUN/dataset.json     what the run trained on and is evaluated on: the dataset, the
                         embedder's input shape and input scale, the test split
    RUN/history.jsonl    one line of logs per finished epoch, retrieval metrics included
    RUN/best.keras       the MetricModel at the best val MAP@R of all finished epochs
    RUN/final.keras      the MetricModel after the last epoch
    RUN/metrics.json     the final retrieval metrics; written last, it marks the run finished
    RUN/backup/          while unfinished: state.json and the last epoch's weights
    RUN/logs/            TensorBoard logs

Every file is written under a temporary name and moved into place with `os.replace`, so
a kill leaves the old file or the new one, never half of one. An epoch is committed when
`backup/state.json` names it: the history line, best.keras and the weights are written
before it, so a run killed at any point resumes from its last committed epoch, with the
best-so-far epoch and value that state names.

Example:

>>> from keras_dml.training import RunDir
>>> run = RunDir("runs/demo")  # doctest: +SKIP
>>> run.metrics()["map_at_r"], run.dataset()["pixel_scale"]  # doctest: +SKIP
(0.397, 0.00392156862745098)
>>> embedder = run.load_embedder("best")  # doctest: +SKIP
"""
import json
import os
import shutil
from pathlib import Path

import keras

WEIGHTS = ("best", "final")
MONITOR = "val_map_at_r"


class RunDirError(ValueError):
    """The run directory cannot be read or resumed as it is; the message says what to do."""


class RunDir:
    """A training run's directory: `RunDir(path)` reads it, `create` and `EpochCommit` write it."""

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    # ---- reading -------------------------------------------------------------------------

    def holds_run(self):
        return (self.path / "config.json").is_file()

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
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {list(WEIGHTS)}; got weights={weights!r}.")
        if weights == "final":
            return self.metrics() if self.is_finished() else None
        epoch, _ = self.best_epoch()
        record = next((h for h in self.history() if h["epoch"] == epoch), {})
        return {key[len("val_"):]: value for key, value in record.items() if key.startswith("val_")} or None

    def load_model(self, weights="best"):
        """The saved MetricModel (embedder and criterion) of `weights`: "best" or "final"."""
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {list(WEIGHTS)}; got weights={weights!r}.")
        import keras_dml.layers
        import keras_dml.losses
        import keras_dml.models  # noqa: F401  (the imports register keras_dml's classes)

        path = self.path / f"{weights}.keras"
        if not path.is_file() and weights == "final" and not self.is_finished():
            raise RunDirError(f"{self.path} is unfinished (no final.keras yet): resume it with "
                              f"`keras-dml train --run-dir {self.path} --resume`, or use --weights best.")
        if not path.is_file():
            raise RunDirError(f"{path} is missing: {self.path} holds no {weights} model.")
        try:
            return keras.saving.load_model(path, compile=False)
        except (OSError, ValueError) as error:
            raise RunDirError(f"{path} cannot be read ({type(error).__name__}: {error}); "
                              f"{self._start_over}") from None

    def load_embedder(self, weights="best"):
        """The embedder part of `load_model(weights)`."""
        return self.load_model(weights).embedder

    # ---- writing -------------------------------------------------------------------------

    def create(self, config, dataset):
        """Make the directory and write `config.json` and `dataset.json` (a new run)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_json("dataset.json", dataset)
        self.write_json("config.json", config)

    def write_json(self, name, value):
        _replace_atomically(self.path / name, lambda tmp: tmp.write_text(json.dumps(value, indent=2)))

    def save_model(self, model, weights):
        """`model` (a MetricModel) as `best.keras` or `final.keras`, atomically."""
        _replace_atomically(self.path / f"{weights}.keras", model.save)

    def finish(self, model, metrics):
        """Write final.keras, then metrics.json (the run is finished), then drop the backup."""
        self.save_model(model, "final")
        self.write_json("metrics.json", metrics)
        shutil.rmtree(self.path / "backup", ignore_errors=True)

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
        for path in self.path.rglob(".*.tmp-*"):
            path.unlink()

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
        _replace_atomically(self.path / "history.jsonl", lambda tmp: tmp.write_text(lines))


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
        backup = self.run.path / "backup"
        backup.mkdir(exist_ok=True)
        _replace_atomically(self.run.weights_file(number), self.model.save_weights)
        self.run.write_json("backup/state.json", {"epoch": number, "best_epoch": self.best_epoch,
                                                  MONITOR: self.best})
        for old in backup.glob("epoch-*.weights.h5"):
            if old != self.run.weights_file(number):
                old.unlink()


def _replace_atomically(path, write):
    """`write(temporary path)` next to `path`, then move it onto `path` in one step."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}{''.join(path.suffixes[-2:])}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
