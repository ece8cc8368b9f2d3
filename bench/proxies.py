"""Time and peak memory of one training step of the proxy losses at SOP scale.

Stanford Online Products has 11,318 training classes. PotentialFieldLoss with 2 proxies
per class (the paper's SOP setting) and proxy_targets="batch" is trained here for a
batch of 120 with 512-d embeddings, through MetricModel with Adam and the 100x proxy
learning rate, under XLA. The backbone is left out on purpose: the embedder is one
Dense layer on 2048-d features (what a ResNet-50 pools to), so the figures are those
of the loss, its proxies and their optimizer state. ProxyAnchorLoss and TripletLoss on
the same step are printed for comparison.

Memory: the model's weights and Adam state are created first; the process's resident
set at that point is the baseline. "step peak" is the peak resident set during the
timed steps (VmHWM, reset through /proc/self/clear_refs) minus that baseline: what a
training step needs beyond the weights, buffers the allocator keeps between steps
included. "first step peak" is the same for the first step, which also compiles it
with XLA. Linux only.

    python bench/proxies.py                 # all three criteria
    python bench/proxies.py --steps 5 --criterion potential_field
"""
import argparse
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_dml.optimizers  # noqa: E402
from keras_dml.losses.pair import TripletLoss  # noqa: E402
from keras_dml.losses.proxy import PotentialFieldLoss, ProxyAnchorLoss  # noqa: E402
from keras_dml.models import MetricModel  # noqa: E402

SOP_CLASSES = 11318


def memory_mib(field):
    """A field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not found in /proc/self/status")


def reset_peak_memory():
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def make_criterion(name, classes, dim, proxies_per_class):
    if name == "potential_field":
        return PotentialFieldLoss(classes, dim, proxies_per_class=proxies_per_class, proxy_targets="batch")
    if name == "proxy_anchor":
        return ProxyAnchorLoss(classes, dim)
    return TripletLoss(margin=0.2)


def bench(name, args):
    import tensorflow as tf

    gpu = bool(tf.config.list_logical_devices("GPU"))
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    embedder = keras.Sequential([keras.Input((args.features,)), keras.layers.Dense(args.dim)], name="embedder")
    model = MetricModel(embedder, make_criterion(name, args.classes, args.dim, args.proxies_per_class))
    optimizer = keras_dml.optimizers.with_proxy_lr_multiplier(keras.optimizers.Adam(1e-4), 100.0)
    model.compile(optimizer=optimizer, jit_compile=True)
    per_class = 2
    batches = []
    for _ in range(args.steps + 1):
        labels = np.repeat(rng.choice(args.classes, args.batch_size // per_class, replace=False), per_class)
        features = rng.normal(size=(args.batch_size, args.features)).astype("float32")
        batches.append((features, labels.astype("int32")))

    model.build((None, args.features))
    optimizer.build(model.trainable_variables)
    state_mib = sum(np.prod(v.shape) * 4 for v in model.variables + optimizer.variables) / 2**20
    baseline = memory_mib("VmRSS")
    reset_peak_memory()
    start = time.perf_counter()
    model.train_on_batch(*batches[0])  # traces and compiles
    first = time.perf_counter() - start
    first_peak = memory_mib("VmHWM") - baseline
    reset_peak_memory()
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    times = []
    for features, labels in batches[1:]:
        start = time.perf_counter()
        loss = model.train_on_batch(features, labels)
        times.append(time.perf_counter() - start)
    peak = memory_mib("VmHWM")
    result = {
        "criterion": name,
        "first step s (compile)": first,
        "step ms (median)": 1000 * float(np.median(times)),
        "step ms (min)": 1000 * float(np.min(times)),
        "weights+optimizer MiB": state_mib,
        "baseline RSS MiB": baseline,
        "first step peak MiB": first_peak,
        "step peak MiB": peak - baseline,
        "process peak RSS MiB": peak,
        "loss": float(loss),
    }
    if gpu:
        result["GPU peak MiB"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--criterion", choices=["potential_field", "proxy_anchor", "triplet", "all"], default="all")
    parser.add_argument("--classes", type=int, default=SOP_CLASSES)
    parser.add_argument("--proxies-per-class", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=120)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--features", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if args.criterion == "all":  # one process each, so that one run's freed memory cannot hide the next one's peak
        for name in ["potential_field", "proxy_anchor", "triplet"]:
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--criterion", name], check=True)
        return
    import tensorflow as tf

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"devices {[d.device_type for d in tf.config.list_logical_devices()]}, keras {keras.__version__}, "
          f"backend {keras.backend.backend()}")
    print(f"classes {args.classes} x {args.proxies_per_class} proxies, batch {args.batch_size}, dim {args.dim}, "
          f"features {args.features}, {args.steps} timed steps, Adam + 100x proxy learning rate, XLA")
    result = bench(args.criterion, args)
    print("  ".join(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}"
                    for key, value in result.items()), flush=True)


if __name__ == "__main__":
    main()
