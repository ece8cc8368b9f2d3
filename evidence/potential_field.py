"""Evidence for docs/potential_field.md: the potential field against tuned Proxy Anchor and
multi-similarity on held-out glyphs, clean and with 20% of the training labels replaced,
from a random start and from the glyph-pretrained backbone; and why the paper's fixed
radii hardly learn from a random start.

Phases (each adds to `evidence/results/potential_field.json`, under the start):

- `operating_point` (random start only): distances between the embeddings of the
  untrained small CNN, the radii the default (`radius_ratio=0.5`) uses there, and the
  forces (gradients of the energy w.r.t. the embeddings) split by kind of pair at fixed radii, from a float64 NumPy transcription of the
  formula, next to the loss's own gradient;
- `validation`: each method's small grid (learning rate, margins or radii) on validation
  characters carved from the training split, long enough that validation Recall@1 stops
  rising; per method the setting with the best final validation metrics is kept (Recall@1 then MAP@R
  from the random start; MAP@R first from the glyph start, where every setting's
  Recall@1 is 0.97-0.99: `harness.STARTS`);
- `test`: the three chosen settings on the test characters, 3 seeds, clean and with 20%
  label noise (hyperparameters chosen on clean validation characters);
- `longer_test`: the same for the full 12 epochs, under `longer_test`, where `--epochs`
  gave `test` a reduced budget: whether a method was stopped while still rising.

    python evidence/potential_field.py                              # every phase, random start
    python evidence/potential_field.py validation --start glyphs
    python evidence/potential_field.py test --methods proxy_anchor --noise 0.2  # one phase, method, noise
    python evidence/potential_field.py validation test --start glyphs --epochs 6,6  # validation and test epochs
    python evidence/potential_field.py longer_test --start glyphs --noise 0.2     # the chosen settings, 12 epochs
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy.spatial.distance import pdist  # noqa: E402

from evidence import harness  # noqa: E402
from keras_dml.losses import MultiSimilarityLoss, PotentialFieldLoss, ProxyAnchorLoss  # noqa: E402
from keras_dml.models import build_embedder  # noqa: E402

PAGE = "potential_field"
EPOCHS = 12  # validation and test; the validation curves show whether each method has stopped rising
SEEDS = (0, 1, 2)
NOISE = 0.2
METHODS = ("potential_field", "proxy_anchor", "multi_similarity")
LOSSES = {"potential_field": PotentialFieldLoss, "proxy_anchor": ProxyAnchorLoss,
          "multi_similarity": MultiSimilarityLoss}


def grid(start):
    """name -> setting: `{"method", "loss" (its arguments), "learning_rate", "warmup_epochs"}`.

    Each method's defaults at two learning rates, and its variants (margins, radii, warm-up)
    at the lower one; from the glyph start, where the higher rate won every method's
    defaults, at both."""
    rates = (1e-3, 3e-3) if start == "random" else (1e-4, 1e-3)
    variant_rates = rates[:1] if start == "random" else rates

    def setting(method, lr, warmup=0, **loss):
        return {"method": method, "loss": loss, "learning_rate": lr, "warmup_epochs": warmup}

    settings = {
        "potential_field": [setting("potential_field", lr) for lr in rates]
        + [s for lr in variant_rates for s in (setting("potential_field", lr, radius_ratio=None),
                                               setting("potential_field", lr, warmup=1, radius_ratio=None))],
        "proxy_anchor": [setting("proxy_anchor", lr) for lr in rates]
        + [s for lr in variant_rates for s in (setting("proxy_anchor", lr, delta=0.2),
                                               setting("proxy_anchor", lr, alpha=16.0))],
        "multi_similarity": [setting("multi_similarity", lr) for lr in rates]
        + [s for lr in variant_rates for s in (setting("multi_similarity", lr, epsilon=0.2),
                                               setting("multi_similarity", lr, base=0.7))],
    }
    return {name_of(s): s for method in METHODS for s in settings[method]}


def name_of(setting):
    arguments = ", ".join(f"{k} {v}" for k, v in setting["loss"].items())
    warmup = f", {setting['warmup_epochs']} warm-up epoch" if setting["warmup_epochs"] else ""
    return f"{setting['method']} (lr {setting['learning_rate']:g}{', ' + arguments if arguments else ''}{warmup})"


def criterion(setting):
    cls = LOSSES[setting["method"]]

    def make(num_classes, embedding_dim):
        if cls is MultiSimilarityLoss:
            return cls(**setting["loss"])
        return cls(num_classes, embedding_dim, **setting["loss"])
    return make


def forces(z, labels, charges, charge_labels, alpha, delta, itself):
    """`dU/dz_i` by kind of pair (float64, from the formula; each pair counts twice in U)."""
    diff = z[:, None] - charges[None]
    d = np.maximum(np.linalg.norm(diff, axis=-1), 1e-3)
    same = labels[:, None] == charge_labels[None]
    pull = np.where(same & (d > delta) & ~itself, d ** -(alpha + 1), 0.0)
    push = np.where(~same & (d < delta) & (d > 1e-3), -(d ** -(alpha + 1)), 0.0)
    unit = diff / d[..., None]
    return 2 * np.einsum("ij,ijk->ik", pull, unit), 2 * np.einsum("ij,ijk->ik", push, unit)


def operating_point(data):
    """Distances of the untrained embedder and the forces of one P x K batch at each radius."""
    images, labels = data[0], data[1]
    keras.utils.set_random_seed(0)
    embedder = build_embedder("small_cnn", embedding_dim=64, input_shape=images.shape[1:])
    z = embedder.predict(images, batch_size=512, verbose=0).astype(np.float64)
    pairs = pdist(z)
    rng = np.random.default_rng(0)
    classes = rng.choice(int(labels.max()) + 1, 16, replace=False)
    batch = np.concatenate([rng.choice(np.flatnonzero(labels == c), 4, replace=False) for c in classes])
    zb, yb = z[batch], labels[batch]
    num_classes = int(labels.max()) + 1
    result = {"pair_distance_quantiles": dict(zip(["1%", "10%", "50%", "90%", "99%"],
                                                  np.quantile(pairs, [.01, .1, .5, .9, .99]).round(4).tolist())),
              "forces": {}}
    tangent = lambda g: g - np.sum(g * zb, axis=1, keepdims=True) * zb  # noqa: E731
    for delta in (0.2, 0.1, 0.05):
        loss = PotentialFieldLoss(num_classes, 64, proxies_per_class=15, alpha=3.0, delta_att=delta, delta_rep=delta,
                                  radius_ratio=None)
        proxies = loss.proxies.numpy().reshape(-1, 64).astype(np.float64)
        proxies /= np.linalg.norm(proxies, axis=1, keepdims=True)
        proxy_labels = np.repeat(np.arange(num_classes), 15)
        z_tensor = tf.constant(zb, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(z_tensor)
            value = loss(yb, z_tensor)
        gradient = tape.gradient(value, z_tensor).numpy()
        kinds = {}
        kinds["embedding attraction"], kinds["embedding repulsion"] = forces(
            zb, yb, zb, yb, 3.0, delta, np.eye(len(zb), dtype=bool))
        kinds["proxy attraction"], kinds["proxy repulsion"] = forces(
            zb, yb, proxies, proxy_labels, 3.0, delta, np.zeros((len(zb), len(proxies)), bool))
        reference = tangent(sum(kinds.values())) / (len(zb) + len(proxies))
        result["forces"][f"delta {delta}"] = {
            "median |force| per embedding": {k: float(np.median(np.linalg.norm(tangent(v), axis=1)))
                                             for k, v in kinds.items()},
            "loss gradient vs formula (relative difference)": float(
                np.linalg.norm(gradient - reference) / np.linalg.norm(reference)),
        }
    default = PotentialFieldLoss(num_classes, 64)  # radii relative to the spread (radius_ratio 0.5)
    result["default radii on this batch (delta_att, delta_rep)"] = [
        float(r) for r in default.radii(tf.constant(zb, tf.float32))]
    return result


SETTINGS = {"epochs": "per start, under its 'epochs' (default 12)", "seeds": list(SEEDS), "label_noise": NOISE,
            "embedder": "64-d; backbone by start", "starts": harness.STARTS, "batches": "P x K = 16 x 4",
            "optimizer": "Adam (learning rate per setting), proxies at 100x",
            "validation": "a quarter of the training characters held out (harness.load('validation'))"}


def run_setting(setting, seed, mode, data, start, epochs, label_noise=0.0):
    return harness.run(criterion(setting), seed=seed, epochs=epochs, mode=mode, data=data,
                       **harness.start_options(start), learning_rate=setting["learning_rate"],
                       warmup_epochs=setting["warmup_epochs"],
                       label_noise=label_noise)


def main(arguments):
    start, rest = harness.start_from_arguments(arguments)
    methods, rest = harness.list_option(rest, "--methods", METHODS)
    noises, rest = harness.list_option(rest, "--noise", (0.0, NOISE), float)
    (validation_epochs, test_epochs), rest = harness.epochs_from_arguments(rest, EPOCHS, EPOCHS)
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
            done = harness.results(PAGE).get(start, {}).get("validation", {})
            if setting["method"] not in methods or name in done:
                continue
            entry = {"setting": setting, "run": run_setting(setting, 0, "validation", data, start, validation_epochs)}
            harness.update(PAGE, start, {"validation": {name: entry}}, SETTINGS)
            print(start, name, [round(e["recall@1"], 3) for e in entry["run"]["epochs"]], flush=True)
    if "test" in phases:
        test(start, methods, noises, "test", test_epochs)
    if "longer_test" in phases:
        harness.update(PAGE, start, {"epochs": {"longer_test": EPOCHS}}, SETTINGS)
        test(start, methods, noises, "longer_test", EPOCHS)


def test(start, methods, noises, section, epochs):
    """The settings chosen on validation, trained `epochs` epochs on the test split for
    every seed and label noise; rows under `section` of the start."""
    validation, choice = harness.record_choice(PAGE, start, methods, SETTINGS)
    data = harness.load("test")
    for seed in SEEDS:  # seed by seed, so that a partial run compares like with like
        for method in methods:
            for noise in noises:
                key = f"{choice[method]}, noise {noise}"
                entry = harness.results(PAGE)[start].get(section, {}).get(key) or {
                    "setting": validation[choice[method]]["setting"], "label_noise": noise, "runs": []}
                if any(r["seed"] == seed for r in entry["runs"]):
                    continue
                entry["runs"].append(run_setting(entry["setting"], seed, "test", data, start, epochs, noise))
                for metric in ("recall@1", "map_at_r"):
                    entry[metric] = harness.final(entry["runs"], metric)
                entry["recall@1_per_epoch"] = harness.per_epoch(entry["runs"])
                harness.update(PAGE, start, {section: {key: entry}}, SETTINGS)
                print(start, section, key, seed, entry["runs"][-1]["epochs"][-1], flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
