"""Shared pieces of the benchmarks: machine description, median timing, running a peer."""
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEERS_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "bench" / "peers.py"


def machine():
    """One line naming the machine the figures were taken on."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, load average {load:.2f} at start")


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


def run_peer(peer_python, peer, args):
    """Run ../shared/bench/peers.py with another interpreter; its JSON result, or None."""
    if not peer_python:
        return None
    if not PEERS_SCRIPT.exists():
        print(f"(peer skipped: {PEERS_SCRIPT} not found)", file=sys.stderr)
        return None
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = dict(os.environ)
        if peer == "tfsim":
            env["TF_USE_LEGACY_KERAS"] = "1"
        cmd = [peer_python, str(PEERS_SCRIPT), peer, "--json", out.name, *args]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"(peer {peer} failed: {result.stderr[-800:]})", file=sys.stderr)
            return None
        return json.loads(Path(out.name).read_text())
