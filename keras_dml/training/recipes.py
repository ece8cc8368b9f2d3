"""Training recipes: the standard benchmark set-ups and the demo, as `TrainConfig` settings.

The benchmark recipes combine a dataset block (zero-shot split, batch composition,
schedule) with a method block (the loss, Keras-serialized, and its optimizer); `digits-*`
recipes are the same methods at demo size, for a CPU and for the tests; `demo` and
`demo-pretrained` (random and pretrained start) are what `keras-dml demo` trains;
`PRETRAINING` holds `glyphs-pretrain`, the recipe of the shipped pretrained weights
(`python -m keras_dml.training.pretrain`).

    keras-dml recipes                                   # list them
    keras-dml recipes cars196-potential-field           # every setting, with its source
    keras-dml train --recipe cars196-potential-field    # on a GPU machine
    keras-dml train --recipe cub200-triplet-easy --set learning_rate=3e-5 epochs=30

Sources: each potential-field setting says where it comes from (`SOURCES`): "paper" (the
CVPR 2025 paper), "supplement via a secondary source" (the authors' supplement as a
secondary source cites it), or "ours" (keras_dml's choice). For the other methods the
loss settings follow docs/methods.md; ResNet-50 at 512-d and proxies at 100x
the backbone's learning rate follow the Proxy Anchor paper; batch composition P x K and
epochs are ours (each class has several samples per batch, as every mining strategy here
needs).
"""
import copy

PAPER = "paper"
SUPPLEMENT = "supplement via a secondary source"
OURS = "ours"

IMAGE_MODEL = {
    "backbone": "resnet50",
    "weights": "imagenet",
    "embedding_dim": 512,
    "image_size": 224,
    "pooling": "avg",
}

# The paper's DINO setting (384-d), with the DINOv2 ViT-S/14 that keras-hub offers.
DINOV2_MODEL = {
    "backbone": "dinov2_small",
    "weights": "pretrained",
    "embedding_dim": 384,
    "image_size": 224,
}

BENCHMARK_DATASETS = {
    "cars196": {"dataset": "cars196", "classes_per_batch": 30, "samples_per_class": 4, "epochs": 60},
    "cub200": {"dataset": "cub200", "classes_per_batch": 30, "samples_per_class": 4, "epochs": 60},
    "sop": {"dataset": "sop", "classes_per_batch": 60, "samples_per_class": 2, "epochs": 60},
}


def _loss(class_name, **config):
    """The short readable Keras form of a keras_dml loss."""
    return {"class_name": class_name, "config": config}


METHODS = {
    "potential-field": {
        "loss": _loss("PotentialFieldLoss", proxies_per_class=15, alpha=3.0, delta_att=0.2, delta_rep=0.2),
        "optimizer": "adamw", "learning_rate": 1e-4, "weight_decay": 1e-4, "proxy_lr_multiplier": 100.0,
        "classes_per_batch": 25, "samples_per_class": 4, "epochs": 200, "warmup_epochs": 1,
        "freeze_batchnorm": True, "image_size": 224,
    },
    "proxy-anchor": {
        "loss": _loss("ProxyAnchorLoss", alpha=32.0, delta=0.1),
        "optimizer": "adamw", "learning_rate": 1e-4, "weight_decay": 1e-4, "proxy_lr_multiplier": 100.0,
    },
    "triplet-easy": {
        "loss": _loss("TripletLoss", margin=0.2, positive="easy", negative="semihard"),
        "optimizer": "adam", "learning_rate": 1e-5,
    },
    "density-triplet": {
        "loss": _loss("DensityAdaptive", base_loss=_loss("TripletLoss", margin=0.2, positive="all",
                                                         negative="semihard"), weight=1.0, rho=0.25),
        "optimizer": "adam", "learning_rate": 1e-5,
    },
    "pddm": {
        "loss": _loss("PDDMLoss", alpha=0.5, beta=0.5, lam=0.5),
        "optimizer": "adam", "learning_rate": 1e-5,
    },
    "multi-similarity": {
        "loss": _loss("MultiSimilarityLoss", alpha=2.0, beta=50.0, base=0.5, epsilon=0.1),
        "optimizer": "adam", "learning_rate": 1e-5,
    },
}

# What differs for one dataset and method.
OVERRIDES = {
    # SOP: 11,318 classes with few images each: 2 proxies per class (paper), the second
    # energy term over the batch's classes only (ours), 50 x 2 = 100 per batch (ours).
    ("sop", "potential-field"): {"loss": {"config": {"proxies_per_class": 2, "proxy_targets": "batch"}},
                                 "classes_per_batch": 50, "samples_per_class": 2},
    ("cub200", "potential-field"): {"weight_decay": 5e-4},
}

