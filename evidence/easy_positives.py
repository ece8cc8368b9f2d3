"""Evidence for docs/easy_positives.md: do easy positives keep the modes of a class apart?

Bed: `load_glyphs(by="group", group_size=4)`: a class is a fixed group of 4 characters,
so each class has 4 modes (its characters), each with many samples (every font's
renders of it); the test groups' characters are never seen in training. P x K batches
of `P` groups x `K` = 16 images (the reference code's 16 per class), so each character
of a class appears about 4 times in a batch and the easy (nearest) positive can be a
render of the anchor's own character.

`TripletLoss(margin, positive=..., negative="semihard")` for `positive` in "all",
"hard", "easy", from two starts: random weights and the pretrained glyph backbone
(`--start glyphs`, when keras_dml has it). Measured on the evaluation groups, before
training and after the last epoch:

- `recall@1`, `map_at_r`: retrieval of the group (the class);
- `mode_score`: `keras_dml.evaluation.mode_preservation(embeddings, groups, characters,
  k=MODE_K)`, the share of an image's `MODE_K` nearest same-group neighbours that show
  its own character (chance: about 1/4; intact modes: 1);
- `mode_nmi`: per group, k-means with 4 clusters on the group's embeddings against its
  characters, normalised mutual information, averaged over groups (0 = modes mixed,
  1 = one cluster per character).

Phases:

1. `validation`: for each start and positive, every margin of `MARGINS`, trained on the
   training groups minus a quarter of them (`harness.held_out`), scored on that quarter;
   seeds `VALIDATION_SEEDS`. Each (start, positive) gets the margin with the best
   validation retrieval of the group (Recall@1 then MAP@R from the random start, the
   other way round from the glyph start: `harness.STARTS`), not the mode score: the
   margin is tuned for the task, then we look at what the task did to the modes.
2. `test`: the chosen margin, trained on every training group, scored on the test groups;
   seeds `TEST_SEEDS`. Seed 0's test embeddings of `MAP_GROUPS` test groups are kept as a
   2-D t-SNE map (section `map`, drawn by `--phase picture`).

`--fonts large` renders the groups from matplotlib's fonts plus the machine's font
folders (`LARGE_FONTS`, one render per glyph; evidence only), with the font inventory
beside the results. Writes evidence/results/easy_positives.json after every run.

Run:  python -m evidence.easy_positives --phase validation [--start random|glyphs] [--fonts default|large]
      python -m evidence.easy_positives --phase test [--start ...] [--fonts ...] [--positives ...] [--seeds ...]
      python -m evidence.easy_positives --phase picture
      (runs with different --start, --fonts, --positives or --seeds can go in parallel)
"""
import argparse
import json
import os

import matplotlib
import numpy as np

import keras_dml
from evidence import harness
from keras_dml.evaluation.diagnostics import mode_preservation
from keras_dml.losses import TripletLoss

POSITIVES = ("all", "hard", "easy")
MARGINS = (0.1, 0.2)
VALIDATION_SEEDS = (0,)
TEST_SEEDS = (0, 1, 2)
EPOCHS = 4
GROUP_SIZE = 4
CLASSES_PER_BATCH, SAMPLES_PER_CLASS = 8, 16
MODE_K = 10  # a character has 36-66 images in its group with the default fonts
MAP_GROUPS = 4
LARGE_FONTS = (os.path.join(matplotlib.get_data_path(), "fonts", "ttf"), "/usr/share/fonts",
               "/usr/share/texmf/fonts/opentype/public/tex-gyre")
RENDERS = {"default": 3, "large": 1}
PAGE = "easy_positives"
PICTURE = os.path.join(os.path.dirname(harness.RESULTS), os.pardir, "docs", "images", "easy_positives_map.png")


def group_data(mode, fonts="default"):
    """`(train_images, train_labels, eval_images, eval_labels, eval_characters, fonts)` of the group bed."""
    options = {"by": "group", "group_size": GROUP_SIZE, "renders": RENDERS[fonts], "return_metadata": True,
               "fonts": None if fonts == "default" else list(LARGE_FONTS)}
    images, labels, meta = keras_dml.data.load_glyphs("train", **options)
    characters, font_names = np.asarray(meta["character"]), np.asarray(meta["font"])
    if mode == "test":
        eval_images, eval_labels, eval_meta = keras_dml.data.load_glyphs("test", **options)
        eval_characters = np.asarray(eval_meta["character"])
        font_names = np.concatenate([font_names, np.asarray(eval_meta["font"])])
    else:
        held = harness.held_out(labels)
        eval_images, eval_labels, eval_characters = images[held], labels[held], characters[held]
        images, labels = images[~held], labels[~held]
    labels = np.unique(labels, return_inverse=True)[1].astype("int32")
    return images, labels, eval_images, eval_labels, eval_characters, font_names


