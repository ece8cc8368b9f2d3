"""Export never deletes what it did not write, leaves the old or the new export under SIGKILL, and obeys Ctrl-C."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import pytest

from keras_dml.export import atomic, convert, export_embedder
from keras_dml.models.embedder import build_embedder

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export is TensorFlow-specific")


@pytest.fixture(scope="module")
def small_embedder():
    keras.utils.set_random_seed(0)
    return build_embedder("small_cnn", embedding_dim=16, input_shape=(8, 8, 1))


def _export(embedder, directory, **kwargs):
    return export_embedder(embedder, directory, formats="saved_model", verify=False, **kwargs)


def _listing(directory):
    return sorted(p.name for p in directory.iterdir())


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_foreign_files_are_refused_even_with_overwrite(small_embedder, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("best.keras", "config.json", "history.json"):
        (run / name).write_text("keep me")
    for target in (run, tmp_path):  # the run directory itself, or a directory holding it
        with pytest.raises(ValueError, match=r"directory=.*holds files an export did not write.*not even with "
                                             r"overwrite=True"):
            _export(small_embedder, target, overwrite=True)
    assert _listing(run) == ["best.keras", "config.json", "history.json"] and _listing(tmp_path) == ["run"]

    # A previous export with one stray file beside it is no longer only an export.
    _export(small_embedder, tmp_path / "export")
    (tmp_path / "export" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"notes\.txt"):
        _export(small_embedder, tmp_path / "export", overwrite=True)
    assert (tmp_path / "export" / "notes.txt").read_text() == "keep me"


def test_a_previous_export_is_replaced_only_with_overwrite(small_embedder, tmp_path):
    directory = tmp_path / "export"
    directory.mkdir()  # an empty directory is taken as it is
    _export(small_embedder, directory)
    with pytest.raises(FileExistsError, match="holds a previous export; pass overwrite=True"):
        _export(small_embedder, directory, include_preprocessing=False)
    assert json.loads((directory / "model_card.json").read_text())["input"]["dtype"] == "uint8"
    card = export_embedder(small_embedder, directory, formats="onnx", verify=False, overwrite=True,
                           include_preprocessing=False)
    assert card["input"]["dtype"] == "float32" and _listing(directory) == ["embedder.onnx", "model_card.json"]
    assert _listing(tmp_path) == ["export"]  # the replaced export went with the staging folder


def test_failure_mid_export_leaves_the_previous_export_as_it_was(small_embedder, tmp_path, monkeypatch):
    directory = tmp_path / "export"
    before = _export(small_embedder, directory)

    def broken_converter(*args):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(convert, "write_onnx", broken_converter)
    with pytest.raises(RuntimeError, match="converter crashed"):
        export_embedder(small_embedder, directory, overwrite=True)
    assert json.loads((directory / "model_card.json").read_text()) == before
    assert _listing(directory) == ["model_card.json", "saved_model"] and _listing(tmp_path) == ["export"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed interrupt
def test_a_swallowed_interrupt_still_aborts_the_export(small_embedder, tmp_path, monkeypatch):
    # Python only prints an exception raised in __del__ or a gc callback (JAX runs such
    # callbacks): a KeyboardInterrupt landing there is lost where it is raised.
    class InterruptedWhileCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)  # to the process, as Ctrl-C in a terminal

    converter_returned = []

    def converter_interrupted_in_a_callback(*args):
        InterruptedWhileCollected()
        converter_returned.append(True)  # the interrupt did not stop it

    directory = tmp_path / "export"
    before = _export(small_embedder, directory)
    monkeypatch.setattr(convert, "write_onnx", converter_interrupted_in_a_callback)
    with pytest.raises(KeyboardInterrupt):
        export_embedder(small_embedder, directory, overwrite=True, verify=False)
    assert converter_returned and json.loads((directory / "model_card.json").read_text()) == before
    assert _listing(tmp_path) == ["export"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_stale_staging_of_a_killed_export_is_removed_and_others_kept(small_embedder, tmp_path):
    def staging(name, owner):
        folder = tmp_path / name
        (folder / "export").mkdir(parents=True)
        if owner is not None:
            (folder / "owner.json").write_text(json.dumps(owner))
        return folder

    host = socket.gethostname()
    killed = staging(".export.0a.partial", {"host": host, "pid": _dead_pid(), "started": 0.0})
    running = staging(".export.0b.partial", {"host": host, "pid": os.getppid(), "started": 0.0})
    unmarked = staging(".export.0c.partial", None)
    other_target = staging(".exports.0d.partial", {"host": host, "pid": _dead_pid(), "started": 0.0})
    _export(small_embedder, tmp_path / "export")
    assert not killed.exists() and running.exists() and unmarked.exists() and other_target.exists()


# A child process exports over a previous export and kills itself with SIGKILL at one point.
KILLED_EXPORT = textwrap.dedent("""
    import errno, os, signal, sys
    from pathlib import Path
    import keras
    from keras_dml.export import atomic, export_embedder
    from keras_dml.export import write as writer

    target, point = Path(sys.argv[1]), sys.argv[2]
    kill = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
    if point == "writing":
        writer.write_saved_model = kill
    elif point == "after_swap":
        swap = atomic._swap_into_place
        atomic._swap_into_place = lambda *args: (swap(*args), kill())
    elif point == "between_fallback_renames":
        def no_exchange(*args):
            raise OSError(errno.ENOSYS, "renameat2 is not available")
        rename = os.rename
        def rename_then_kill_if_aside(source, destination):
            rename(source, destination)
            if Path(destination).name == atomic.PREVIOUS_DIR:
                kill()
        atomic._exchange, os.rename = no_exchange, rename_then_kill_if_aside
    inputs = keras.Input((4,))
    embedder = keras.Model(inputs, keras.layers.Dense(3)(inputs), name="new_export")
    export_embedder(embedder, target, formats="saved_model", verify=False, overwrite=True)
""")


def test_sigkill_during_an_export_leaves_the_old_or_the_new_export(small_embedder, tmp_path):
    points = {"writing": "small_cnn_embedder", "after_swap": "new_export",
              "between_fallback_renames": "small_cnn_embedder"}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    children = {}
    for point in points:
        _export(small_embedder, tmp_path / point / "export")
        children[point] = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, str(tmp_path / point / "export"),
                                            point], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for point, expected in points.items():
        output = children[point].communicate(timeout=300)[0].decode()
        assert children[point].returncode == -signal.SIGKILL, output[-2000:]
        folder = tmp_path / point
        target = folder / "export"
        if point == "between_fallback_renames":  # the old export waits in the staging folder ...
            assert not target.exists()
            atomic.remove_stale_staging(target)  # ... and the next export puts it back first
        card = json.loads((target / "model_card.json").read_text())
        assert card["model_name"] == expected and (target / "saved_model" / "saved_model.pb").is_file()
        assert any(p.name.endswith(".partial") for p in folder.iterdir()) == (point != "between_fallback_renames")
        _export(small_embedder, target, overwrite=True)
        assert _listing(folder) == ["export"]