# Where each potential-field setting comes from.
_DINOV2_SOURCES = {
    "backbone": f"{OURS} (the paper reports DINO at 384-d; keras-hub offers DINOv2-S/14)",
    "weights": f"{OURS} (keras-hub preset dinov2_small, downloaded on first use)",
    "embedding_dim": f"{PAPER} (384-d for DINO)", "image_size": f"{OURS} (224 = 16 patches of 14)",
    "learning_rate": f"{OURS} (the ResNet-50 setting of the supplement, not re-tuned for a transformer)",
}
SOURCES = {
    "potential-field": {
        "backbone": PAPER, "embedding_dim": PAPER, "weights": PAPER,
        "loss.proxies_per_class": PAPER, "loss.alpha": PAPER, "loss.delta_att": PAPER, "loss.delta_rep": PAPER,
        "loss.proxy_targets": OURS,
        "optimizer": f"{SUPPLEMENT} (Adam; decoupled weight decay, AdamW, is ours: Keras has no L2-coupled Adam)",
        "learning_rate": SUPPLEMENT, "proxy_lr_multiplier": f"{SUPPLEMENT} (proxy LR 1e-2)",
        "weight_decay": f"{SUPPLEMENT} (CUB 5e-4)", "epochs": SUPPLEMENT, "warmup_epochs": SUPPLEMENT,
        "freeze_batchnorm": SUPPLEMENT, "image_size": SUPPLEMENT, "pooling": OURS,
        "classes_per_batch": f"{OURS} (batch 100 is the supplement's; its P x K split is ours)",
        "samples_per_class": f"{OURS} (batch 100 is the supplement's; its P x K split is ours)",
    },
}

DIGITS = {
    "dataset": "digits", "backbone": "mlp", "weights": None, "embedding_dim": 16, "image_size": 8,
    "classes_per_batch": 5, "samples_per_class": 16, "epochs": 10, "steps_per_epoch": 12,
    "learning_rate": 1e-3, "weight_decay": 0.0, "optimizer": "adam", "warmup_epochs": 0,
}

# `keras-dml demo`: rendered characters (nothing to download), zero-shot on the held-out
# characters, in about a minute of CPU time (ours: chosen on validation characters, MAP@R
# 0.59 against 0.53 for a 32-d, lr 1e-3, 16 x 4 setting of the same cost; no XLA, whose
# compile costs more on a CPU than these 240 small steps save).
DEMO = {
    "dataset": "glyphs", "backbone": "small_cnn", "weights": None, "embedding_dim": 64, "image_size": 32,
    "freeze_batchnorm": False, "loss": METHODS["triplet-easy"]["loss"], "optimizer": "adam",
    "learning_rate": 2e-3, "classes_per_batch": 32, "samples_per_class": 4, "epochs": 8, "steps_per_epoch": 30,
    "jit_compile": False,
}
# The demo's pretrained start: the shipped glyph-pretrained small_resnet (its
# BatchNormalization frozen, as pretrained backbones are fine-tuned here), a new head,
# fewer steps at a smaller learning rate, so both starts cost about the same (ours).
DEMO_PRETRAINED = {**DEMO, "backbone": "small_resnet", "weights": "glyphs", "freeze_batchnorm": True,
                   "learning_rate": 1e-3, "epochs": 2}


# `python -m keras_dml.training.pretrain`: the shipped "glyphs" weights of small_resnet
# (keras_dml.models.pretrained). Classification of the pretraining characters
# (`load_glyphs(split="pretrain")`) by softmax cross-entropy on a linear layer over the
# pooled features, as ImageNet backbones are trained: the backbone is what ships, so a
# plain classifier on top keeps the features free of any metric-learning choice
# (normalised softmax would tie them to one embedding scale). Adam with a cosine decay
# to 0, BatchNormalization training: ours. Renders, epochs and batch
# size fit about 15 minutes on 2 CPU cores (bench/pretrain.py); the held-out renders
# (`heldout_seed`) are new distortions of the same glyphs.
PRETRAINING = {
    "glyphs-pretrain": {
        "dataset": "glyphs", "split": "pretrain", "image_size": 32, "renders": 3, "render_seed": 0,
        "heldout_seed": 1, "backbone": "small_resnet", "loss": "softmax cross-entropy",
        "optimizer": "adam", "learning_rate": 3e-3, "schedule": "cosine decay to 0",
        "batch_size": 128, "epochs": 6, "seed": 0,
    },
}


def _merge(base, update):
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _build():
    recipes = {"demo": copy.deepcopy(DEMO), "demo-pretrained": copy.deepcopy(DEMO_PRETRAINED)}
    for data_name, data in BENCHMARK_DATASETS.items():
        for method_name, method in METHODS.items():
            recipe = _merge(_merge({**IMAGE_MODEL, **data}, method), OVERRIDES.get((data_name, method_name), {}))
            recipes[f"{data_name}-{method_name}"] = recipe
        recipes[f"{data_name}-dinov2-potential-field"] = {**recipes[f"{data_name}-potential-field"], **DINOV2_MODEL}
    for method_name, method in METHODS.items():
        recipes[f"digits-{method_name}"] = _merge(method, DIGITS)
    return recipes


RECIPES = _build()


def get_recipe(name):
    """A copy of the recipe called `name`."""
    if name in PRETRAINING:
        raise ValueError(f"{name!r} is the pretraining recipe of the shipped weights, not a metric-learning run: "
                         "run it with `python -m keras_dml.training.pretrain`.")
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; valid recipes: {', '.join(sorted(RECIPES))}.")
    return copy.deepcopy(RECIPES[name])


def describe(r):
    """One line of recipe (or settings) `r`: dataset, model, loss, batch."""
    return (f"{r['dataset']}: {r['backbone']} {r['embedding_dim']}-d, {r['loss']['class_name']}, "
            f"{r['optimizer']} lr {r['learning_rate']:g}, batch {r['classes_per_batch']}x{r['samples_per_class']}, "
            f"{r['epochs']} epochs")


def sources(name):
    """`{setting: source}` for the recipe `name` (empty where the recipe states none)."""
    method = next((m for m in METHODS if name.endswith(m) and not name.startswith("digits-")), None)
    return {**SOURCES.get(method, {}), **(_DINOV2_SOURCES if "-dinov2-" in name else {})}
