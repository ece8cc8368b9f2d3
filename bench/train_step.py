"""Images per second of a full XLA train step with each loss, against softmax cross-entropy.

The same embedder (backbone -> pooling -> Dense -> L2 norm) is trained for a fixed number
of steps on a synthetic P x K batch with each keras_dml criterion, and as a classifier
(Dense(num_classes) on the embedding + sparse softmax cross-entropy). The overhead is
`step time with the loss / step time with cross-entropy - 1`; the target is at most 5%.

    python bench/train_step.py                         # small_cnn at 64x64 on the CPU
    python bench/train_step.py --backbone resnet50 --image-size 224 --steps 50   # on a GPU
"""
import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import machine  # noqa: E402
from keras_dml import losses  # noqa: E402
from keras_dml.models import MetricModel, build_embedder  # noqa: E402


def criteria(num_classes, dim):
    return {
        "triplet easy/semihard": losses.TripletLoss(positive="easy", negative="semihard"),
        "triplet all/all": losses.TripletLoss(),
        "contrastive": losses.ContrastiveLoss(),
        "npair": losses.NPairLoss(),
        "multi-similarity": losses.MultiSimilarityLoss(),
        "density triplet": losses.DensityAdaptive(losses.TripletLoss(negative="semihard")),
        "proxy anchor": losses.ProxyAnchorLoss(num_classes, dim),
        "potential field": losses.PotentialFieldLoss(num_classes, dim, proxies_per_class=15),
        "pddm": losses.PDDMLoss(dim),
    }


def batches(p, k, size, num_classes, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(p * k, size, size, 3)).astype("float32")
    y = np.repeat(rng.choice(num_classes, p, replace=False), k).astype("int32")
    return tf.data.Dataset.from_tensors((x, y)).repeat()


def images_per_second(model, data, steps, batch):
    model.fit(data, epochs=1, steps_per_epoch=3, shuffle=False, verbose=0)  # compile + warm up
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--classes-per-batch", type=int, default=30)
    parser.add_argument("--samples-per-class", type=int, default=4)
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds; the median is reported")
    args = parser.parse_args()
    batch = args.classes_per_batch * args.samples_per_class
    data = batches(args.classes_per_batch, args.samples_per_class, args.image_size, args.num_classes)
    shape = (args.image_size, args.image_size, 3)
    print(f"machine: {machine()}; devices: {[d.device_type for d in tf.config.list_logical_devices()]}")
    print(f"sizes: {args.backbone} at {shape}, {args.dim}-d, batch {args.classes_per_batch}x{args.samples_per_class}, "
          f"{args.steps} steps per measurement, median of {args.repeats} alternating rounds, jit_compile=True")

    def model_for(name):
        keras.utils.set_random_seed(0)
        embedder = build_embedder(args.backbone, args.dim, input_shape=shape, freeze_batchnorm=False)
        if name == "softmax cross-entropy":
            logits = keras.layers.Dense(args.num_classes)(embedder.output)
            model = keras.Model(embedder.input, logits)
            model.compile(optimizer="adam", jit_compile=True,
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            return model
        model = MetricModel(embedder, criteria(args.num_classes, args.dim)[name])
        model.build((None, *shape))
        model.compile(optimizer="adam", jit_compile=True)
        return model

    names = ["softmax cross-entropy", *criteria(args.num_classes, args.dim)]
    models = {name: model_for(name) for name in names}
    rates = {name: [] for name in names}
    for _ in range(args.repeats):
        for name in names:
            rates[name].append(images_per_second(models[name], data, args.steps, batch))
    base = float(np.median(rates["softmax cross-entropy"]))
    print("\n| criterion | images/s | step time vs cross-entropy |\n|---|---|---|")
    for name in names:
        rate = float(np.median(rates[name]))
        print(f"| {name} | {rate:.1f} | {base / rate - 1:+.1%} |")


if __name__ == "__main__":
    main()
