"""Easy positives against class collapse: does a triplet loss keep a class's modes apart?

Levi et al. (ICCV 2021) argue that margin losses pairing each anchor with all (or the
hardest) same-class samples pull every mode of a class onto one point, while pairing it
with its nearest same-class sample ("easy positive") lets the modes survive.

Data: `--classes` classes, each a mixture of 3 Gaussian modes (unit-norm centres drawn
at random in a `--input-dim` space, noise std 0.2 per coordinate: modes are well
separated, and modes of different classes are interleaved); a held-out set is drawn
from the same modes. The same small MLP embedder
is trained with `TripletLoss(margin, positive=..., negative="semihard")` for "hard",
"all" and "easy" positives, on batches holding 12 samples of every class, and
scored on the held-out set: the mode-preservation score (share of each sample's 5
nearest same-class neighbours from its own mode; ~0.3 for a merged class, 1 for intact
modes), the modes kept per class (of 3), and Recall@1.

Run:  python examples/class_collapse.py [--margin 1.0]   (3 seeds, about 1-2 minutes a seed on 2 CPU cores)
      python examples/class_collapse.py --fast     (1 seed, few steps: a smoke test)
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dml.evaluation import retrieval_metrics  # noqa: E402
from keras_dml.evaluation.diagnostics import mode_preservation  # noqa: E402
from keras_dml.losses.pair import TripletLoss  # noqa: E402

MODES = 3
NOISE = 0.2


def make_modal_sets(classes, input_dim, per_mode, seed):
    """`(train, test)`, each `(x, labels, mode_ids)` drawn from the same mode centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, MODES, input_dim))
    centres /= np.linalg.norm(centres, axis=-1, keepdims=True)

    def draw():
        labels = np.repeat(np.arange(classes), MODES * per_mode)
        modes = np.tile(np.repeat(np.arange(MODES), per_mode), classes)
        x = centres[labels, modes] + NOISE * rng.normal(size=(len(labels), input_dim))
        return x.astype("float32"), labels.astype("int32"), modes

    return draw(), draw()


def class_balanced_order(labels, per_class, steps, rng):
    """Indices laying out `steps` batches, each holding `per_class` samples of every class."""
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    batches = [np.concatenate([rng.choice(members, per_class, replace=False) for members in by_class])
               for _ in range(steps)]
    return np.concatenate(batches), per_class * len(by_class)


def train_embedder(train, positive, margin, steps, seed, embedding_dim=16):
    keras.utils.set_random_seed(seed)
    x, labels, _ = train
    model = keras.Sequential([
        keras.Input((x.shape[1],)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(embedding_dim),
        keras.layers.UnitNormalization(),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=TripletLoss(margin=margin, positive=positive, negative="semihard"),
                  jit_compile=True)
    order, batch_size = class_balanced_order(labels, per_class=12, steps=steps, rng=np.random.default_rng(seed))
    model.fit(x[order], labels[order], batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="one seed, few steps (smoke test)")
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--input-dim", type=int, default=8)
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    steps, seeds = (30, [0]) if args.fast else (args.steps, args.seeds)

    rows = {positive: [] for positive in ("hard", "all", "easy")}
    for seed in seeds:
        train, test = make_modal_sets(args.classes, args.input_dim, per_mode=40, seed=seed)
        untrained = mode_preservation(test[0], test[1], test[2], k=5)
        print(f"seed {seed}: input space  mode score {untrained['score']:.3f}  modes kept {untrained['modes_kept']:.2f}")
        for positive in rows:
            model = train_embedder(train, positive, args.margin, steps, seed)
            embeddings = model.predict(test[0], verbose=0)
            modes = mode_preservation(embeddings, test[1], test[2], k=5)
            recall = retrieval_metrics(embeddings, test[1], k=(1,))["recall@1"]
            rows[positive].append((modes["score"], modes["modes_kept"], recall))
            print(f"seed {seed}: positive={positive:<5} mode score {modes['score']:.3f}  "
                  f"modes kept {modes['modes_kept']:.2f}  Recall@1 {recall:.3f}")

    print(f"\n{len(seeds)} seed(s) {seeds}, {steps} steps, {args.classes} classes x {MODES} modes "
          f"in {args.input_dim}-d, margin {args.margin}, mean +- std over seeds")
    print("| positive | mode score | modes kept (of 3) | Recall@1 |")
    print("|---|---|---|---|")
    for positive, values in rows.items():
        mean, std = np.mean(values, axis=0), np.std(values, axis=0)
        print(f"| {positive} | {mean[0]:.3f} +- {std[0]:.3f} | {mean[1]:.2f} +- {std[1]:.2f} | "
              f"{mean[2]:.3f} +- {std[2]:.3f} |")


if __name__ == "__main__":
    main()
