"""Evidence for docs/pddm.md: PDDM against triplets (all pairs, and the hardest pairs by
distance) epoch by epoch on held-out glyphs, from a random start and from the
glyph-pretrained backbone; PDDM re-ranking of the top 10; and why PDDMLoss hardly learns
from a random start.

Phases (each adds to `evidence/results/pddm.json`, under the start):

- `operating_point` (random start only): at the untrained small CNN, on one P x K batch,
  the gradient that the score hinge `E_m` and the embedding hinge `E_e` each send to the
  embeddings, and how the positive mined by the untrained unit ranks by distance;
- `validation`: each method's small grid (learning rate; for PDDM also `beta`, `lam`)
  on validation characters carved from the training split (seed 0); per method the
  setting with the best final validation metrics is kept (Recall@1 then MAP@R
  from the random start; MAP@R first from the glyph start, where every setting's
  Recall@1 is 0.97-0.99: `harness.STARTS`);
- `test`: the chosen settings on the test characters, 3 seeds, Recall@1 after every
  epoch (the paper claims faster convergence), Euclidean retrieval on the embedding (the
  paper's main protocol) and, for PDDM, re-ranking of each query's top 10 by the unit.

    python evidence/pddm.py                             # every phase, random start
    python evidence/pddm.py validation test --start glyphs
    python evidence/pddm.py test --methods pddm         # one phase, one method
    python evidence/pddm.py validation test --start glyphs --epochs 6,5  # validation and test epochs
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from evidence import harness  # noqa: E402
from keras_dml.losses import TripletLoss  # noqa: E402
from keras_dml.losses.pddm import PDDMLoss  # noqa: E402
from keras_dml.models import build_embedder  # noqa: E402

PAGE = "pddm"
EPOCHS = 10  # validation
TEST_EPOCHS = 5  # test: fewer, for lack of CPU time on the shared machine (the curves are flat after 5)
SEEDS = (0, 1, 2)
METHODS = ("triplet", "triplet_hard", "pddm")


def grid(start):
    """name -> setting: `{"method", "loss" (its arguments), "learning_rate"}`."""
    low, high = (1e-3, 3e-3) if start == "random" else (1e-4, 1e-3)

    def setting(method, lr=low, **loss):
        return {"method": method, "loss": loss, "learning_rate": lr}

    settings = [setting("triplet"), setting("triplet", high),
                setting("triplet_hard"), setting("triplet_hard", high),
                setting("pddm"), setting("pddm", beta=1.0), setting("pddm", lam=5.0)]
    return {name_of(s): s for s in settings}


def name_of(setting):
    arguments = "".join(f", {k} {v:g}" for k, v in setting["loss"].items())
    return f"{setting['method']} (lr {setting['learning_rate']:g}{arguments})"


def criterion(setting):
    def make(num_classes, embedding_dim):
        if setting["method"] == "pddm":  # alpha = beta = lam = 0.5 unless set: keras_dml's defaults
            return PDDMLoss(embedding_dim, **setting["loss"])
        if setting["method"] == "triplet_hard":  # each anchor's farthest positive and nearest negative
            return TripletLoss(positive="hard", negative="hard", **setting["loss"])
        return TripletLoss(**setting["loss"])  # every positive and negative of each anchor
    return make


def operating_point(data):
    images, labels = data[0], data[1]
    keras.utils.set_random_seed(0)
    embedder = build_embedder("small_cnn", embedding_dim=64, input_shape=images.shape[1:])
    rng = np.random.default_rng(0)
    classes = rng.choice(int(labels.max()) + 1, 16, replace=False)
    batch = np.concatenate([rng.choice(np.flatnonzero(labels == c), 4, replace=False) for c in classes])
    z = tf.constant(embedder.predict(images[batch], verbose=0))
    y = labels[batch]

    def gradient(loss):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(y, z)
        return tape.gradient(value, z).numpy()

    score_only = PDDMLoss(64, lam=0.0, quadruplets="per_anchor")  # per anchor: a mined positive for each
    with_embedding = PDDMLoss(64, lam=1.0, quadruplets="per_anchor")
    with_embedding.pddm.set_weights(score_only.pddm.get_weights())
    score_gradient = gradient(score_only)
    embedding_gradient = gradient(with_embedding) - score_gradient
    j = keras.ops.convert_to_numpy(score_only.mine(y, z)[0])
    d = np.linalg.norm(z.numpy()[:, None] - z.numpy()[None], axis=-1)
    positive = (y[:, None] == y[None]) & ~np.eye(len(y), dtype=bool)
    farthest = np.mean([d[i, j[i]] == d[i][positive[i]].max() for i in range(len(y))])
    return {
        "median |gradient| per embedding, score hinge E_m": float(np.median(np.linalg.norm(score_gradient, axis=1))),
        "median |gradient| per embedding, embedding hinge E_e (lam 1)": float(
            np.median(np.linalg.norm(embedding_gradient, axis=1))),
        "cosine between the two batch gradients": float(
            np.sum(score_gradient * embedding_gradient)
            / np.linalg.norm(score_gradient) / np.linalg.norm(embedding_gradient)),
        "mined positive is the farthest by distance (fraction; chance 1/3 with K=4)": float(farthest),
    }


SETTINGS = {"epochs": "per start, under its 'epochs' (defaults: validation 10, test 5)", "seeds": list(SEEDS), "embedder": "64-d; backbone by start", "starts": harness.STARTS,
            "batches": "P x K = 16 x 4",
            "optimizer": "Adam (learning rate per setting)",
            "validation": "a quarter of the training characters held out (harness.load('validation'))",
            "retrieval": "Euclidean on the embedding; re-ranking: top 10 by PDDM score"}


def run_setting(setting, seed, mode, data, start, epochs):
    return harness.run(criterion(setting), seed=seed, epochs=epochs, mode=mode, data=data,
                       **harness.start_options(start), learning_rate=setting["learning_rate"],
                       rerank=setting["method"] == "pddm")


def main(arguments):
    start, rest = harness.start_from_arguments(arguments)
    methods, rest = harness.list_option(rest, "--methods", METHODS)
    (validation_epochs, test_epochs), rest = harness.epochs_from_arguments(rest, EPOCHS, TEST_EPOCHS)
    phases = rest or ["operating_point", "validation", "test"]
    if "validation" in phases:
        harness.update(PAGE, start, {"epochs": {"validation": validation_epochs}}, SETTINGS)
    if "test" in phases:
        harness.update(PAGE, start, {"epochs": {"test": test_epochs}}, SETTINGS)
    if "operating_point" in phases and start == "random":
        harness.update(PAGE, "operating_point", operating_point(harness.load("validation")), SETTINGS)
    if "validation" in phases:
        data = harness.load("validation")
        for name, setting in grid(start).items():
            if setting["method"] not in methods or name in harness.results(PAGE).get(start, {}).get("validation", {}):
                continue
            entry = {"setting": setting, "run": run_setting(setting, 0, "validation", data, start, validation_epochs)}
            harness.update(PAGE, start, {"validation": {name: entry}}, SETTINGS)
            print(start, name, [round(e["recall@1"], 3) for e in entry["run"]["epochs"]], flush=True)
    if "test" in phases:
        validation, choice = harness.record_choice(PAGE, start, methods, SETTINGS)
        data = harness.load("test")
        for seed in SEEDS:  # seed by seed, so that a partial run compares like with like
            for method in methods:
                key = choice[method]
                entry = harness.results(PAGE)[start].get("test", {}).get(key) or {
                    "setting": validation[key]["setting"], "runs": []}
                if any(r["seed"] == seed for r in entry["runs"]):
                    continue
                entry["runs"].append(run_setting(entry["setting"], seed, "test", data, start, test_epochs))
                metrics = [m for m in entry["runs"][-1]["epochs"][-1] if m not in ("epoch", "loss")]
                entry["final"] = {m: harness.final(entry["runs"], m) for m in metrics}
                entry["recall@1_per_epoch"] = harness.per_epoch(entry["runs"])
                harness.update(PAGE, start, {"test": {key: entry}}, SETTINGS)
                print(start, key, seed, entry["runs"][-1]["epochs"][-1], flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
