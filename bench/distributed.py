"""Training steps per second: one process (`model.fit`) vs 2 worker processes on localhost
(`MultiWorkerMirroredStrategy`, keras_dml's loop), and the gather's bytes per step.

Workload: `keras_dml.training.train` on a digits recipe (mlp backbone, sklearn's digits:
nothing to download), XLA on in both, the same global batches `P x K`. Each run times
the steps of its epochs after the first (which traces and compiles), from the end of
one step to the end of the last, and reports the median epoch. Evaluation at the end
of each epoch is not timed.

On one machine the 2 workers share its cores and talk over loopback, so no speed-up is
expected there: the figure is the loop's overhead (the gather, the gradient
all-reduce, one process per worker). See docs/distributed.md for the scaling to expect
on real hardware.

    python bench/distributed.py --epochs 3 --steps 20
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = """
import json, statistics, sys, time
import keras
from keras_dml import training

config, run_dir = json.loads(sys.argv[1]), sys.argv[2]
epochs = []


class StepTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        epochs.append([])

    def on_train_batch_end(self, batch, logs=None):
        epochs[-1].append(time.perf_counter())


training.train(config, run_dir, callbacks=[StepTimer()], verbose=0)
rates = [(len(ends) - 1) / (ends[-1] - ends[0]) for ends in epochs[1:]]
print("RESULT " + json.dumps({"steps_per_second": statistics.median(rates)}))
"""


def gather_bytes(global_batch, embedding_dim, replicas):
    """Bytes one replica receives per step: the other replicas' float32 embeddings and
    int32 labels, and their slice sizes (int32)."""
    received = global_batch * (replicas - 1) // replicas
    return received * (embedding_dim * 4 + 4) + (replicas - 1) * 4


def run(config, run_dir, workers):
    """`steps_per_second` of each process of one run."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
                   "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    if workers > 1:
        sockets = [socket.socket() for _ in range(workers)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        addresses = [f"localhost:{s.getsockname()[1]}" for s in sockets]
        for s in sockets:
            s.close()
        environments = [{**environment, "TF_CONFIG": json.dumps(
            {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}})} for i in range(workers)]
        config = {**config, "strategy": "multiworker"}
    else:
        environments = [environment]
    processes = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(SCRIPT), json.dumps(config), run_dir],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for env in environments]
    results = []
    for process in processes:
        stdout, stderr = process.communicate()
        if process.returncode:
            raise RuntimeError(stderr[-2000:])
        results.append(json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:]))
    return [r["steps_per_second"] for r in results]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="digits-triplet-easy")
    parser.add_argument("--classes-per-batch", type=int, default=4, help="P (a multiple of the workers)")
    parser.add_argument("--samples-per-class", type=int, default=16, help="K")
    parser.add_argument("--epochs", type=int, default=3, help="epochs; all but the first are timed")
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    args = parser.parse_args()

    from bench.common import machine
    from keras_dml import training

    config = {**training.get_recipe(args.recipe), "classes_per_batch": args.classes_per_batch,
              "samples_per_class": args.samples_per_class, "epochs": args.epochs,
              "steps_per_epoch": args.steps, "jit_compile": True}
    batch = args.classes_per_batch * args.samples_per_class
    print(machine())
    print(f"{args.recipe}: {config['backbone']} {config['embedding_dim']}-d, global batch {batch} "
          f"(P={args.classes_per_batch} x K={args.samples_per_class}), XLA on, {args.steps} steps x "
          f"{args.epochs - 1} timed epochs (median), seed {config.get('seed', 0)}")
    print(f"{'set-up':<32} {'steps/s':>9} {'vs 1 process':>12} {'gather bytes/step/replica':>26}")
    base = None
    with tempfile.TemporaryDirectory() as root:
        for workers, name in ((1, "1 process, model.fit"), (2, "2 workers on localhost, loop")):
            rates = run(config, os.path.join(root, str(workers)), workers)
            rate = min(rates)  # the workers step together; the slowest report is the run's
            base = base or rate
            print(f"{name:<32} {rate:>9.2f} {rate / base:>11.2f}x "
                  f"{gather_bytes(batch, config['embedding_dim'], workers):>26,}")


if __name__ == "__main__":
    main()
