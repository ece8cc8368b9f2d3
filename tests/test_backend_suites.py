"""The backend-neutral suites again, in a fresh process per backend: KERAS_BACKEND=jax and KERAS_BACKEND=torch.

Each runs the loss core (distances, miners, losses) and `tests/backend_suite.py` (fit on
P x K batches, the trainable criteria through `MetricModel`, save and reload, search, a
keras-hub embedder, export). A backend that is not installed is skipped.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The backend-neutral suites, in parts of similar cost, so that `pytest -n 2` runs them side by side.
SUITES = {
    "distances_miners": ["tests/test_distances.py", "tests/test_miners.py"],
    "losses": ["tests/test_losses.py"],
    "models": ["tests/backend_suite.py"],
    # the classification-style criteria, the newer pair losses and the cross-batch memory: a few tests each
    "new_losses": [
        "tests/test_classification_losses.py::test_under_xla_the_value_matches_and_bad_input_gives_nan",
        "tests/test_classification_losses.py::test_empty_batch_gives_exactly_zero",
        "tests/test_losses_pairs.py::test_matches_reference",
        "tests/test_losses_pairs.py::test_compiled_matches_eager_and_non_finite_input_gives_nan",
        "tests/test_memory.py::test_fit_save_load_keeps_the_queue",
    ],
}


@pytest.mark.parametrize("part", SUITES)
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_backend_neutral_suites_pass(backend, part):
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES[part]],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
