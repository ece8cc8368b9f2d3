"""Is the density regularizer doing anything? `DensityAdaptive` on glyphs.

`DensityAdaptive(base_loss, weight, rho)` adds `weight * R` to a loss, with
`R = mean_c [rho * g_c - sigma_c]_+` over the classes of a batch: `sigma_c` is the
class's spread (mean distance to its centre), `g_c` the distance from its centre to the
nearest other class centre. A class is penalised only while `sigma_c < rho * g_c`, so the
regularizer changes training only if some class of some batch gets that dense. Before
reading a gain (or the lack of one) into it, check that it was switched on.

This tutorial trains a small CNN on the glyph characters of the training split
(`load_glyphs`, P x K batches) with a triplet loss, plain and wrapped with
`DensityAdaptive()` at its defaults, and reports:

- the class spread and gap the Keras metrics `ClassSpread` / `ClassGap` saw during the
  last epoch, and their ratio: a triplet loss stops pulling a class together once its
  margin is met, so `sigma_c / g_c` stays around 0.3-0.7;
- `R` on P x K batches of the training characters at `rho` = 0.125 (the old default:
  it needs `sigma_c < g_c / 8` and stays 0, the regularizer never switches on), 0.25
  (the default: only the densest classes, late in training) and 0.5 (a large share of
  the classes; on glyphs that cost MAP@R, see docs/density.md);
- Recall@1 and MAP@R on the test characters, never seen in training, against the
  untrained embedder.

Run:  python examples/density.py          (3 epochs; about 2-4 minutes on 2 CPU cores)
      python examples/density.py --fast   (a few steps: a smoke test)
The seed sweep behind the defaults is evidence/density.py (docs/density.md).
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dml.data import class_balanced, load_glyphs  # noqa: E402
from keras_dml.evaluation import ClassGap, ClassSpread, retrieval_metrics  # noqa: E402
from keras_dml.losses import DensityAdaptive, TripletLoss, density_regularizer  # noqa: E402
from keras_dml.models import build_embedder  # noqa: E402

CLASSES_PER_BATCH, SAMPLES_PER_CLASS = 16, 4
RHOS = (0.125, 0.25, 0.5)  # the old default, the default, a large one


def batches(images, labels, seed, num_batches=None):
    pairs = tf.data.Dataset.from_tensor_slices((images, labels))
    return class_balanced(pairs, CLASSES_PER_BATCH, SAMPLES_PER_CLASS, seed=seed, num_batches=num_batches)


def mean_regularizer(embedder, probe, rho):
    """`R` at `rho`, averaged over the fixed training batches `probe`."""
    return float(np.mean([density_regularizer(labels, embedder(images), rho=rho) for images, labels in probe]))


def train_and_measure(loss, train, test, epochs, steps, seed):
    keras.utils.set_random_seed(seed)
    embedder = build_embedder("small_cnn", embedding_dim=64, input_shape=train[0].shape[1:])
    untrained = retrieval_metrics(embedder.predict(test[0], verbose=0), test[1], k=(1,))
    embedder.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss,
                     metrics=[ClassSpread(), ClassGap()], jit_compile=True)
    history = embedder.fit(batches(*train, seed), epochs=epochs, steps_per_epoch=steps, verbose=0).history
    probe = list(batches(*train, seed=1000, num_batches=8))
    trained = retrieval_metrics(embedder.predict(test[0], verbose=0), test[1], k=(1,))
    return {
        "untrained_recall@1": untrained["recall@1"],
        "recall@1": trained["recall@1"], "map_at_r": trained["map_at_r"],
        "spread": history["class_spread"][-1], "gap": history["class_gap"][-1],
        **{f"R@{rho}": mean_regularizer(embedder, probe, rho) for rho in RHOS},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="a few steps (smoke test)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train, test = load_glyphs("train"), load_glyphs("test")
    epochs, steps = (1, 30) if args.fast else (args.epochs, len(train[1]) // (CLASSES_PER_BATCH * SAMPLES_PER_CLASS))
    print(f"glyphs: {len(np.unique(train[1]))} training characters ({len(train[1])} images), "
          f"{len(np.unique(test[1]))} unseen test characters; {epochs} epoch(s) of {steps} P x K batches")
    results = {}
    for name, loss in (("triplet", TripletLoss()), ("triplet + DensityAdaptive()", DensityAdaptive(TripletLoss()))):
        results[name] = r = train_and_measure(loss, train, test, epochs, steps, args.seed)
        print(f"{name:<28} Recall@1 {r['untrained_recall@1']:.3f} -> {r['recall@1']:.3f}  MAP@R {r['map_at_r']:.3f}  "
              f"spread/gap {r['spread']:.3f}/{r['gap']:.3f} = {r['spread'] / r['gap']:.2f}  "
              + "  ".join(f"R(rho={rho}) {r[f'R@{rho}']:.4f}" for rho in RHOS), flush=True)
    print("\nReading: a triplet loss stops pulling a class together once its margin is met, so spread / gap "
          "stays far above 0.125: at rho=0.125 R is 0 on every batch, and a loss wrapped with it is the plain loss. "
          "R grows with rho: the default 0.25 reaches only the densest classes (often none after a short run), "
          "0.5 a large share. Whether any of it helps retrieval is a question for several seeds "
          "(evidence/density.py, docs/density.md), not for one run.")
    return results


if __name__ == "__main__":
    main()
