"""keras_dml's training loop on 2 worker processes (`MultiWorkerMirroredStrategy` over
loopback ports) and on 2 logical CPUs (`MirroredStrategy`), XLA on: the same losses and
held-out metrics as one process training on the same global batches, and a worker
killed after epoch 1 resumes to the same result.

Each run is a subprocess (a multi-worker strategy or logical devices must be set up
before TensorFlow starts). The runs are small (digits, mlp, 2 epochs of 3 steps) and
started together, so that they share the wait on a loaded machine.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 900  # seconds per run: two TensorFlow processes on a shared 2-core machine

CONFIG = {**__import__("keras_dml.training", fromlist=["get_recipe"]).get_recipe("digits-triplet-easy"),
          "epochs": 2, "steps_per_epoch": 3, "classes_per_batch": 4, "samples_per_class": 8,
          "jit_compile": True}

# argv: config JSON, run directory, resume (0/1), epoch after which task 1 kills itself (-1: none).
SCRIPT = """
import json, os, signal, sys
if os.environ.get("LOGICAL_CPUS"):
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from keras_dml import training

config, run_dir, resume, kill_after = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
task = json.loads(os.environ.get("TF_CONFIG", '{"task": {"index": 0}}'))["task"]["index"]
step_losses = []


class Record(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        step_losses.append(float(logs["loss"]))  # the epoch's running mean, as fit logs it

    def on_epoch_end(self, epoch, logs=None):
        if task == 1 and epoch == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)


_, metrics = training.train(config, run_dir, resume=resume, callbacks=[Record()], verbose=0)
print("RESULT " + json.dumps({"task": task, "metrics": metrics, "step_losses": step_losses}))
"""


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start(config, run_dir, resume=False, kill_after=-1, **env):
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
                   "TMPDIR": str(Path(run_dir).parent), **env}  # where the other workers write their copies
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), json.dumps(config), str(run_dir), str(int(resume)),
         str(kill_after)], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_workers(run_dir, resume=False, kill_after=-1):
    workers = [f"localhost:{port}" for port in free_ports(2)]
    return [start({**CONFIG, "strategy": "multiworker"}, run_dir, resume, kill_after,
                  TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}))
            for i in range(2)]


def result_of(process):
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, stderr[-4000:]
    (line,) = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Results of: one process, 2 workers, 2 logical CPUs; and the run directories."""
    root = tmp_path_factory.mktemp("runs")
    processes = {"single": [start(CONFIG, root / "single")],
                 "workers": start_workers(root / "workers"),
                 "mirrored": [start({**CONFIG, "strategy": "mirrored"}, root / "mirrored", LOGICAL_CPUS="1")]}
    try:
        yield {name: [result_of(p) for p in group] for name, group in processes.items()}, root
    finally:
        for group in processes.values():
            for process in group:
                process.kill()
                process.communicate()


def assert_same_training(result, reference):
    steps = len(reference["step_losses"])
    assert steps == 2 * CONFIG["steps_per_epoch"] and len(result["step_losses"]) == steps
    np.testing.assert_allclose(result["step_losses"][:3], reference["step_losses"][:3], atol=1e-5)
    for name in ("recall@1", "map_at_r"):
        assert abs(result["metrics"][name] - reference["metrics"][name]) <= 2e-3, (name, result, reference)


def test_two_workers_match_one_process(runs):
    results, root = runs
    chief, worker = sorted(results["workers"], key=lambda r: r["task"])
    assert_same_training(chief, results["single"][0])
    assert worker["step_losses"] == chief["step_losses"]  # every worker logs the global loss
    assert (root / "workers" / "metrics.json").is_file() and (root / "workers" / "logs").is_dir()
    assert json.loads((root / "workers" / "metrics.json").read_text()) == chief["metrics"]
    assert [h["epoch"] for h in map(json.loads, (root / "workers" / "history.jsonl").read_text().splitlines())] \
        == [1, 2]
    assert not list(root.glob("keras-dml-worker-*"))  # worker 1's own copy, deleted at the end


def test_two_logical_cpus_match_one_device(runs):
    results, _ = runs
    assert_same_training(results["mirrored"][0], results["single"][0])


def test_a_killed_worker_resumes_to_the_same_result(runs, tmp_path):
    results, _ = runs
    run_dir = tmp_path / "killed"
    chief, worker = start_workers(run_dir, kill_after=0)
    try:
        worker.communicate(timeout=TIMEOUT)
        assert worker.returncode == -signal.SIGKILL
        state = run_dir / "backup" / "state.json"
        deadline = time.monotonic() + TIMEOUT
        while not (state.is_file() and json.loads(state.read_text())["epoch"] == 1):
            assert time.monotonic() < deadline and chief.poll() is None
            time.sleep(0.2)
    finally:
        chief.kill()
        chief.communicate()
    assert not (run_dir / "metrics.json").exists()
    resumed = [result_of(p) for p in start_workers(run_dir, resume=True)]
    reference = min(results["workers"], key=lambda r: r["task"])
    for result in resumed:
        assert len(result["step_losses"]) == CONFIG["steps_per_epoch"]  # epoch 2 only
        np.testing.assert_allclose(result["step_losses"], reference["step_losses"][3:], atol=1e-5)
        assert result["metrics"] == pytest.approx(reference["metrics"], abs=2e-3)
