"""Potential fields from a random start: why the paper's fixed radii barely learn, and the fixes.

Question: PotentialFieldLoss with the paper's radii (delta = 0.2, fixed) hardly improves
a randomly initialised embedder. Why, and what makes it learn?

The loss makes every embedding and every proxy a charge: same-class charges attract with
a force d^-(alpha+1) beyond delta_att (none inside it); other-class charges repel with
d^-(alpha+1) inside delta_rep (none beyond). A random CNN maps every image into a small
cap of the unit sphere: on glyphs the median distance between two embeddings is about
0.08, below delta = 0.2. So at the start no pair attracts, and the repulsion between the
closest embeddings of different classes (d^-4: 10^4 and more) outweighs the pull of the
proxies, about 1.4 away, by a factor of about 10^6 (evidence/potential_field.py
measures it). Training follows that repulsion, which spreads the embeddings without
grouping the classes.

This tutorial trains the same small CNN on glyphs (characters split zero-shot: the test
characters are never seen in training) and prints held-out Recall@1, MAP@R and the
median distance between embeddings for:

1. the untrained embedder;
2. the paper's fixed radii (`radius_ratio=None`), every layer training from the first step;
3. the paper's fixed radii after one warm-up epoch with the backbone frozen (the
   embedding layer and the proxies train), as the paper's authors train;
4. `PotentialFieldLoss`'s defaults: radii relative to the spread the embedder starts
   from (`radius_ratio=0.5`: at most half the first batch's mean distance, about 0.05
   here), so that same-class pairs attract from the first step.

    python examples/potential_field.py           # 5 epochs, a few minutes on 2 cores
    python examples/potential_field.py --fast    # 2 epochs on one render per glyph (the test)

Measured over 3 seeds on the test characters: evidence/potential_field.py,
docs/potential_field.md.
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_dml  # noqa: E402
from keras_dml.data import class_balanced, load_glyphs  # noqa: E402
from keras_dml.evaluation import retrieval_metrics  # noqa: E402
from keras_dml.losses import PotentialFieldLoss  # noqa: E402
from keras_dml.models import MetricModel, build_embedder  # noqa: E402

EMBEDDING_DIM = 64
CLASSES_PER_BATCH, SAMPLES_PER_CLASS = 16, 4


def held_out(embedder, images, labels):
    """Recall@1, MAP@R and the median distance between embeddings of the held-out images."""
    embeddings = embedder.predict(images, batch_size=512, verbose=0)
    metrics = retrieval_metrics(embeddings, labels, k=(1,))
    return {"recall@1": metrics["recall@1"], "map_at_r": metrics["map_at_r"],
            "median_distance": float(np.median(pair_distances(embeddings)))}


def pair_distances(embeddings, seed=0):
    """Distances between 500 random embeddings, each pair once."""
    sample = embeddings[np.random.default_rng(seed).choice(len(embeddings), 500, replace=False)]
    return np.linalg.norm(sample[:, None] - sample[None], axis=-1)[np.triu_indices(len(sample), 1)]


def untrained_embedder(input_shape, seed=0):
    keras.utils.set_random_seed(seed)
    return build_embedder("small_cnn", embedding_dim=EMBEDDING_DIM, input_shape=input_shape)


def train(images, labels, epochs, warmup_epochs=0, radius_ratio=0.5, seed=0):
    """A small CNN trained by PotentialFieldLoss (`radius_ratio=None`: the paper's fixed
    radii), proxies at 100x the learning rate; returns the embedder and the radii used."""
    embedder = untrained_embedder(images.shape[1:], seed)
    criterion = PotentialFieldLoss(int(labels.max()) + 1, EMBEDDING_DIM, radius_ratio=radius_ratio)
    model = MetricModel(embedder, criterion)
    batches = class_balanced(tf.data.Dataset.from_tensor_slices((images, labels)),
                             CLASSES_PER_BATCH, SAMPLES_PER_CLASS, seed=seed)
    steps = len(labels) // (CLASSES_PER_BATCH * SAMPLES_PER_CLASS)

    def fit(frozen_backbone, first, last):
        embedder.get_layer("backbone").trainable = not frozen_backbone
        optimizer = keras_dml.optimizers.with_proxy_lr_multiplier(keras.optimizers.Adam(1e-3), 100.0)
        model.compile(optimizer=optimizer, jit_compile=True)  # compile again after changing `trainable`
        model.fit(batches, steps_per_epoch=steps, initial_epoch=first, epochs=last, verbose=0)

    if warmup_epochs:
        fit(frozen_backbone=True, first=0, last=warmup_epochs)
    fit(frozen_backbone=False, first=warmup_epochs, last=epochs)
    scale = float(criterion.radius_scale.numpy()) if radius_ratio is not None else 1.0
    return embedder, scale * criterion.delta_att


def main(fast=False):
    renders, epochs = (1, 2) if fast else (3, 5)
    images, labels = load_glyphs("train", renders=renders)
    test_images, test_labels = load_glyphs("test", renders=renders)
    print(f"glyphs: {len(labels)} training images of {labels.max() + 1} characters, "
          f"{len(test_labels)} test images of {test_labels.max() + 1} other characters; {epochs} epochs")
    untrained = untrained_embedder(images.shape[1:])
    start = pair_distances(untrained.predict(images, batch_size=512, verbose=0))
    print(f"untrained embedder, distances between training embeddings: median {np.median(start):.3f}, "
          f"99% quantile {np.quantile(start, 0.99):.3f}")
    results = {"untrained": held_out(untrained, test_images, test_labels)}
    runs = {"paper radii (0.2, fixed)": {"radius_ratio": None},
            "paper radii + 1 warm-up epoch": {"radius_ratio": None, "warmup_epochs": 1},
            "defaults (radii relative to the start)": {}}
    for name, options in runs.items():
        embedder, radius = train(images, labels, epochs, **options)
        results[name] = {**held_out(embedder, test_images, test_labels), "radius": radius}
    print("\n| embedder | radii | held-out Recall@1 | MAP@R | median distance |\n|---|---|---|---|---|")
    for name, r in results.items():
        radius = f"{r['radius']:.3f}" if "radius" in r else "-"
        print(f"| {name} | {radius} | {r['recall@1']:.3f} | {r['map_at_r']:.3f} | {r['median_distance']:.3f} |")
    print("\nWith the paper's fixed radius the embeddings spread out (median distance up from about 0.08) but\n"
          "barely group by class: the training followed the repulsion. With the default radii, scaled to the\n"
          "starting spread, same-class embeddings attract from the first step and Recall@1 rises at once.\n"
          "The warm-up epoch needs a few more epochs after it to pay off (evidence/potential_field.py).")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="2 epochs on one render per glyph (the test)")
    main(fast=parser.parse_args().fast)