def mode_nmi(embeddings, labels, characters, seed=0):
    """Mean over classes of the NMI between k-means clusters (one per character) and the characters."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    embeddings = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    scores = []
    for c in np.unique(labels):
        members = labels == c
        modes = np.unique(characters[members])
        clusters = KMeans(len(modes), n_init=4, random_state=seed).fit_predict(embeddings[members])
        scores.append(normalized_mutual_info_score(characters[members], clusters))
    return float(np.mean(scores))


def mode_monitor(images, labels, characters, epochs, keep=None):
    """`measure(embedder)` for `harness.run`: mode score and NMI on the evaluation groups before
    training and after the last epoch; with `keep`, also stores the final embeddings in it."""
    calls = []

    def measure(embedder):
        calls.append(1)
        if len(calls) not in (1, epochs + 1):
            return {}
        embeddings = embedder.predict(images, batch_size=512, verbose=0)
        if keep is not None and len(calls) == epochs + 1:
            keep["embeddings"] = embeddings
        return {"mode_score": round(mode_preservation(embeddings, labels, characters, k=MODE_K)["score"], 4),
                "mode_nmi": round(mode_nmi(embeddings, labels, characters), 4)}
    return measure


def train(start, positive, margin, seed, data, epochs, keep=None, steps_per_epoch=None):
    options = harness.STARTS[start]
    return harness.run(lambda c, d: TripletLoss(margin=margin, positive=positive, negative="semihard"),
                       seed=seed, epochs=epochs, data=data[:4], classes_per_batch=CLASSES_PER_BATCH,
                       samples_per_class=SAMPLES_PER_CLASS, backbone=options["backbone"],
                       weights=options["weights"], learning_rate=options["learning_rate"],
                       steps_per_epoch=steps_per_epoch, measure=mode_monitor(data[2], data[3], data[4], epochs, keep))


def row(runs):
    """Per-seed runs and the mean +- std of every value at the last epoch and at epoch 0."""
    last = [k for k in runs[0]["epochs"][-1] if k not in ("epoch", "loss")]
    return {"runs": runs, **{k: harness.summary(r["epochs"][-1][k] for r in runs) for k in last},
            "untrained": {k: harness.summary(r["epochs"][0][k] for r in runs) for k in runs[0]["epochs"][0]
                          if k != "epoch"}}


def merged_runs(section, key, runs):
    """`runs` plus the seeds other processes already wrote under `section[key]` (seeds can run in parallel)."""
    document = harness.results(PAGE)
    old = document.get(section, {}).get(key, {}).get("runs", [])
    return sorted([r for r in old if r["seed"] not in {n["seed"] for n in runs}] + runs, key=lambda r: r["seed"])


def settings(args):
    return {"bed": f"load_glyphs(by='group', group_size={GROUP_SIZE}), renders {RENDERS}",
            "loss": "TripletLoss(margin, positive=..., negative='semihard')", "starts": harness.STARTS,
            "embedding_dim": 64, "optimizer": "Adam", "batches (P, K)": [CLASSES_PER_BATCH, SAMPLES_PER_CLASS],
            "epochs, steps_per_epoch": "per section, under 'run' (default steps: one pass over the training images)",
            "mode_k": MODE_K, "margins": MARGINS,
            "validation": "a quarter of the training groups (harness.held_out); chosen by the start's choose_by",
            "validation_seeds": VALIDATION_SEEDS, "test_seeds": TEST_SEEDS}


def section_name(phase, start, fonts):
    return f"{phase}_{start}" + ("" if fonts == "default" else f"_{fonts}_fonts")


def chosen_margin(start, positive):
    """The margin chosen on validation groups for `start`, or for the random start when `start`
    has no validation run of its own (the section `margin_from` says which)."""
    document = harness.results(PAGE)
    source = start if section_name("validation", start, "default") in document else "random"
    return document[section_name("validation", source, "default")][positive]["chosen_margin"], source


def map_points(embeddings, labels, characters):
    """t-SNE coordinates of the first `MAP_GROUPS` groups: `{"x", "y", "group", "character"}`."""
    from keras_dml.visualize import project_2d

    keep = labels < MAP_GROUPS
    points = project_2d(embeddings[keep], method="tsne", seed=0)
    points = (points - points.mean(0)) / points.std(0)
    return {"x": np.round(points[:, 0], 3).tolist(), "y": np.round(points[:, 1], 3).tolist(),
            "group": labels[keep].tolist(), "character": characters[keep].tolist()}


def picture(path=PICTURE):
    """Draw the `map` section: one panel per start (rows) and positive (columns)."""
    import matplotlib.pyplot as plt

    document = harness.results(PAGE)
    maps = document["map"]
    starts = [s for s in ("random", "glyphs") if s in maps]
    positives = ("hard", "all", "easy")
    figure, axes = plt.subplots(len(starts), len(positives), figsize=(3.4 * len(positives), 3.5 * len(starts)),
                                squeeze=False, dpi=110)
    markers = "os^D"
    for i, start in enumerate(starts):
        for j, positive in enumerate(positives):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if positive not in maps[start]:
                ax.set_title(f"{start} start, positive={positive}", fontsize=8)
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
                continue
            points = maps[start][positive]
            x, y, groups, chars = (np.asarray(points[k]) for k in ("x", "y", "group", "character"))
            for g in np.unique(groups):
                for m, char in enumerate(sorted(set(chars[groups == g].tolist()))):
                    pick = (groups == g) & (chars == char)
                    ax.scatter(x[pick], y[pick], s=9, color=plt.cm.tab10(g), marker=markers[m % 4], alpha=0.7,
                               linewidths=0)
            run = document[section_name("test", start, "default")][positive]["runs"][0]["epochs"][-1]
            ax.set_title(f"{start} start, positive={positive}\nseed 0: mode score {run['mode_score']:.2f}, "
                         f"NMI {run['mode_nmi']:.2f}", fontsize=8)
    figure.suptitle(f"t-SNE of {MAP_GROUPS} unseen test groups: colour = group, marker = character (a mode)",
                    fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    return os.path.normpath(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=("validation", "test", "picture"), required=True)
    parser.add_argument("--start", choices=("random", "glyphs"), default="random")
    parser.add_argument("--fonts", choices=tuple(RENDERS), default="default")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--positives", nargs="+", choices=POSITIVES, default=list(POSITIVES))
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--steps-per-epoch", type=int,
                        help="batches per epoch (default: one pass over the training images); with --fonts large "
                             "the default bed's count keeps the number of steps the same")
    args = parser.parse_args()
    if args.phase == "picture":
        print(picture())
        return
    if args.start not in harness.STARTS:
        raise SystemExit(f"--start {args.start}: this keras_dml has no pretrained glyph backbone.")
    data = group_data(args.phase, args.fonts)
    section = section_name(args.phase, args.start, args.fonts)
    sizes = {"train_groups": int(data[1].max() + 1), "eval_groups": int(len(np.unique(data[3]))),
             "train_images": int(len(data[1])), "eval_images": int(len(data[3])),
             "fonts": harness.inventory(data[5])}
    run = {"start": args.start, "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch}
    harness.update(PAGE, section, {"sizes": sizes, "run": run}, settings(args))
    for positive in args.positives:
        if args.phase == "validation":
            rows = {}
            for margin in MARGINS:
                runs = [train(args.start, positive, margin, seed, data, args.epochs)
                        for seed in args.seeds or VALIDATION_SEEDS]
                rows[str(margin)] = row(runs)
                print(section, positive, margin, {k: round(v["mean"], 4) for k, v in rows[str(margin)].items()
                                                  if k not in ("runs", "untrained")}, flush=True)
            best = max(MARGINS, key=lambda m: harness.choice_key(
                {k: v["mean"] for k, v in rows[str(m)].items() if k not in ("runs", "untrained")}, args.start))
            harness.update(PAGE, section, {positive: {"margins": rows, "chosen_margin": best}}, settings(args))
            continue
        margin, margin_from = chosen_margin(args.start, positive)
        runs, kept = [], {}
        for seed in args.seeds or TEST_SEEDS:
            keep = {} if seed == 0 and args.fonts == "default" else None
            runs.append(train(args.start, positive, margin, seed, data, args.epochs, keep, args.steps_per_epoch))
            print(json.dumps(runs[-1]), flush=True)  # a copy in the log
            content = {positive: {"margin": margin, "margin_from": f"validation_{margin_from}", **row(merged_runs(section, positive, runs[-1:]))}}
            harness.update(PAGE, section, content, settings(args))
            if keep:
                harness.update(PAGE, "map", {args.start: {positive: map_points(keep["embeddings"], data[3], data[4])}},
                               settings(args))
        print(section, positive, "done", flush=True)


if __name__ == "__main__":
    main()
