"""Training recipes: the standard benchmark set-ups, as data.

A recipe is a dict of `keras_dml.training.TrainConfig` fields. The benchmark recipes
combine a dataset block (zero-shot split, batch composition, schedule) with a method
block (loss and its paper's hyperparameters, optimizer); `digits-*` recipes are the
same methods at demo size, for a CPU and for the tests.

    keras-dml recipes                                   # list them
    keras-dml train --recipe cars196-potential-field    # on a GPU machine
    keras-dml train --recipe cub200-triplet-easy --set learning_rate=3e-5 epochs=30

Sources: docs/methods.md for every loss default; ResNet-50 at 512-d, AdamW with weight decay
1e-4 and proxies at 100x the backbone's learning rate follow the Proxy Anchor and
potential-field papers; batch composition P x K and epochs are ours (keras_dml's choice:
each class has several samples per batch, as every mining strategy here needs).
"""
import copy

BENCHMARK_DATASETS = {
    "cars196": {"dataset": "cars196", "classes_per_batch": 30, "samples_per_class": 4, "epochs": 60},
    "cub200": {"dataset": "cub200", "classes_per_batch": 30, "samples_per_class": 4, "epochs": 60},
    "sop": {"dataset": "sop", "classes_per_batch": 60, "samples_per_class": 2, "epochs": 60},
}

IMAGE_MODEL = {
    "backbone": "resnet50",
    "weights": "imagenet",
    "embedding_dim": 512,
    "image_size": 224,
    "pooling": "avg",
}

METHODS = {
    "potential-field": {
        "loss": {"class": "PotentialFieldLoss",
                 "params": {"proxies_per_class": 15, "alpha": 3.0, "delta_att": 0.2, "delta_rep": 0.2}},
        "optimizer": "adamw", "learning_rate": 1e-4, "weight_decay": 1e-4, "proxy_lr_multiplier": 100.0,
    },
    "proxy-anchor": {
        "loss": {"class": "ProxyAnchorLoss", "params": {"alpha": 32.0, "delta": 0.1}},
        "optimizer": "adamw", "learning_rate": 1e-4, "weight_decay": 1e-4, "proxy_lr_multiplier": 100.0,
    },
    "triplet-easy": {
        "loss": {"class": "TripletLoss", "params": {"margin": 0.2, "positive": "easy", "negative": "semihard"}},
        "optimizer": "adam", "learning_rate": 1e-5,
    },
    "density-triplet": {
        "loss": {"class": "DensityAdaptive", "params": {
            "base_loss": {"class": "TripletLoss", "params": {"margin": 0.2, "positive": "all", "negative": "semihard"}},
            "weight": 3.0, "rho": 0.125}},
        "optimizer": "adam", "learning_rate": 1e-5,
    },
    "pddm": {
        "loss": {"class": "PDDMLoss", "params": {"alpha": 0.5, "beta": 0.5, "lam": 0.5}},
        "optimizer": "adam", "learning_rate": 1e-5,
    },
    "multi-similarity": {
        "loss": {"class": "MultiSimilarityLoss", "params": {"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1}},
        "optimizer": "adam", "learning_rate": 1e-5,
    },
}

# What differs for one dataset and method (SOP: 11,318 classes, few images each).
OVERRIDES = {
    ("sop", "potential-field"): {"loss": {"params": {"proxies_per_class": 2, "proxy_targets": "batch"}}},
}

DIGITS = {
    "dataset": "digits", "backbone": "mlp", "weights": None, "embedding_dim": 16, "image_size": 8,
    "classes_per_batch": 5, "samples_per_class": 16, "epochs": 10, "steps_per_epoch": 12,
    "learning_rate": 1e-3, "weight_decay": 0.0,
}


def _merge(base, update):
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _build():
    recipes = {}
    for data_name, data in BENCHMARK_DATASETS.items():
        for method_name, method in METHODS.items():
            recipe = _merge(_merge({**IMAGE_MODEL, **data}, method), OVERRIDES.get((data_name, method_name), {}))
            recipes[f"{data_name}-{method_name}"] = recipe
    for method_name, method in METHODS.items():
        recipe = _merge(method, DIGITS)
        recipes[f"digits-{method_name}"] = recipe
    return recipes


RECIPES = _build()


def get_recipe(name):
    """A copy of the recipe called `name`."""
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe={name!r}; valid recipes: {', '.join(sorted(RECIPES))}.")
    return copy.deepcopy(RECIPES[name])


def describe(name):
    """One line: dataset, model, loss, batch."""
    r = RECIPES[name]
    return (f"{r['dataset']}: {r['backbone']} {r['embedding_dim']}-d, {r['loss']['class']}, "
            f"{r['optimizer']} lr {r['learning_rate']:g}, batch {r['classes_per_batch']}x{r['samples_per_class']}, "
            f"{r['epochs']} epochs")
