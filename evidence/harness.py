"""The one harness behind every evidence script: data, embedder, training, metrics, JSON.

An evidence script (one per docs page) describes its runs as settings and calls `run`
for each seed; `write` puts the settings, the font inventory, the per-seed values and
their mean and std into `evidence/results/<page>.json`, which the page quotes.

- data: glyphs (`keras_dml.data.load_glyphs`, split by character) or, where they are
  missing, the 8x8 digits. `mode="validation"` trains on the training classes minus a
  quarter of them and evaluates on that quarter (for choosing hyperparameters);
  `mode="test"` trains on every training class and evaluates on the test classes.
- embedder: `keras_dml.models.build_embedder(backbone, ...)` (`"small_cnn"` unless a
  script says otherwise), L2-normalised; `STARTS` names the starts: `"random"`
  initialises it at random, `"glyphs"` loads the glyph-pretrained backbone
  (`weights="glyphs"`), the papers' starting point in miniature. A script takes the
  start as `--start`.
- criterion: any `criterion(num_classes, embedding_dim)` factory returning a keras_dml
  loss (stateless or trainable), trained through `keras_dml.models.MetricModel` with
  Adam, and proxies at `proxy_lr_multiplier` x the learning rate.
- batches: P x K (`keras_dml.data.class_balanced`) or shuffled random batches.
- metrics: Recall@1 and MAP@R on the evaluation classes after every epoch (epoch 0 is
  the untrained embedder).

Example:

    from evidence import harness
    from keras_dml.losses import ProxyAnchorLoss
    result = harness.run(lambda c, d: ProxyAnchorLoss(c, d), seed=0, epochs=3)
    result["epochs"][-1]["recall@1"]
"""
import functools
import hashlib
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_dml  # noqa: E402
from keras_dml.data import class_balanced  # noqa: E402
from keras_dml.evaluation import retrieval_metrics  # noqa: E402
from keras_dml.models import MetricModel, build_embedder  # noqa: E402
from keras_dml.optimizers import with_proxy_lr_multiplier  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# The starting points of a run: `build_embedder` arguments and the learning rate that goes with them
# ("glyphs": the shipped glyph-pretrained backbone, BatchNormalization frozen, fine-tuned at 1e-4).
# "choose_by": the validation metrics, in order, that pick a setting (`chosen`): from the glyph start
# every setting's validation Recall@1 is 0.97-0.99, a few queries apart, so MAP@R decides there.
STARTS = {"random": {"backbone": "small_cnn", "weights": None, "learning_rate": 1e-3,
                     "choose_by": ("recall@1", "map_at_r")},
          "glyphs": {"backbone": "small_resnet", "weights": "glyphs", "learning_rate": 1e-4,
                     "choose_by": ("map_at_r", "recall@1")}}
VALIDATION_FRACTION = 0.25  # of the training classes, held out when mode="validation"
SPLIT_SEED = 0  # the validation classes are the same for every run


def dataset_name():
    return "glyphs" if hasattr(keras_dml.data, "load_glyphs") else "digits"


def _load(split):
    """`(images, labels, fonts)` of one split; fonts is None for digits."""
    if dataset_name() == "glyphs":
        images, labels, meta = keras_dml.data.load_glyphs(split=split, by="character", return_metadata=True)
        return images, labels, np.asarray(meta["font"])
    images, labels = keras_dml.data.load_digits(split)
    return images, labels, None


@functools.lru_cache(maxsize=1)
def font_inventory():
    """`{"count", "sha256"}` of the sorted font names the glyphs were rendered from (None for digits)."""
    fonts = _load("train")[2]
    if fonts is None:
        return None
    return inventory(fonts)


