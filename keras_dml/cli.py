"""The `keras-dml` command line. Each subcommand composes the library's public calls."""
import argparse
import os
import sys


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


DEMO_LOSSES = ("triplet", "contrastive", "npair", "multisimilarity")


def demo_loss(name):
    """The loss the demo trains with, by short name."""
    from keras_dml import losses

    factories = {
        "triplet": lambda: losses.TripletLoss(margin=0.2, positive="easy", negative="semihard"),
        "contrastive": lambda: losses.ContrastiveLoss(positive="easy", negative="semihard"),
        "npair": lambda: losses.NPairLoss(),
        "multisimilarity": lambda: losses.MultiSimilarityLoss(),
    }
    if name not in factories:
        raise ValueError(f"Unknown loss={name!r}; expected one of {sorted(factories)}.")
    return factories[name]()


def _print_metrics(title, metrics):
    keys = [k for k in metrics if k.startswith("recall@")] + ["r_precision", "map_at_r"]
    print(f"{title:<22}" + "  ".join(f"{k}={metrics[k]:.4f}" for k in keys))


def run_demo(loss="triplet", epochs=20, seed=0, batch_size=128, verbose=1):
    """Train a small embedder on digits 0-4, evaluate retrieval on the unseen digits 5-9.

    The embedder is a linear 16-d projection of the pixels, L2-normalised: on this
    zero-shot split a deeper network overfits the five training classes, and
    easy-positive triplets transfer to unseen classes where all/hard positives do not
    (see docs/easy_positives.md). Returns `(model, metrics_before, metrics_after)`.
    """
    import keras

    from keras_dml.data import load_digits
    from keras_dml.evaluation import retrieval_metrics

    keras.utils.set_random_seed(seed)
    train_x, train_y = load_digits("train")
    test_x, test_y = load_digits("test")
    model = keras.Sequential(
        [
            keras.Input(train_x.shape[1:]),
            keras.layers.Flatten(),
            keras.layers.Dense(16),
            keras.layers.UnitNormalization(),
        ],
        name="digits_embedder",
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=demo_loss(loss), jit_compile=True)
    print(f"keras-dml demo: {len(train_y)} training digits (classes 0-4), "
          f"{len(test_y)} held-out digits (classes 5-9), loss={loss}, epochs={epochs}, seed={seed}")
    before = retrieval_metrics(model.predict(test_x, verbose=0), test_y)
    model.fit(train_x, train_y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose)
    after = retrieval_metrics(model.predict(test_x, verbose=0), test_y)
    print("Retrieval on the held-out classes 5-9:")
    _print_metrics("  before training", before)
    _print_metrics("  after training", after)
    return model, before, after


def _demo(args):
    model, _, after = run_demo(loss=args.loss, epochs=args.epochs, seed=args.seed,
                               verbose=1 if sys.stdout.isatty() else 2)
    if args.export_dir:
        from keras_dml.export import describe_export, export_embedder

        card = export_embedder(model, args.export_dir, overwrite=True, pixel_scale=1 / 16,
                               metrics={k: after[k] for k in ("recall@1", "map_at_r")})
        print(describe_export(card, args.export_dir))
    return 0


def _parse_overrides(pairs):
    """`key=value` strings -> dict; values are JSON when they parse, else strings."""
    import json

    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes key=value pairs; got {pair!r}.")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def _train(args):
    import json
    from pathlib import Path

    from keras_dml import recipes, training

    run_dir = Path(args.run_dir or Path("runs") / (args.recipe or "run"))
    if args.resume and (run_dir / "config.json").exists() and not args.recipe:
        config = json.loads((run_dir / "config.json").read_text())
    elif args.recipe:
        config = recipes.get_recipe(args.recipe)
    else:
        raise SystemExit("train needs --recipe NAME (see `keras-dml recipes`), or --run-dir DIR --resume.")
    flags = {"epochs": args.epochs, "seed": args.seed, "data_dir": args.data_dir, "manual_dir": args.manual_dir,
             "strategy": args.strategy}
    config.update({k: v for k, v in flags.items() if v is not None})
    config.update(_parse_overrides(args.set))
    try:
        _, metrics = training.train(config, run_dir, resume=args.resume, verbose=1 if sys.stdout.isatty() else 2)
    except KeyboardInterrupt:
        return 130
    print(f"Run written to {run_dir}: " + ", ".join(f"{k}={metrics[k]:.4f}" for k in ("recall@1", "map_at_r")))
    return 0


def _recipes(args):
    from keras_dml import recipes

    for name in sorted(recipes.RECIPES):
        print(f"{name:<28} {recipes.describe(name)}")
    return 0


