"""Shared pieces of the benchmarks: the workloads, machine description, median timing, running a peer.

Standard library only at import (NumPy inside the workload functions), so that
`bench/peers.py` can import it in a peer's virtual environment.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEERS_SCRIPT = Path(__file__).resolve().parent / "peers.py"


def loss_batch(n, dim=512, classes=64, seed=0):
    """The loss-step workload: `n` L2-normalised rows, `n // classes` samples in each class."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.repeat(np.arange(classes), n // classes).astype("int32")


def parity_batch(n=128, dim=32, classes=8, seed=0):
    """The value-parity workload: Gaussian rows (not normalised: the losses normalise),
    `n // classes` samples in each class, shuffled."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, dim)) * rng.uniform(0.5, 2.0, size=(n, 1))).astype("float32")
    return x, rng.permutation(np.repeat(np.arange(classes), n // classes)).astype("int32")


# Steps and memory of the cross-batch memory parity case (batches `parity_batch(seed=step)`).
PARITY_MEMORY_STEPS, PARITY_MEMORY_SIZE = 3, 256


def eval_set(n, dim=512, seed=0):
    """The retrieval workload: `n / 50` Gaussian class centres, 50 noisy L2-normalised points each."""
    import numpy as np

    rng = np.random.default_rng(seed)
    classes = n // 50
    centres = rng.standard_normal((classes, dim)).astype("float32")
    y = np.repeat(np.arange(classes), 50)
    x = centres[y] + 1.5 * rng.standard_normal((n, dim)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, y


def machine():
    """One line naming the machine the figures were taken on: CPU, cores, BLAS, load."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(sorted({f"{p['internal_api']} {p['version']}" for p in threadpool_info()
                                 if p["user_api"] == "blas"})) or "none loaded"
    except ImportError:
        blas = "unknown"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {os.cpu_count()} cores, BLAS {blas}, Python {platform.python_version()}, "
            f"load average {load:.2f} at start")


def median_seconds(step, repeats=10, warmup=3):
    """Median wall time of `step()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_peer(peer_python, peer, args, script=PEERS_SCRIPT):
    """Run `bench/peers.py` with another interpreter (a peer's venv); its JSON result, or None."""
    if not peer_python:
        return None
    if not Path(script).exists():
        print(f"(peer skipped: {script} not found)", file=sys.stderr)
        return None
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = dict(os.environ)
        if peer == "tfsim":
            env["TF_USE_LEGACY_KERAS"] = "1"
        cmd = [peer_python, str(script), peer, "--json", out.name, *args]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"(peer {peer} failed: {result.stderr[-800:]})", file=sys.stderr)
            return None
        return json.loads(Path(out.name).read_text())
