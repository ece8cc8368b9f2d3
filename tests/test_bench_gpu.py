"""bench/gpu.py works before GPU time is spent on it: `--smoke` runs every part at tiny sizes on the CPU."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import gpu  # noqa: E402


def test_smoke_runs_every_keras_dml_part_on_each_installed_backend(tmp_path):
    backends = [name for name in ("jax", "torch") if _importable(name)]
    if not backends:
        pytest.skip("neither JAX nor PyTorch is installed")
    out = tmp_path / "smoke.json"
    done = subprocess.run([sys.executable, "bench/gpu.py", "--smoke", "--json", str(out), "--backends", *backends,
                           "pml"], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"] and report["gpu"] is None and report["sizes"] == gpu.SMOKE
    expected = ([f"losses/{case}" for case in gpu.LOSS_CASES] + [f"resnet50/{case}" for case in gpu.STEP_CASES]
                + ["dinov2/triplet_easy_semihard"])
    for backend in backends:
        cases = report["results"][backend]["cases"]
        assert sorted(cases) == sorted(expected), report["results"][backend]["skipped"]
        for key in expected:
            rate = cases[key].get("ms") if key.startswith("losses/") else cases[key].get("images_per_s")
            assert rate > 0, (backend, key, cases[key])
        if backend == "jax":  # compile time apart from step time, and the compiled step's memory
            assert all(cases[key]["compile_s"] > 0 and cases[key]["peak_bytes"] > 0 for key in expected), cases
    peer = report["results"]["pml"]
    if _importable("pytorch_metric_learning"):
        assert "losses/triplet_easy_semihard" in peer["cases"]
    else:
        assert peer["skipped"] and "not installed" in peer["skipped"][0]
    assert "| triplet_easy_semihard |" in report["table"] and "| cross_entropy |" in report["table"]


def test_without_a_gpu_it_says_so_and_exits_1():
    if gpu.gpu_name() is not None:
        pytest.skip("this machine has a GPU")
    done = subprocess.run([sys.executable, "bench/gpu.py"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "no GPU found" in done.stderr and "--smoke" in done.stderr


def _importable(name):
    return subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True).returncode == 0
