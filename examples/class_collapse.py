"""Easy positives against class collapse: does a triplet loss keep the modes of a class apart?

Levi et al. (ICCV 2021) argue that margin losses pairing each anchor with all (or the
hardest) same-class samples pull every mode of a class towards one point, while pairing
it with its nearest same-class sample ("easy positive") lets the modes survive.

Glyphs give classes with real modes: with `load_glyphs(by="group", group_size=4)` a
class is a fixed group of 4 characters, and each character (a mode) has many images
(every font's renders of it). The test groups' characters are never seen in training.
This tutorial trains the same small CNN with `TripletLoss(positive=..., negative="semihard")`
for "all", "hard" and "easy" positives on P x K batches of 8 groups x 16 images (each
character about 4 times per batch) and reports, on the unseen test groups:

- the mode score (`keras_dml.evaluation.mode_preservation`, modes = characters,
  `k = 10`): the share of each image's 10 nearest same-group neighbours that show its
  own character; about 1/4 when a group's characters are mixed into one cloud, 1 when
  they stay apart;
- Recall@1 of the group (is the nearest image from the same group?).

Run:  python examples/class_collapse.py          (4 epochs per positive; several minutes on 2 CPU cores)
      python examples/class_collapse.py --fast   (a few steps, "hard" and "easy" only: a smoke test)
The seed sweep, with margins chosen on validation groups and a pretrained start, is
evidence/easy_positives.py (docs/easy_positives.md).
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dml.data import class_balanced, load_glyphs  # noqa: E402
from keras_dml.evaluation import mode_preservation, retrieval_metrics  # noqa: E402
from keras_dml.losses import TripletLoss  # noqa: E402
from keras_dml.models import build_embedder  # noqa: E402

CLASSES_PER_BATCH, SAMPLES_PER_CLASS = 8, 16  # 16 images of a group: each character about 4 times
MODE_K = 10  # a character has 36-66 images in its group


def groups(split):
    """`(images, group labels, characters)` of one group split."""
    images, labels, meta = load_glyphs(split, by="group", group_size=4, return_metadata=True)
    return images, labels, meta["character"]


def scores(embedder, test):
    embeddings = embedder.predict(test[0], verbose=0)
    return {"modes": mode_preservation(embeddings, test[1], test[2], k=MODE_K)["score"],
            "recall@1": retrieval_metrics(embeddings, test[1], k=(1,))["recall@1"]}


def train_embedder(positive, train, epochs, steps, seed):
    keras.utils.set_random_seed(seed)
    embedder = build_embedder("small_cnn", embedding_dim=64, input_shape=train[0].shape[1:])
    embedder.compile(optimizer=keras.optimizers.Adam(1e-3),
                     loss=TripletLoss(margin=0.2, positive=positive, negative="semihard"), jit_compile=True)
    pairs = tf.data.Dataset.from_tensor_slices(train[:2])
    embedder.fit(class_balanced(pairs, CLASSES_PER_BATCH, SAMPLES_PER_CLASS, seed=seed),
                 epochs=epochs, steps_per_epoch=steps, verbose=0)
    return embedder


def report(name, r):
    print(f"{name:<16} mode score (test groups) {r['modes']:.3f}  group Recall@1 {r['recall@1']:.3f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help='a few steps, "hard" and "easy" only (smoke test)')
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train, test = groups("train"), groups("test")
    positives = ("hard", "easy") if args.fast else ("all", "hard", "easy")
    epochs, steps = (1, 25) if args.fast else (args.epochs, len(train[1]) // (CLASSES_PER_BATCH * SAMPLES_PER_CLASS))
    print(f"glyphs by group: {len(np.unique(train[1]))} training groups of 4 characters ({len(train[1])} images), "
          f"{len(np.unique(test[1]))} unseen test groups; modes = characters; {epochs} epoch(s) of {steps} batches")
    results = {}
    keras.utils.set_random_seed(args.seed)
    results["untrained"] = scores(build_embedder("small_cnn", embedding_dim=64, input_shape=train[0].shape[1:]), test)
    report("untrained", results["untrained"])
    for positive in positives:
        results[positive] = scores(train_embedder(positive, train, epochs, steps, args.seed), test)
        report(f"positive={positive}", results[positive])
    print("\nReading: the mode score is the share of each image's 10 nearest same-group neighbours that show its "
          "own character (about 0.25 when a group's characters are mixed); compare each line with the untrained "
          "one. See docs/easy_positives.md for the 3-seed figures from a random and a pretrained start.")
    return results


if __name__ == "__main__":
    main()
