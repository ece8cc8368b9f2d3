"""Pretraining a backbone on the glyph pretraining characters: the recipe that makes the shipped weights.

    python -m keras_dml.training.pretrain                      # rebuilds keras_dml/models/weights/
    python -m keras_dml.training.pretrain --out /tmp/w --set epochs=1 backbone=small_cnn

Trains the recipe `glyphs-pretrain` (`keras_dml.training.recipes.PRETRAINING`): the
backbone, average pooling and a linear layer over the characters of
`load_glyphs(split="pretrain")`, by softmax cross-entropy. Then it measures what the
weights are for: accuracy on new renders of the same glyphs, and the held-out
Recall@1 of an embedder with a new random head on the glyph test characters, beside
the same embedder from random weights. It writes `<backbone>_glyphs.npz` (the
backbone's weights, `keras_dml.models.pretrained.save_weights`) and its model card
`<backbone>_glyphs.json` (provenance, measurements, the file's SHA-256).

Determinism: the seed fixes the weights' initialisation and the batches, and with the
TensorFlow backend op determinism is on, so a rerun on the same machine and versions
gives the same file; other CPUs or versions may round differently.
"""
import argparse
import hashlib
import json
import os
import sys
import time


def pretrain(settings=None, out_dir=None, verbose=2):
    """Train the `glyphs-pretrain` recipe (with `settings` replacing its values); write and return the model card."""
    import keras
    import numpy as np

    from keras_dml.data import glyphs
    from keras_dml.models import build_embedder, pretrained
    from keras_dml.training.recipes import PRETRAINING

    recipe = {**PRETRAINING["glyphs-pretrain"], **(settings or {})}
    unknown = sorted(set(recipe) - set(PRETRAINING["glyphs-pretrain"]))
    if unknown:
        raise ValueError(f"Unknown pretraining setting(s) {unknown}; valid: {', '.join(PRETRAINING['glyphs-pretrain'])}.")
    out_dir = out_dir or pretrained.WEIGHTS_DIR
    os.makedirs(out_dir, exist_ok=True)
    load_start = os.getloadavg()
    start = time.time()
    _seed_everything(recipe["seed"])

    size = recipe["image_size"]
    images, labels, meta = glyphs.load_glyphs(PRETRAIN_SPLIT, image_size=size, renders=recipe["renders"],
                                              seed=recipe["render_seed"], return_metadata=True)
    heldout, heldout_labels = glyphs.load_glyphs(PRETRAIN_SPLIT, image_size=size, renders=1,
                                                 seed=recipe["heldout_seed"])
    characters = "".join(np.unique(meta["character"]))
    num_classes = len(characters)
    shape = (size, size, 1)
    classifier = build_embedder(recipe["backbone"], num_classes, input_shape=shape, freeze_batchnorm=False,
                                normalize=False)
    steps = recipe["epochs"] * -(-len(images) // recipe["batch_size"])
    schedule = keras.optimizers.schedules.CosineDecay(recipe["learning_rate"], steps)
    classifier.compile(keras.optimizers.Adam(schedule),
                       keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                       jit_compile=False)
    data_time = time.time() - start
    fit_start = time.time()
    history = classifier.fit(images, labels, batch_size=recipe["batch_size"], epochs=recipe["epochs"],
                             shuffle=True, verbose=verbose)
    fit_time = time.time() - fit_start
    _, heldout_accuracy = classifier.evaluate(heldout, heldout_labels, batch_size=256, verbose=0)
    backbone = classifier.get_layer("backbone")

    stem = os.path.join(out_dir, f"{recipe['backbone']}_glyphs")
    pretrained.save_weights(backbone, stem + ".npz")
    card = {
        "name": "glyphs", "backbone": recipe["backbone"], "file": os.path.basename(stem) + ".npz",
        "sha256": pretrained.file_sha256(stem + ".npz"), "bytes": os.path.getsize(stem + ".npz"),
        "input": f"(height, width, 1) images in [0, 1], white on black (load_glyphs); trained at {shape}",
        "recipe": "glyphs-pretrain", "settings": recipe, "command": pretrained.REBUILD_COMMAND,
        "characters": characters, "num_characters": num_classes, "num_images": len(images),
        "fonts": sorted(set(meta["font"].tolist())), "fonts_sha256": _fonts_sha256(set(meta["font"].tolist())),
        "epochs": recipe["epochs"], "train_accuracy": round(float(history.history["accuracy"][-1]), 4),
        "heldout_render_accuracy": round(float(heldout_accuracy), 4),
        "test_recall_at_1_new_head": _retrieval(recipe["backbone"], backbone, shape),
        "fit_seconds": round(fit_time, 1), "data_seconds": round(data_time, 1),
        "images_per_second": round(recipe["epochs"] * len(images) / fit_time, 1),
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
        "cpus": os.cpu_count(), "versions": _versions(),
    }
    _write_json(stem + ".json", card)
    return card


PRETRAIN_SPLIT = "pretrain"


def _retrieval(backbone_name, trained, shape, heads=3):
    """Recall@1 on the glyph test split of embedders with new random heads: from `trained`, and from random weights."""
    import keras
    import numpy as np

    from keras_dml.data import load_glyphs
    from keras_dml.evaluation import retrieval_metrics
    from keras_dml.models import build_embedder

    images, labels = load_glyphs("test", image_size=shape[0])
    scores = {"pretrained": [], "random": []}
    for head in range(heads):
        for start in scores:
            keras.utils.set_random_seed(1000 + head)
            embedder = build_embedder(backbone_name, 64, input_shape=shape)
            if start == "pretrained":
                embedder.get_layer("backbone").set_weights(trained.get_weights())
            embeddings = embedder.predict(images, batch_size=256, verbose=0)
            scores[start].append(retrieval_metrics(embeddings, labels, k=(1,))["recall@1"])
    return {"split": "load_glyphs('test')", "embedding_dim": 64, "heads": heads,
            **{start: {"mean": round(float(np.mean(v)), 4), "std": round(float(np.std(v)), 4)}
               for start, v in scores.items()}}


def _seed_everything(seed):
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # the recipe's own determinism switch, only with that backend

        tf.config.experimental.enable_op_determinism()


def _fonts_sha256(names):
    """SHA-256 over the sorted (file name, file SHA-256) of the fonts `names` (matplotlib's files)."""
    from keras_dml.data.glyphs import font_files
    from keras_dml.models.pretrained import file_sha256

    entries = [f"{os.path.basename(p)} {file_sha256(p)}" for p in font_files() if os.path.basename(p) in names]
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def _versions():
    import keras
    import matplotlib
    import numpy as np

    versions = {"keras": keras.__version__, "backend": keras.backend.backend(), "numpy": np.__version__,
                "matplotlib": matplotlib.__version__, "python": sys.version.split()[0]}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    return versions


def _write_json(path, value):
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=1, ensure_ascii=False)
        file.write("\n")
    os.replace(temporary, path)


def _parse(pairs):
    settings = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"--set takes KEY=VALUE; got {pair!r}.")
        try:
            settings[key] = json.loads(text)
        except ValueError:
            settings[key] = text
    return settings


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m keras_dml.training.pretrain",
                                     description="Pretrain a backbone on the glyph pretraining characters "
                                                 "(recipe glyphs-pretrain) and write its weights and model card.")
    parser.add_argument("--out", help="folder of the weights and model card (default: the package's own)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="change recipe settings")
    args = parser.parse_args(argv)
    try:
        card = pretrain(_parse(args.set), args.out)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    summary = {key: card[key] for key in ("file", "sha256", "train_accuracy", "heldout_render_accuracy",
                                          "test_recall_at_1_new_head", "fit_seconds", "images_per_second")}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
