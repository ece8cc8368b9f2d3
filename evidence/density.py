"""Evidence for docs/density.md: does `DensityAdaptive` switch on, and does it help?

The regularizer penalises a class `c` of a batch only while `sigma_c < rho * g_c`
(spread below `rho` times the gap to the nearest other class centre). For every run
this script records, after every epoch, on fixed P x K batches of the *training*
classes: the mean spread, the mean gap, the median ratio `sigma_c / g_c`, and the share
of classes whose hinge is open at `rho` = 0.125, 0.25, 0.5. So the table says both
what the regularizer did to retrieval and whether it was active at all.

1. `sweep`: contrastive, N-pair and triplet losses, plain and wrapped with each
   `(weight, rho)` of `GRID`, trained on the training classes minus a quarter of them
   and scored (MAP@R) on that quarter (validation classes; the test classes are not
   used); seeds `SWEEP_SEEDS`. The chosen setting has the best validation MAP@R
   averaged over the three losses and the seeds.
2. `test`: each loss plain and wrapped with the chosen setting, trained on all
   training classes, scored on the test classes; seeds `TEST_SEEDS`.

Writes evidence/results/density.json (after every run, so a partial sweep survives).

Run:  nice -n 5 python -m evidence.density            (sweep, then test)
      nice -n 5 python -m evidence.density --phase test --setting 1.0 0.5
"""
import argparse
import json
import os

import numpy as np

from evidence import harness
from keras_dml.losses import ContrastiveLoss, DensityAdaptive, NPairLoss, TripletLoss
from keras_dml.losses.density import class_statistics

LOSSES = {"contrastive": ContrastiveLoss, "n-pair": NPairLoss, "triplet": TripletLoss}
# (weight, rho). The old default (3.0, 0.125) is not swept: the plain runs record that its hinge
# never opens (active@0.125 = 0), and then the wrapped loss is the plain loss exactly.
GRID = ((1.0, 0.25), (1.0, 0.5), (3.0, 0.5))
RHOS = (0.125, 0.25, 0.5)
SWEEP_SEEDS = (0, 1)
TEST_SEEDS = (0, 1, 2)
EPOCHS = 3
CLASSES_PER_BATCH, SAMPLES_PER_CLASS = 16, 4
PROBE_BATCHES = 8


def probe_batches(labels, seed=0):
    """Indices of `PROBE_BATCHES` fixed P x K batches of the training set."""
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    return [np.concatenate([rng.choice(by_class[c], SAMPLES_PER_CLASS, replace=False)
                            for c in rng.choice(len(by_class), CLASSES_PER_BATCH, replace=False)])
            for _ in range(PROBE_BATCHES)]


def density_monitor(images, labels):
    """`measure(embedder)` for `harness.run`: spread, gap and open hinges on training P x K batches."""
    batches = probe_batches(labels)

    def measure(embedder):
        embeddings = np.split(embedder.predict(images[np.concatenate(batches)], verbose=0), len(batches))
        spreads, gaps, weights = [], [], []
        for idx, batch_embeddings in zip(batches, embeddings):
            spread, gap, weight, valid = class_statistics(labels[idx], batch_embeddings)
            valid = np.asarray(valid)
            spreads.append(np.asarray(spread)[valid])
            gaps.append(np.asarray(gap)[valid])
            weights.append(np.asarray(weight)[valid])  # 1 / class size: each class counted once
        spread, gap, weight = np.concatenate(spreads), np.concatenate(gaps), np.concatenate(weights)
        ratio = spread / gap
        values = {"spread": np.sum(weight * spread) / np.sum(weight), "gap": np.sum(weight * gap) / np.sum(weight),
                  "ratio_median": np.median(ratio), "ratio_min": np.min(ratio)}
        values.update({f"active@{rho}": np.sum(weight * (ratio < rho)) / np.sum(weight) for rho in RHOS})
        return {key: round(float(value), 4) for key, value in values.items()}

    return measure


def criterion(name, setting):
    def make(num_classes, embedding_dim):
        base = LOSSES[name]()
        return base if setting is None else DensityAdaptive(base, weight=setting[0], rho=setting[1])
    return make


def train(name, setting, seed, data, epochs):
    return harness.run(criterion(name, setting), seed=seed, epochs=epochs, data=data,
                       classes_per_batch=CLASSES_PER_BATCH, samples_per_class=SAMPLES_PER_CLASS,
                       measure=density_monitor(data[0], data[1]))


def label(setting):
    return "plain" if setting is None else f"weight={setting[0]}, rho={setting[1]}"


def summarise(runs):
    last = [r["epochs"][-1] for r in runs]
    keys = ["recall@1", "map_at_r", "spread", "gap", "ratio_median", *(f"active@{rho}" for rho in RHOS)]
    summary = {key: harness.summary(e[key] for e in last) for key in keys}
    # largest share of open hinges at any epoch after the first: did it ever switch on?
    summary["max_active@0.125"] = max(e["active@0.125"] for r in runs for e in r["epochs"][1:])
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=("all", "sweep", "test"), default="all")
    parser.add_argument("--setting", type=float, nargs=2, metavar=("WEIGHT", "RHO"),
                        help="skip the choice: test this (weight, rho)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    path = os.path.join(harness.RESULTS, "density.json")
    payload = json.load(open(path)) if os.path.exists(path) and args.phase == "test" else {}
    payload["settings"] = {"losses": "keras_dml defaults: " + ", ".join(f"{n}: {c().get_config()}" for n, c in LOSSES.items()),
                           "embedder": "small_cnn, 64-d", "batches": f"P x K = {CLASSES_PER_BATCH} x {SAMPLES_PER_CLASS}",
                           "optimizer": "Adam 1e-3", "epochs": args.epochs, "grid": GRID,
                           "probe": f"{PROBE_BATCHES} fixed P x K batches of the training classes"}

    if args.phase in ("all", "sweep"):
        data = harness.load("validation")
        payload["sweep"] = {"seeds": SWEEP_SEEDS, "rows": {}}
        for setting in (None, *GRID):
            row = {}
            for name in LOSSES:
                runs = [train(name, setting, seed, data, args.epochs) for seed in SWEEP_SEEDS]
                row[name] = {"runs": runs, **summarise(runs)}
                print(label(setting), name, round(row[name]["map_at_r"]["mean"], 4),
                      "active@0.125", row[name]["max_active@0.125"], flush=True)
            row["mean_map_at_r"] = float(np.mean([row[name]["map_at_r"]["mean"] for name in LOSSES]))
            payload["sweep"]["rows"][label(setting)] = row
            harness.write("density", payload)
        best = max(GRID, key=lambda s: payload["sweep"]["rows"][label(s)]["mean_map_at_r"])
        payload["chosen"] = list(best)
        harness.write("density", payload)

    if args.phase in ("all", "test"):
        setting = tuple(args.setting) if args.setting else tuple(payload["chosen"])
        payload["chosen"] = list(setting)
        data = harness.load("test")
        payload["test"] = {"seeds": TEST_SEEDS, "setting": list(setting), "rows": {}}
        for name in LOSSES:
            for variant in (None, setting):
                runs = [train(name, variant, seed, data, args.epochs) for seed in TEST_SEEDS]
                payload["test"]["rows"][f"{name}, {label(variant)}"] = {"runs": runs, **summarise(runs)}
                print("test", name, label(variant), round(payload["test"]["rows"][f"{name}, {label(variant)}"]["recall@1"]["mean"], 4), flush=True)
                harness.write("density", payload)


if __name__ == "__main__":
    main()
