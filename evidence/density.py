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
2. `test-plain`, `test-wrapped`: each loss plain and wrapped with the chosen setting, trained on all
   training classes, scored on the test classes; seeds `TEST_SEEDS`.

Two regimes (`--regime`) and two starts (`--start`, `harness.STARTS`):

- `standard`: every training character, P x K = 16 x 4, `EPOCHS` epochs (the sections
  `sweep`, `chosen`, `test_plain`, `test_wrapped` from the random start; from another
  start their names end in `_standard_<start>`);
- `packed`: the regime the paper describes, classes packed too tightly: only
  `PACKED["classes"]` training characters, P x K = 8 x 8, trained for `PACKED["epochs"]`
  epochs of `PACKED["steps"]` batches (each image seen about 28 times); sections end in
  `_packed_<start>`. The sweep's choice is made only among settings that engage (open
  hinges for at least `ENGAGED` of the training classes at the last epoch, averaged over
  the three losses), best mean validation MAP@R.

Writes evidence/results/density.json (after every run, so a partial sweep survives).

Run:  nice -n 5 python -m evidence.density            (sweep, then test; add --regime packed, --start glyphs)
      nice -n 5 python -m evidence.density --phase test-plain     (in parallel with --phase sweep)
      nice -n 5 python -m evidence.density --phase test-wrapped   (after the sweep, or with --setting W RHO)
