"""Density adaptivity on the digits zero-shot split: each pair loss with and without
`DensityAdaptive`.

The regularizer (IEEE TMM 2020; docs/methods.md section 5) penalises a class whose spread is
below `rho` times the distance to the nearest other class centre; the paper reports
consistent Recall@1 gains for contrastive, N-pair and triplet losses. This script checks
that claim in miniature:

1. Sweep `weight` x `rho` on a validation split carved from the *training* classes
   (fit on digits 0-2, evaluate on the unseen digits 3-4), seeds 0 and 1, and keep the
   pair with the best MAP@R averaged over the three losses and both seeds. The test
   classes are not used.
2. Train on digits 0-4 and evaluate on the unseen digits 5-9, each loss plain and
   wrapped with the chosen pair, over seeds 0, 1, 2: held-out Recall@1, MAP@R, and the
   density of the held-out classes as spread / gap (mean intra-class spread over mean
   distance to the nearest other class centre; see `class_structure`).

Embedder: a small MLP (64-64-32, L2-normalised), Adam 1e-3, batches of 16 samples of
every training class. Losses use their keras_dml defaults.

Run:  python examples/density.py          (about 15 minutes on 2 shared CPU cores)
      python examples/density.py --fast   (smoke test: triplet only, one seed, few steps, one sweep point)
"""
import argparse
import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dml.data import load_digits  # noqa: E402
from keras_dml.evaluation import retrieval_metrics  # noqa: E402
from keras_dml.evaluation.diagnostics import class_structure  # noqa: E402
from keras_dml.losses.density import DensityAdaptive  # noqa: E402
from keras_dml.losses.pair import ContrastiveLoss, NPairLoss, TripletLoss  # noqa: E402

LOSSES = {"contrastive": ContrastiveLoss, "n-pair": NPairLoss, "triplet": TripletLoss}
WEIGHTS = (0.3, 1.0, 3.0)
RHOS = (0.125, 0.25)
SWEEP_SEEDS = (0, 1)
PER_CLASS = 16


def batch_order(labels, steps, rng):
    """Indices of `steps` batches, each with `PER_CLASS` samples of every class."""
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    picks = [[rng.choice(members, PER_CLASS, replace=False) for members in by_class] for _ in range(steps)]
    return np.concatenate([np.concatenate(batch) for batch in picks]), PER_CLASS * len(by_class)


def evaluate(loss, train, test, steps, seed):
    """Fit a fresh MLP embedder with `loss` on `train`; Recall@1, MAP@R and spread / gap on `test`."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(train[0].shape[1:]),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(32),
        keras.layers.UnitNormalization(),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=True)
    order, batch_size = batch_order(train[1], steps, np.random.default_rng(seed))
    model.fit(train[0][order], train[1][order], batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    embeddings = model.predict(test[0], verbose=0)
    metrics = retrieval_metrics(embeddings, test[1], k=(1,))
    structure = class_structure(embeddings, test[1])
    return metrics["recall@1"], metrics["map_at_r"], structure["spread"] / structure["gap"]


def make_loss(name, weight=None, rho=None):
    base = LOSSES[name]()
    return base if weight is None else DensityAdaptive(base, weight=weight, rho=rho)


def sweep(images, labels, names, grid, steps, seeds):
    """Validation MAP@R (mean over `seeds`) of every loss, plain and with each `(weight, rho)` in `grid`."""
    fit_part, val_part = labels < 3, labels >= 3
    train = images[fit_part], labels[fit_part]
    val = images[val_part], labels[val_part]
    print("| setting | " + " | ".join(names) + " | mean |\n|---|" + "---|" * (len(names) + 1))
    scores = {}
    for setting in [None] + list(grid):
        maps = [np.mean([evaluate(make_loss(name, *(setting or (None, None))), train, val, steps, seed)[1]
                         for seed in seeds]) for name in names]
        scores[setting] = float(np.mean(maps))
        label = "plain" if setting is None else f"weight={setting[0]}, rho={setting[1]}"
        print(f"| {label} | " + " | ".join(f"{m:.3f}" for m in maps) + f" | {scores[setting]:.3f} |", flush=True)
    return max(grid, key=lambda setting: scores[setting])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="triplet only, one seed, few steps, one sweep point (smoke test)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    steps, seeds, sweep_seeds = (20, [0], [0]) if args.fast else (args.steps, args.seeds, SWEEP_SEEDS)
    grid = [(WEIGHTS[0], RHOS[1])] if args.fast else list(itertools.product(WEIGHTS, RHOS))
    names = ["triplet"] if args.fast else list(LOSSES)

    train, test = load_digits("train"), load_digits("test")
    print(f"Sweep: fit on digits 0-2, validation MAP@R on digits 3-4, mean over seeds {list(sweep_seeds)}, "
          f"{steps} steps")
    weight, rho = sweep(*train, names, grid, steps, sweep_seeds)
    print(f"\nChosen: weight={weight}, rho={rho}\n")

    print(f"Test: fit on digits 0-4, evaluate on digits 5-9 ({len(test[1])} queries), "
          f"seeds {seeds}, {steps} steps, mean +- std over seeds")
    print("| loss | Recall@1 | MAP@R | spread / gap | Recall@1 + DA | MAP@R + DA | spread / gap + DA |\n"
          "|---|---|---|---|---|---|---|")
    for name in names:
        plain = [evaluate(make_loss(name), train, test, steps, seed) for seed in seeds]
        wrapped = [evaluate(make_loss(name, weight, rho), train, test, steps, seed) for seed in seeds]
        cells = [f"{np.mean(values):.3f} +- {np.std(values):.3f}"
                 for runs in (plain, wrapped) for values in zip(*runs)]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
