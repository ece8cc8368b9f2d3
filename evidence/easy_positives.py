"""Evidence for docs/easy_positives.md: easy vs hard vs all positives on glyphs.

`TripletLoss(margin=0.2, positive=..., negative="semihard")` (keras_dml defaults
otherwise), P x K batches, small CNN, for `positive` in "all", "hard", "easy":

1. `by="character"` (zero-shot: test characters unseen in training): Recall@1 and MAP@R
   on the test characters.
2. `by="font"` (a class is a typeface; its characters are the modes inside it):
   Recall@1 and MAP@R on the test fonts, and mode preservation
   (`keras_dml.evaluation.mode_preservation`, modes = characters, `k = 2`: with 3
   renders of each glyph, an image's 2 nearest same-font neighbours are the other two
   renders of its character when the modes are kept apart; chance is about 2 / (images
   per font)) on the training fonts (did the loss collapse the classes it trained on?)
   and on the test fonts (does the structure carry over?).

No hyperparameter is chosen here (every run uses the defaults), so no validation split is
needed. Seeds `SEEDS`; writes evidence/results/easy_positives.json after every run.

Run:  nice -n 5 python -m evidence.easy_positives [--by character|font] [--positives easy ...] [--seeds 0 ...]
      (runs with different --by, --positives or --seeds can go in parallel: each adds its runs to the JSON)
"""
import argparse
import json
import os

import numpy as np

import keras_dml
from evidence import harness
from keras_dml.evaluation.diagnostics import mode_preservation
from keras_dml.losses import TripletLoss

POSITIVES = ("all", "hard", "easy")
SEEDS = (0, 1, 2)
EPOCHS = 4
BATCHES = {"character": (16, 4), "font": (8, 8)}  # (P, K): fonts are few, so more samples of each
MODE_K = 2


def font_data():
    """`(train, test)` of `load_glyphs(by="font")`, each `(images, labels, characters)`."""
    sets = []
    for split in ("train", "test"):
        images, labels, meta = keras_dml.data.load_glyphs(split=split, by="font", return_metadata=True)
        sets.append((images, labels, np.asarray(meta["character"])))
    return sets


def mode_monitor(train, test, epochs):
    """`measure(embedder)` for `harness.run`: mode preservation on training and test fonts,
    before training and after the last epoch (it costs as much as an epoch of training)."""
    calls = []

    def measure(embedder):
        calls.append(1)
        if len(calls) not in (1, epochs + 1):
            return {}
        values = {}
        for name, (images, labels, characters) in (("train", train), ("test", test)):
            embeddings = embedder.predict(images, batch_size=512, verbose=0)
            modes = mode_preservation(embeddings, labels, characters, k=MODE_K)
            values[f"mode_score_{name}"] = round(modes["score"], 4)
        return values
    return measure


def save(section, content, settings):
    """Merge `section` into results/easy_positives.json, keeping what other runs of this script wrote."""
    harness.update("easy_positives", section, content, settings)


def save_runs(section, positive, runs, settings):
    """Add `runs` (one per seed) to the row `positive` of `section` and re-summarise it, keeping
    the seeds other processes wrote, so that seeds can run in parallel."""
    path = os.path.join(harness.RESULTS, "easy_positives.json")
    document = json.load(open(path)) if os.path.exists(path) else {}
    old = document.get(section, {}).get(positive, {}).get("runs", [])
    runs = sorted([r for r in old if r["seed"] not in {n["seed"] for n in runs}] + runs, key=lambda r: r["seed"])
    keys = [k for k in runs[0]["epochs"][-1] if k not in ("epoch", "loss")]
    row = {"runs": runs, **{k: harness.summary(r["epochs"][-1][k] for r in runs) for k in keys}}
    save(section, {positive: row}, settings)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--by", choices=("character", "font", "both"), default="both")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--positives", nargs="+", choices=POSITIVES, default=list(POSITIVES))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--random-batches", action="store_true",
                        help="shuffled batches of 128 instead of P x K (the set-up of the run that raised the "
                             "class-collapse question); results go to by_<by>_random")
    args = parser.parse_args()
    settings = {"loss": "TripletLoss(margin=0.2, positive=..., negative='semihard')",
                "embedder": "small_cnn, 64-d", "optimizer": "Adam 1e-3", "epochs": args.epochs,
                "batches (P, K)": BATCHES, "mode_k": MODE_K, "seeds": SEEDS}
    for by in ("character", "font") if args.by == "both" else (args.by,):
        section = {}
        if by == "character":
            data, monitor = harness.load("test"), None
        else:
            train, test = font_data()
            train_labels = np.unique(train[1], return_inverse=True)[1].astype("int32")
            data, monitor = (train[0], train_labels, test[0], test[1]), lambda: mode_monitor(train, test, args.epochs)
            section["pixels_mode_score"] = {
                name: round(mode_preservation(images.reshape(len(images), -1), labels, characters, k=MODE_K)["score"], 4)
                for name, (images, labels, characters) in (("train", train), ("test", test))}
            section["sizes"] = {"train_fonts": int(len(np.unique(train[1]))), "test_fonts": int(len(np.unique(test[1]))),
                                "train_images": int(len(train[1])), "test_images": int(len(test[1]))}
        classes_per_batch, samples_per_class = BATCHES[by]
        for positive in args.positives:
            runs = [harness.run(lambda c, d, positive=positive: TripletLoss(positive=positive, negative="semihard"),
                                seed=seed, epochs=args.epochs, data=data, classes_per_batch=classes_per_batch,
                                samples_per_class=samples_per_class, measure=monitor and monitor(),  # one per run
                                batch="random" if args.random_batches else "pk", batch_size=128) for seed in args.seeds]
            print(json.dumps(runs), flush=True)  # a copy in the log
            name = f"by_{by}_random" if args.random_batches else f"by_{by}"
            save(name, section, settings)
            row = save_runs(name, positive, runs, settings)
            print(by, positive, {k: round(v["mean"], 4) for k, v in row.items() if k != "runs"}, flush=True)


if __name__ == "__main__":
    main()