"""
import argparse
import functools

import numpy as np

from evidence import harness
from keras_dml.losses import ContrastiveLoss, DensityAdaptive, NPairLoss, TripletLoss
from keras_dml.losses.density import class_statistics

LOSSES = {"contrastive": ContrastiveLoss, "n-pair": NPairLoss, "triplet": TripletLoss}
# (weight, rho). The old default (3.0, 0.125) is not swept: the plain runs record that its hinge
# never opens (active@0.125 = 0), and then the wrapped loss is the plain loss exactly.
GRID = ((1.0, 0.25), (1.0, 0.5))
RHOS = (0.125, 0.25, 0.5)
SWEEP_SEEDS = (0,)  # one seed: the shared 2-core machine allows no more (docs/density.md says so)
TEST_SEEDS = (0, 1, 2)
EPOCHS = 3
CLASSES_PER_BATCH, SAMPLES_PER_CLASS = 16, 4
PROBE_BATCHES = 8
# The packed regime: few training classes, long training; its own grid of (weight, rho).
PACKED = {"classes": 10, "epochs": 6, "steps": 40, "batch": (8, 8),
          "grid": ((1.0, 0.25), (1.0, 0.5), (3.0, 0.25))}
ENGAGED = 0.1


def probe_batches(labels, batch, seed=0):
    """Indices of `PROBE_BATCHES` fixed P x K batches (`batch` = (P, K)) of the training set."""
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    return [np.concatenate([rng.choice(by_class[c], batch[1], replace=False)
                            for c in rng.choice(len(by_class), batch[0], replace=False)])
            for _ in range(PROBE_BATCHES)]


def density_monitor(images, labels, batch):
    """`measure(embedder)` for `harness.run`: spread, gap and open hinges on training P x K batches."""
    batches = probe_batches(labels, batch)

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


def regime_options(regime, epochs=None):
    """`(epochs, (P, K), steps_per_epoch or None, grid)` of a regime; `epochs` overrides its epochs."""
    if regime == "packed":
        return epochs or PACKED["epochs"], PACKED["batch"], PACKED["steps"], PACKED["grid"]
    return epochs or EPOCHS, (CLASSES_PER_BATCH, SAMPLES_PER_CLASS), None, GRID


def load(mode, regime):
    """`harness.load(mode)`; in the packed regime only `PACKED["classes"]` of its training classes
    (a fixed draw), relabelled from 0."""
    train_images, train_labels, eval_images, eval_labels = harness.load(mode)
    if regime == "packed":
        few = np.random.default_rng(harness.SPLIT_SEED).permutation(np.unique(train_labels))[: PACKED["classes"]]
        keep = np.isin(train_labels, few)
        train_images, train_labels = train_images[keep], np.unique(train_labels[keep], return_inverse=True)[1]
        train_labels = train_labels.astype("int32")
    return train_images, train_labels, eval_images, eval_labels


def train(name, setting, seed, data, epochs, regime="standard", start="random"):
    epochs, batch, steps, _ = regime_options(regime, epochs)
    options = harness.STARTS[start]
    return harness.run(criterion(name, setting), seed=seed, epochs=epochs, data=data,
                       classes_per_batch=batch[0], samples_per_class=batch[1], steps_per_epoch=steps,
                       backbone=options["backbone"], weights=options["weights"],
                       learning_rate=options["learning_rate"], measure=density_monitor(data[0], data[1], batch))


def label(setting):
    return "plain" if setting is None else f"weight={setting[0]}, rho={setting[1]}"


def section(name, regime, start):
    """The JSON section of phase `name`: the bare name for the standard regime from the random start."""
    return name if (regime, start) == ("standard", "random") else f"{name}_{regime}_{start}"


def summarise(runs):
    last = [r["epochs"][-1] for r in runs]
    keys = ["recall@1", "map_at_r", "spread", "gap", "ratio_median", *(f"active@{rho}" for rho in RHOS)]
    summary = {key: harness.summary(e[key] for e in last) for key in keys}
    # largest share of open hinges at any epoch after the first: did it ever switch on?
    summary["max_active@0.125"] = max(e["active@0.125"] for r in runs for e in r["epochs"][1:])
    return summary


def save(name, content, epochs):
    """Merge section `name` into results/density.json, keeping the sections and rows other runs wrote."""
    settings = {
        "losses": "keras_dml defaults: " + ", ".join(f"{n}: {c().get_config()}" for n, c in LOSSES.items()),
        "starts": harness.STARTS, "embedding_dim": 64, "optimizer": "Adam",
        "standard": {"batches": f"P x K = {CLASSES_PER_BATCH} x {SAMPLES_PER_CLASS}", "epochs": EPOCHS,
                     "grid (weight, rho)": GRID},
        "packed": {**PACKED, "engaged": f"open hinges for >= {ENGAGED} of classes at the setting's rho"},
        "probe": f"{PROBE_BATCHES} fixed P x K batches of the training classes"}
    return harness.update("density", name, content, settings)


def choose(sweep, grid, regime):
    """The setting of `grid` with the best mean validation MAP@R among those swept; in the packed
    regime only among those that engage (`ENGAGED`). None when there is none."""
    rows = sweep["rows"]
    candidates = [s for s in grid if label(s) in rows and (regime == "standard" or rows[label(s)]["engaged"] >= ENGAGED)]
    return max(candidates, key=lambda s: rows[label(s)]["mean_map_at_r"], default=None)


def engaged(row, rho):
    """Mean over the losses of the share of classes with an open hinge at `rho`, last epoch."""
    return float(np.mean([row[name][f"active@{rho}"]["mean"] for name in LOSSES]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=("all", "sweep", "choose", "test-plain", "test-wrapped"), default="all",
                        help="test-plain and test-wrapped can run in parallel with the sweep (each writes its section); "
                             "choose: the choice among the settings swept so far")
    parser.add_argument("--regime", choices=("standard", "packed"), default="standard")
    parser.add_argument("--start", choices=("random", "glyphs"), default="random")
    parser.add_argument("--setting", type=float, nargs=2, metavar=("WEIGHT", "RHO"),
                        help="test this (weight, rho) instead of the sweep's choice")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES), default=list(LOSSES),
                        help="test phases only: these losses (runs for different losses can go in parallel)")
    parser.add_argument("--seeds", nargs="+", type=int, help="test phases only: these seeds")
    parser.add_argument("--rows", nargs="+", metavar="ROW",
                        help="sweep only: these rows, 'plain' or 'WEIGHT,RHO' of the grid (rows can go in parallel)")
    args = parser.parse_args()
    if args.start not in harness.STARTS:
        raise SystemExit(f"--start {args.start}: this keras_dml has no pretrained glyph backbone.")
    epochs, _, _, grid = regime_options(args.regime, args.epochs)
    run = functools.partial(train, epochs=epochs, regime=args.regime, start=args.start)

    def name(phase):
        return section(phase, args.regime, args.start)

    if args.phase in ("all", "sweep"):
        data = load("validation", args.regime)
        sweep = {"seeds": SWEEP_SEEDS, "rows": {}}
        rows = (None, *grid) if not args.rows else [
            None if r == "plain" else next(s for s in grid if s == tuple(map(float, r.split(",")))) for r in args.rows]
        for setting in rows:
            row = {}
            for loss in LOSSES:
                runs = [run(loss, setting, seed, data) for seed in SWEEP_SEEDS]
                row[loss] = {"runs": runs, **summarise(runs)}
                print(name("sweep"), label(setting), loss, round(row[loss]["map_at_r"]["mean"], 4), flush=True)
            row["mean_map_at_r"] = float(np.mean([row[loss]["map_at_r"]["mean"] for loss in LOSSES]))
            if setting is not None:
                row["engaged"] = engaged(row, setting[1])
            sweep["rows"][label(setting)] = row
            save(name("sweep"), sweep, epochs)
    if args.phase in ("all", "sweep", "choose"):
        sweep = harness.results("density")[name("sweep")]
        best = choose(sweep, grid, args.regime)
        print(name("chosen"), best if best else "none: no setting of the sweep engages", flush=True)
        save(name("chosen"), best and list(best), epochs)

    data = load("test", args.regime) if args.phase not in ("sweep", "choose") else None
    seeds = tuple(args.seeds or TEST_SEEDS)
    if args.phase in ("all", "test-plain"):
        rows = {}
        for loss in args.losses:
            runs = [run(loss, None, seed, data) for seed in seeds]
            rows[loss] = {"runs": runs, **summarise(runs)}
            print(name("test_plain"), loss, round(rows[loss]["recall@1"]["mean"], 4), flush=True)
            save(name("test_plain"), {"seeds": seeds, "rows": rows}, epochs)
    if args.phase in ("all", "test-wrapped"):
        chosen = harness.results("density").get(name("chosen"))
        setting = tuple(args.setting) if args.setting else chosen and tuple(chosen)
        if setting is None:
            raise SystemExit(f"{name('chosen')}: no setting chosen (none engaged); pass --setting WEIGHT RHO.")
        rows = {}
        for loss in args.losses:
            runs = [run(loss, setting, seed, data) for seed in seeds]
            rows[loss] = {"runs": runs, **summarise(runs)}
            print(name("test_wrapped"), label(setting), loss, round(rows[loss]["recall@1"]["mean"], 4), flush=True)
            save(name("test_wrapped"), {"seeds": seeds, "setting": list(setting), "rows": rows}, epochs)


if __name__ == "__main__":
    main()