def _evaluate(args):
    import json

    import numpy as np

    from keras_dml.data import augment, load_dataset
    from keras_dml.evaluation import retrieval_metrics
    from keras_dml.export import load_embedder

    embedder, _ = load_embedder(args.model)
    dataset, _ = load_dataset(args.dataset, args.split, data_dir=args.data_dir, manual_dir=args.manual_dir)
    if args.dataset != "digits":
        size = embedder.inputs[0].shape[1]
        dataset = augment.map_images(dataset, augment.eval_transform(size, resize_size=int(size * 256 / 224)))
    images, labels, embeddings = [], [], []
    for x, y in dataset.batch(args.batch_size):
        embeddings.append(np.asarray(embedder(x, training=False)))
        labels.append(np.asarray(y))
        if args.plots:
            images.append(np.asarray(x))
    embeddings, labels = np.concatenate(embeddings), np.concatenate(labels)
    metrics = retrieval_metrics(embeddings, labels, k=args.k, nmi=args.nmi)
    print(json.dumps(metrics, indent=2))
    if args.plots:
        from keras_dml.visualize import save_plots

        paths = save_plots(args.plots, embeddings, labels, images=np.concatenate(images))
        print("Plots written: " + ", ".join(str(p) for p in paths))
    return 0


def _export(args):
    from keras_dml.export import describe_export, export_embedder, load_embedder

    embedder, metrics = load_embedder(args.model)
    card = export_embedder(embedder, args.out, formats=args.formats, include_preprocessing=not args.float_input,
                           verify=not args.no_verify, overwrite=args.overwrite, metrics=metrics,
                           pixel_scale=args.pixel_scale)
    print(describe_export(card, args.out))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-dml", description="Deep metric learning for Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="train on the bundled digits (no download), print retrieval metrics, export",
        description="Train a small embedder on digits 0-4, evaluate retrieval on the unseen digits 5-9, "
                    "and export it to SavedModel and ONNX with verified parity.",
    )
    demo.add_argument("--loss", choices=DEMO_LOSSES, default="triplet",
                      help="triplet = TripletLoss(positive='easy', negative='semihard') (default)")
    demo.add_argument("--epochs", type=int, default=20)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--export-dir", default="runs/demo/export",
                      help="where the exported embedder goes ('' to skip the export)")
    demo.set_defaults(handler=_demo)

    train = commands.add_parser("train", help="train from a recipe into a run directory",
                                description="Train from a recipe (see `keras-dml recipes`). A killed run "
                                            "resumes with --resume on the same run directory.")
    train.add_argument("--recipe", help="recipe name, e.g. cars196-potential-field or digits-triplet-easy")
    train.add_argument("--run-dir", help="run directory (default runs/RECIPE)")
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    train.add_argument("--epochs", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--data-dir", help="TFDS data directory")
    train.add_argument("--manual-dir", help="folder with the datasets' original archives (see docs/data.md)")
    train.add_argument("--strategy", choices=("default", "mirrored", "multiworker"),
                       help="tf.distribute strategy (see docs/distributed.md)")
    train.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                       help="override recipe settings, e.g. --set learning_rate=3e-5 jit_compile=true")
    train.set_defaults(handler=_train)

    recipes = commands.add_parser("recipes", help="list the training recipes",
                                  description="List the training recipes.")
    recipes.set_defaults(handler=_recipes)

    evaluate = commands.add_parser("evaluate", help="retrieval metrics of a trained embedder on a dataset",
                                   description="Embed a dataset split with a trained embedder and print "
                                               "Recall@K, R-Precision, MAP@R (and NMI).")
    evaluate.add_argument("model", help="a .keras file or a run directory")
    evaluate.add_argument("--dataset", default="digits", help="digits, cars196, cub200, sop, or an image folder")
    evaluate.add_argument("--split", default="test", choices=("train", "test"))
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--manual-dir")
    evaluate.add_argument("--k", type=int, nargs="*", default=[1, 2, 4, 8])
    evaluate.add_argument("--nmi", action="store_true", help="also k-means NMI")
    evaluate.add_argument("--batch-size", type=int, default=128)
    evaluate.add_argument("--plots", metavar="DIR", help="write a 2-D map, a retrieval grid and projector files")
    evaluate.set_defaults(handler=_evaluate)

    export = commands.add_parser("export", help="export an embedder to SavedModel and ONNX, verified",
                                 description="Export a trained embedder (.keras file or run directory) to a "
                                             "SavedModel and an ONNX model, checking parity with Keras.")
    export.add_argument("model", help="a .keras file or a run directory")
    export.add_argument("--out", required=True, help="target directory")
    export.add_argument("--formats", nargs="*", default=["saved_model", "onnx"])
    export.add_argument("--float-input", action="store_true",
                        help="take the embedder's float input instead of raw uint8 pixels")
    export.add_argument("--pixel-scale", type=float, default=1.0,
                        help="value of one uint8 unit in the embedder's input (1/255 for [0, 1] inputs)")
    export.add_argument("--overwrite", action="store_true")
    export.add_argument("--no-verify", action="store_true",
                        help="skip reloading the artefacts and comparing them with Keras (not recommended)")
    export.set_defaults(handler=_export)
    return parser


def main(argv=None):
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
