"""Training steps per second with MirroredStrategy on 1 vs R replicas, global-batch loss.

Workload: an MLP embedder (input -> hidden -> hidden -> embedding, ReLU) trained by
`model.fit` on class-balanced batches of synthetic features (`keras_dml.data.class_balanced`,
`P` classes x `K` samples, class-contiguous so each replica gets whole classes), with a
keras_dml loss gathering the global batch (`cross_replica=True`). The global batch stays
the same for every replica count, so R replicas each compute 1/R of the embedder.

Each replica count runs in its own process: on GPUs it uses the first R GPUs (or, with
fewer GPUs than R, splits GPU 0 into R logical GPUs, which only shows that the script
runs); without GPUs it splits the CPU into R logical devices, which share the same
cores, so no speed-up is expected there.

    python bench/distributed.py --replicas 1 2 --classes-per-batch 32 --samples-per-class 4
"""
import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LOSSES = ("triplet", "potential_field")


def set_up_devices(replicas):
    """`replicas` devices for MirroredStrategy; must run before TensorFlow starts its devices."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus and len(gpus) < replicas:
        tf.config.set_logical_device_configuration(
            gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=8192)] * replicas
        )
    elif not gpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    kind = "GPU" if gpus else "CPU"
    return [device.name for device in tf.config.list_logical_devices(kind)][:replicas]


def run_one(args):
    """Time `model.fit` on `args.worker` replicas; print one JSON line."""
    devices = set_up_devices(args.worker)
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_dml import losses, models
    from keras_dml.data import class_balanced

    rng = np.random.default_rng(args.seed)
    centres = rng.normal(size=(args.classes, args.input_dim)).astype("float32")
    labels = np.repeat(np.arange(args.classes), 20).astype("int32")
    features = centres[labels] + rng.normal(size=(len(labels), args.input_dim)).astype("float32")
    batches = class_balanced(
        tf.data.Dataset.from_tensor_slices((features, labels)),
        args.classes_per_batch, args.samples_per_class, seed=args.seed,
    ).prefetch(4)

    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        keras.utils.set_random_seed(args.seed)
        embedder = keras.Sequential(
            [keras.Input((args.input_dim,))]
            + [keras.layers.Dense(args.hidden_dim, activation="relu") for _ in range(2)]
            + [keras.layers.Dense(args.embedding_dim)]
        )
        if args.loss == "triplet":
            criterion = losses.TripletLoss(positive="easy", negative="semihard")
        else:
            criterion = losses.PotentialFieldLoss(args.classes, args.embedding_dim, proxies_per_class=2)
        criterion.cross_replica = args.cross_replica
        model = models.MetricModel(embedder, criterion)
        model.compile(optimizer=keras.optimizers.Adam(1e-4))

    epoch_seconds = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.start)

    history = model.fit(
        batches, steps_per_epoch=args.steps, epochs=args.repeats + 1, verbose=0, callbacks=[EpochTimer()]
    )
    timed = sorted(epoch_seconds[1:])  # the first epoch traces the step
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "devices": devices,
        "steps_per_second": args.steps / timed[len(timed) // 2],
        "final_loss": history.history["loss"][-1],
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--loss", choices=LOSSES, default="triplet")
    parser.add_argument("--classes", type=int, default=256)
    parser.add_argument("--classes-per-batch", type=int, default=32, help="P (a multiple of every replica count)")
    parser.add_argument("--samples-per-class", type=int, default=4, help="K")
    parser.add_argument("--input-dim", type=int, default=512)
    parser.add_argument("--hidden-dim", type=int, default=1024)
    parser.add_argument("--embedding-dim", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs (median reported)")
    parser.add_argument("--cross-replica", action=argparse.BooleanOptionalAction, default=True,
                        help="gather the global batch (default) or mine within each replica's slice")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # internal: one replica count
    args = parser.parse_args()
    if args.worker:
        return run_one(args)

    from bench.common import machine

    for replicas in args.replicas:
        if args.classes_per_batch % replicas:
            parser.error(f"--classes-per-batch {args.classes_per_batch} is not a multiple of {replicas} replicas")
    batch = args.classes_per_batch * args.samples_per_class
    print(machine())
    print(
        f"loss {args.loss}, global batch {batch} (P={args.classes_per_batch} x K={args.samples_per_class}), "
        f"MLP {args.input_dim}-{args.hidden_dim}-{args.hidden_dim}-{args.embedding_dim}, "
        f"cross_replica={args.cross_replica}, {args.steps} steps x {args.repeats} timed epochs, seed {args.seed}"
    )
    print(f"{'replicas':>8} {'per replica':>11} {'steps/s':>9} {'samples/s':>10} {'speed-up':>8}  devices")
    base = None
    for replicas in args.replicas:
        command = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--worker", str(replicas)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"{replicas:>8} failed: {result.stderr[-1500:]}")
            continue
        row = json.loads(result.stdout.strip().splitlines()[-1])
        base = base or row["steps_per_second"]
        print(
            f"{row['replicas']:>8} {batch // replicas:>11} {row['steps_per_second']:>9.2f} "
            f"{row['steps_per_second'] * batch:>10.0f} {row['steps_per_second'] / base:>7.2f}x  "
            f"{', '.join(d.split('device:')[-1] for d in row['devices'])}"
        )


if __name__ == "__main__":
    main()
