"""Runs the backend-neutral loss-core tests again in a fresh process with KERAS_BACKEND=jax."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

CORE_TESTS = ["tests/test_distances.py", "tests/test_miners.py", "tests/test_losses.py",
              # the newer pair losses and the memory: a few tests each (this process is slow already)
              "tests/test_losses_pairs.py::test_matches_reference",
              "tests/test_losses_pairs.py::test_compiled_matches_eager_and_non_finite_input_gives_nan",
              "tests/test_memory.py::test_fit_save_load_keeps_the_queue"]


def test_loss_core_passes_on_jax():
    pytest.importorskip("jax")
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CORE_TESTS],
        cwd=root, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
