"""Evidence for docs/potential_field.md: why the paper's defaults hardly learn from a random
start, the remedy chosen on validation classes, and potential fields against Proxy Anchor
on held-out glyphs, with clean labels and with 20% of the training labels replaced.

Phases (each adds to `evidence/results/potential_field.json`):

- `operating_point`: distances between the embeddings of the untrained small CNN, and the
  forces (gradients of the energy w.r.t. the embeddings) split by kind of pair, from a
  float64 NumPy transcription of the formula, next to the loss's own gradient;
- `validation`: a small grid on validation classes carved from the training split (seed 0);
  the potential-field setting with the best Recall@1 (then MAP@R) is kept;
- `test`: that setting and Proxy Anchor (its defaults) on the test classes, 3 seeds,
  clean and with 20% label noise.

    python evidence/potential_field.py                  # every phase
    python evidence/potential_field.py test             # one phase (needs validation's result)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy.spatial.distance import pdist  # noqa: E402

from evidence import harness  # noqa: E402
from keras_dml.losses import PotentialFieldLoss, ProxyAnchorLoss  # noqa: E402
from keras_dml.models import build_embedder  # noqa: E402

PAGE = "potential_field"
EPOCHS = 5
SEEDS = (0, 1, 2)
NOISE = 0.2
PAPER = {"proxies_per_class": 15, "alpha": 3.0, "delta": 0.2, "warmup_epochs": 0}
GRID = {  # name -> loss arguments and warm-up epochs; everything else as the harness defaults
    "paper defaults": PAPER,
    "paper + 1 warm-up epoch": {**PAPER, "warmup_epochs": 1},
    "delta 0.1": {**PAPER, "delta": 0.1},
    "delta 0.05": {**PAPER, "delta": 0.05},
    "delta 0.05 + 1 warm-up epoch": {**PAPER, "delta": 0.05, "warmup_epochs": 1},
}


def potential_field(setting):
    def criterion(num_classes, embedding_dim):
        return PotentialFieldLoss(num_classes, embedding_dim, proxies_per_class=setting["proxies_per_class"],
                                  alpha=setting["alpha"], delta_att=setting["delta"], delta_rep=setting["delta"])
    return criterion


def proxy_anchor(num_classes, embedding_dim):
    return ProxyAnchorLoss(num_classes, embedding_dim)


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
        loss = PotentialFieldLoss(num_classes, 64, proxies_per_class=15, alpha=3.0, delta_att=delta, delta_rep=delta)
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
    return result


def load_results():
    path = os.path.join(harness.RESULTS, f"{PAGE}.json")
    return json.load(open(path)) if os.path.exists(path) else {}


def save(results):
    results = {k: v for k, v in results.items() if k not in ("dataset", "font_inventory", "machine")}
    harness.write(PAGE, {"settings": {"epochs": EPOCHS, "seeds": list(SEEDS), "label_noise": NOISE,
                                      "embedder": "small_cnn, 64-d", "batches": "P x K = 16 x 4",
                                      "optimizer": "Adam 1e-3, proxies at 100x"}, **results})


def run_setting(setting, seed, mode, data, label_noise=0.0):
    criterion = proxy_anchor if setting == "proxy_anchor" else potential_field(setting)
    warmup = 0 if setting == "proxy_anchor" else setting["warmup_epochs"]
    return harness.run(criterion, seed=seed, epochs=EPOCHS, mode=mode, warmup_epochs=warmup,
                       label_noise=label_noise, data=data)


def main(phases):
    results = load_results()
    results.pop("settings", None)
    if "operating_point" in phases:
        results["operating_point"] = operating_point(harness.load("validation"))
        save(results)
    if "validation" in phases:
        data = harness.load("validation")
        runs = results.setdefault("validation", {})
        for name, setting in GRID.items():
            if name not in runs:
                runs[name] = {"setting": setting, "run": run_setting(setting, 0, "validation", data)}
                save(results)
                print(name, runs[name]["run"]["epochs"][-1], flush=True)
    if "test" in phases:
        candidates = {k: v for k, v in results["validation"].items() if k in GRID}
        best = max(candidates, key=lambda k: (candidates[k]["run"]["epochs"][-1]["recall@1"],
                                              candidates[k]["run"]["epochs"][-1]["map_at_r"]))
        results["chosen_on_validation"] = best
        data = harness.load("test")
        runs = results.setdefault("test", {})
        plan = [(f"PotentialField ({best})", GRID[best], noise) for noise in (0.0, NOISE)]
        plan += [("ProxyAnchor", "proxy_anchor", noise) for noise in (0.0, NOISE)]
        for seed in SEEDS:  # seed by seed, so that a partial run compares like with like
            for name, setting, noise in plan:
                entry = runs.setdefault(f"{name}, noise {noise}",
                                        {"setting": setting, "label_noise": noise, "runs": []})
                if len(entry["runs"]) > SEEDS.index(seed):
                    continue
                entry["runs"].append(run_setting(setting, seed, "test", data, noise))
                entry["recall@1"], entry["map_at_r"] = (harness.final(entry["runs"], m)
                                                        for m in ("recall@1", "map_at_r"))
                entry["untrained_recall@1"] = harness.summary(r["epochs"][0]["recall@1"] for r in entry["runs"])
                save(results)
                print(name, noise, seed, entry["runs"][-1]["epochs"][-1], flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["operating_point", "validation", "test"])