def inventory(fonts):
    """`{"count", "sha256"}` of the distinct font file names in `fonts`, the hash of their sorted list."""
    names = sorted(set(str(f) for f in fonts))
    return {"count": len(names), "sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]}


def held_out(labels):
    """Boolean mask of the samples of the validation classes: `VALIDATION_FRACTION` of the
    classes of `labels`, drawn with `SPLIT_SEED` (the same classes for every run)."""
    classes = np.unique(labels)
    held = np.random.default_rng(SPLIT_SEED).permutation(classes)[: int(round(VALIDATION_FRACTION * len(classes)))]
    return np.isin(labels, held)


def load(mode="validation"):
    """`(train_images, train_labels, eval_images, eval_labels)`; train labels in `[0, C)`."""
    if mode not in ("validation", "test"):
        raise ValueError(f"mode must be 'validation' or 'test'; got {mode!r}.")
    images, labels, _ = _load("train")
    if mode == "test":
        eval_images, eval_labels, _ = _load("test")
        train_images, train_labels = images, labels
    else:
        is_held = held_out(labels)
        train_images, train_labels = images[~is_held], labels[~is_held]
        eval_images, eval_labels = images[is_held], labels[is_held]
    train_labels = np.unique(train_labels, return_inverse=True)[1].astype("int32")
    return train_images, train_labels, eval_images, eval_labels


def start_options(start):
    """The `run` arguments of a start: its backbone and weights (`STARTS`)."""
    return {"backbone": STARTS[start]["backbone"], "weights": STARTS[start]["weights"]}


def chosen(validation, method, start):
    """The name of `method`'s setting with the best final validation metrics, in the order of
    the start's `"choose_by"` (`STARTS`)."""
    candidates = {k: v for k, v in validation.items() if v["setting"]["method"] == method}
    return max(candidates, key=lambda k: choice_key(candidates[k]["run"]["epochs"][-1], start))


def record_choice(page, start, methods, settings):
    """The start's validation rows of `page` and `{method: name}` of each method's chosen
    setting (`chosen`), which it records under the start's `chosen_on_validation`."""
    validation = results(page)[start]["validation"]
    choice = {method: chosen(validation, method, start) for method in methods}
    update(page, start, {"chosen_on_validation": choice}, settings)
    return validation, choice


def choice_key(metrics, start):
    """The tuple that ranks settings of `start` by their `metrics` (`STARTS[start]["choose_by"]`)."""
    return tuple(metrics[m] for m in STARTS[start]["choose_by"])


def start_from_arguments(arguments):
    """`(start, remaining arguments)` from a script's command line: `--start random|glyphs` (`STARTS`)."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--start", choices=tuple(STARTS), default="random")
    known, rest = parser.parse_known_args(arguments)
    return known.start, rest


def list_option(arguments, flag, default, convert=str):
    """`(values, remaining arguments)`: `flag a,b,c` parsed from `arguments` (`default` when absent)."""
    if flag not in arguments:
        return tuple(default), list(arguments)
    at = arguments.index(flag)
    return tuple(convert(v) for v in arguments[at + 1].split(",")), list(arguments[:at]) + list(arguments[at + 2:])


def epochs_from_arguments(arguments, validation, test):
    """`((validation epochs, test epochs), remaining arguments)`: `--epochs V,T` (a reduced
    budget; the defaults `validation`, `test` when absent)."""
    (validation, test), rest = list_option(arguments, "--epochs", (validation, test), int)
    return (validation, test), rest


def replace_labels(labels, fraction, rng):
    """A copy of `labels` where `fraction` of them, chosen at random, are replaced by another class."""
    labels = labels.copy()
    classes = int(labels.max()) + 1
    chosen = rng.choice(len(labels), int(round(fraction * len(labels))), replace=False)
    labels[chosen] = (labels[chosen] + rng.integers(1, classes, len(chosen))) % classes
    return labels


def evaluate(embedder, images, labels, pddm=None, rerank_top_k=10):
    """Recall@1 and MAP@R of `embedder` on `(images, labels)` (Euclidean on the embedding);
    with a PDDM unit also `"reranked_recall@1"` after re-ranking the top `rerank_top_k`."""
    embeddings = embedder.predict(images, batch_size=512, verbose=0)
    metrics = retrieval_metrics(embeddings, labels, k=(1,))
    result = {"recall@1": metrics["recall@1"], "map_at_r": metrics["map_at_r"]}
    if pddm is not None:
        reranked = retrieval_metrics(embeddings, labels, k=(1,), rerank=pddm, rerank_depth=rerank_top_k)
        result["reranked_recall@1"] = reranked["recall@1"]
    return result


def run(criterion, seed=0, epochs=5, mode="validation", embedding_dim=64, batch="pk", classes_per_batch=16,
        samples_per_class=4, batch_size=64, learning_rate=1e-3, proxy_lr_multiplier=100.0, warmup_epochs=0,
        label_noise=0.0, rerank=False, data=None, measure=None, backbone="small_cnn", weights=None,
        steps_per_epoch=None):
    """Train one criterion for one seed; returns `{"epochs": [metrics per epoch, 0 = untrained], ...}`.

    Args:
        criterion: `criterion(num_classes, embedding_dim)` -> a keras_dml loss.
        batch: `"pk"` (`classes_per_batch` x `samples_per_class`) or `"random"` (`batch_size`).
        warmup_epochs: epochs first trained with the backbone frozen (the embedding head
            and the criterion's weights, e.g. proxies, move), as the proxy papers' code
            does; they are counted in `epochs`.
        label_noise: fraction of training labels replaced by another class (seeded by `seed`).
        rerank: also report Recall@1 after re-ranking with the criterion's `pddm` unit.
        data: the tuple `load(mode)` returns, to skip loading it again.
        measure: optional `measure(embedder) -> dict` of further values, recorded with the
            metrics after every epoch (epoch 0 included).
        backbone, weights: passed to `build_embedder` (the start: `weights=None` is random;
            `STARTS` names the starts the evidence uses).
        steps_per_epoch: P x K batches per epoch; default one pass over the training images.
    """
    train_images, train_labels, eval_images, eval_labels = data or load(mode)
    if label_noise:
        train_labels = replace_labels(train_labels, label_noise, np.random.default_rng(seed))
    keras.utils.set_random_seed(seed)
    num_classes = int(train_labels.max()) + 1
    embedder = build_embedder(backbone, embedding_dim=embedding_dim, input_shape=train_images.shape[1:],
                              weights=weights)
    model = MetricModel(embedder, criterion(num_classes, embedding_dim))
    if batch == "pk":
        pairs = tf.data.Dataset.from_tensor_slices((train_images, train_labels))
        batches = class_balanced(pairs, classes_per_batch, samples_per_class, seed=seed)
        steps = steps_per_epoch or len(train_labels) // (classes_per_batch * samples_per_class)
        fit_data = {"x": batches, "steps_per_epoch": steps}
    elif batch == "random":
        fit_data = {"x": train_images, "y": train_labels, "batch_size": batch_size, "shuffle": True}
    else:
        raise ValueError(f"batch must be 'pk' or 'random'; got {batch!r}.")

    def compile_model():
        optimizer = keras.optimizers.Adam(learning_rate)
        if getattr(model.criterion, "trainable_weights", None):
            optimizer = with_proxy_lr_multiplier(optimizer, proxy_lr_multiplier)
        model.compile(optimizer=optimizer, jit_compile=True)

    pddm = getattr(model.criterion, "pddm", None) if rerank else None
    def measured():
        return measure(embedder) if measure is not None else {}

    history = [{"epoch": 0, **evaluate(embedder, eval_images, eval_labels, pddm), **measured()}]
    started = time.time()
    backbone_layer = embedder.get_layer("backbone")
    backbone_layer.trainable = warmup_epochs == 0
    compile_model()
    for epoch in range(1, epochs + 1):
        if epoch == warmup_epochs + 1 and warmup_epochs > 0:
            backbone_layer.trainable = True
            compile_model()
        fit = model.fit(**fit_data, epochs=epoch, initial_epoch=epoch - 1, verbose=0)
        history.append({"epoch": epoch, "loss": float(fit.history["loss"][-1]),
                        **evaluate(embedder, eval_images, eval_labels, pddm), **measured()})
    return {"seed": seed, "epochs": history, "train_seconds": round(time.time() - started, 1)}


def summary(values):
    """`{"mean", "std", "values"}`, std the sample standard deviation (0 for one value)."""
    values = [float(v) for v in values]
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "values": values}


def final(runs, metric="recall@1"):
    """`summary` of `metric` at the last epoch of each run (one run per seed)."""
    return summary(r["epochs"][-1][metric] for r in runs)


def per_epoch(runs, metric="recall@1"):
    """`summary` of `metric` after each epoch (0 = untrained) over the runs (one per seed)."""
    return [summary(r["epochs"][e][metric] for r in runs) for e in range(len(runs[0]["epochs"]))]


def results(page):
    """The contents of `results/<page>.json`, or `{}` before the page's first run."""
    path = os.path.join(RESULTS, f"{page}.json")
    return json.load(open(path)) if os.path.exists(path) else {}


def write(page, payload):
    """Write `{"dataset", "font_inventory", "machine", **payload}` to `results/<page>.json` atomically."""
    os.makedirs(RESULTS, exist_ok=True)
    document = {"dataset": dataset_name(), "font_inventory": font_inventory(),
                "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()}, **payload}
    path = os.path.join(RESULTS, f"{page}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(document, f, indent=1)
    os.replace(path + ".tmp", path)
    return path


def update(page, section, content, settings):
    """Merge `content` into `section` of `results/<page>.json` and write it (see `write`).

    Several runs of one script may run in parallel, each with its own rows: the file is
    read, merged (dicts recursively, anything else replaced) and written under a lock, so
    no run loses another's rows.
    """
    import fcntl

    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{page}.json")
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        document = results(page)
        for key in ("dataset", "font_inventory", "machine"):
            document.pop(key, None)
        document["settings"] = settings
        document[section] = _merged(document.get(section), content)
        write(page, document)
    return document


def _merged(old, new):
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **{key: _merged(old.get(key), value) for key, value in new.items()}}
    return new
