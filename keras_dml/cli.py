"""The `keras-dml` command line. Each subcommand composes the library's public calls.

    keras-dml demo                                   # train (random and pretrained), export: runs/demo
    keras-dml train --recipe cub200-potential-field --set epochs=100
    keras-dml train --recipe digits-triplet-easy --set dataset=photos/ test_fraction=0.25 \\
        backbone=small_cnn image_size=64
    keras-dml evaluate runs/demo [--weights final]
    keras-dml export runs/demo --out exported/demo

Errors are one or two lines in the command line's terms with exit status 2 (`--debug`
shows the traceback): a library error that names its argument (`checks.ArgumentError`)
is shown with that argument's flag, and the settings that would fix it as flags. Warnings
are shown one line each at the end (a failed command only counts them). `--help` starts
no TensorFlow (it reads the valid names from `keras_dml.names`), and TensorFlow's
start-up logs are silenced (TF_CPP_MIN_LOG_LEVEL, absl, and stderr during its import).
"""
import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from keras_dml import checks, names

USAGE_ERROR = 2
# The flags of the library's argument names, by command; train and demo take the others as --set KEY=VALUE.
FLAGS = {
    "train": {"run_dir": "--run-dir", "resume": "--resume"},
    "demo": {"run_dir": "--run-dir"},
    "evaluate": {"weights": "--weights", "dataset": "--dataset", "split": "--split", "k": "--k",
                 "batch_size": "--batch-size", "plots": "--plots"},
    "export": {"directory": "--out", "overwrite": "--overwrite", "weights": "--weights", "formats": "--formats",
               "pixel_scale": "--pixel-scale", "include_preprocessing": "--float-input"},
}
METRICS_LINE = ("Recall@1: the share of held-out images whose nearest neighbour is of their class. "
                "MAP@R: mean average precision over each image's R nearest neighbours "
                "(R = the other images of its class); 1 is perfect.")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command != "recipes":
        _quiet_tensorflow(args.debug)
    if args.debug:
        return args.handler(args)
    with warnings.catch_warnings(record=True) as caught:  # the filters stay as they are
        try:
            code = args.handler(args)
        except KeyboardInterrupt:
            return 130
        except (ValueError, OSError, RuntimeError) as error:
            counted = f" and {len(caught)} warning{'s' * (len(caught) > 1)}" if caught else ""
            print(f"keras-dml {args.command}: error: {describe_error(args.command, error)}\n"
                  f"(--debug shows the traceback{counted})", file=sys.stderr)
            return USAGE_ERROR
    _print_warnings(args.command, caught)
    return code


def describe_error(command, error):
    """`error` in this command line's terms: an `ArgumentError` with its flag and its remedies as flags."""
    if not isinstance(error, checks.ArgumentError):
        return str(error)
    message = error.describe(lambda name, value: _spell(command, name, value))
    flag = _flag(command, error.name)
    return f"argument {flag}: {message}" if flag else message


def _flag(command, name):
    """The flag of the library argument `name` in `command`, or None."""
    from keras_dml.training import TrainConfig

    if name in FLAGS.get(command, {}):
        return FLAGS[command][name]
    if command in ("train", "demo") and name in TrainConfig.names():
        return f"--set {name}"
    return None


def _spell(command, name, value):
    """`name=value` as this command line takes it: a flag, `--set KEY=VALUE`, or a dataset option."""
    flag = _flag(command, name)
    if flag and flag.startswith("--set "):
        text = value if isinstance(value, str) else json.dumps(value)
        return f"{flag}={text}"
    if flag and isinstance(value, bool):
        return flag if value else f"no {flag}"
    if flag:
        return f"{flag} {value}"
    if command in ("train", "demo"):  # what else a run passes on goes to the dataset
        return f"--set data_options='{json.dumps({name: value})}'"
    return checks.python_spelling(name, value)


def _print_warnings(command, caught):
    """The warnings of a command, one line each; repeats of one warning (same place) as a count."""
    groups = {}
    for warning in caught:
        groups.setdefault((warning.category, warning.filename, warning.lineno), []).append(warning)
    for group in groups.values():
        first = str(group[0].message).strip().splitlines()[0] if str(group[0].message).strip() else ""
        more = f" (and {len(group) - 1} more like it)" if len(group) > 1 else ""
        print(f"keras-dml {command}: warning: {first}{more}", file=sys.stderr)


def _quiet_tensorflow(debug):
    """Import TensorFlow with its start-up logs silenced (they go to stderr from C++ and absl)."""
    if debug or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices()  # CUDA's start-up messages come here
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")


# ---- train -------------------------------------------------------------------------------


def _train(args):
    from keras_dml import training

    run_dir = Path(args.run_dir or Path("runs") / (args.recipe or "run"))
    config = _config(args.recipe, args.set, run_dir if args.resume else None)
    _, metrics = training.train(config, run_dir, resume=args.resume, verbose=_verbosity())
    if training.RunDir(run_dir).is_finished():  # a worker other than the chief may end before the chief writes it
        _print_summary(run_dir)
    return 0


def _config(recipe, overrides, resume_dir):
    """The settings: the recipe's (or a resumed run's own), then `--set`'s; checked."""
    from keras_dml import training

    if recipe:
        config = training.get_recipe(recipe)
    elif resume_dir is not None and (resume_dir / "config.json").is_file():
        config = training.RunDir(resume_dir).config()
    else:
        raise ValueError("train needs --recipe NAME (see `keras-dml recipes`), or --run-dir DIR --resume.")
    config.update(_parse_settings(overrides))
    return training.TrainConfig.from_dict(config).to_dict()


def _parse_settings(pairs):
    """`key=value` strings (of every --set) -> `{key: value}`, each value parsed as its setting's type.

    A key given twice is an error: which of the two was meant is not for us to guess.
    """
    from keras_dml.training import TrainConfig

    settings, given = {}, {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes key=value pairs; got {pair!r}.")
        if key in given:
            raise checks.ArgumentError(key, f"{key} is set twice ({given[key]} and {pair}); set it once.")
        given[key] = pair
        settings[key] = TrainConfig.parse(key, value)
    return settings


def _print_summary(run_dir):
    from keras_dml.training import RunDir

    run = RunDir(run_dir)
    best_epoch, _ = run.best_epoch()
    print(f"Run written to {run.path}:")
    _print_metrics(f"  final (epoch {run.config()['epochs']})", run.metrics_of("final"))
    if best_epoch is not None:
        _print_metrics(f"  best (epoch {best_epoch})", run.metrics_of("best"))
    print(f"  evaluate: keras-dml evaluate {run.path}    export: keras-dml export {run.path} --out DIR")


def _print_metrics(title, metrics):
    keys = [k for k in metrics if k.startswith("recall@")] + ["r_precision", "map_at_r"]
    print(f"{title:<22} " + "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics))


def _verbosity():
    return 1 if sys.stdout.isatty() else 2


# ---- demo --------------------------------------------------------------------------------


def _demo(args):
    from keras_dml import training

    run_dir = _free_run_dir(Path(args.run_dir))
    results = []
    for start, recipe, path in (("random start", "demo", run_dir),
                                ("pretrained start", "demo-pretrained", _free_run_dir(Path(f"{run_dir}-pretrained")))):
        config = training.TrainConfig.from_dict({**training.get_recipe(recipe), **_parse_settings(args.set)})
        print(f"keras-dml demo, {start}: recipe {recipe!r} ({training.recipes.describe(config.to_dict())}), "
              f"run directory {path}")
        baseline = _baseline_callback(config)
        training.train(config, path, callbacks=[baseline], verbose=_verbosity())
        results.append((start, path, baseline.metrics))
    for start, path, untrained in results:
        print(f"Retrieval on the held-out classes, {start}:")
        _print_metrics("  untrained", untrained)
        _print_summary(path)
    print(METRICS_LINE)
    if args.export_dir != "":
        _export_run(run_dir, Path(args.export_dir or run_dir / "export"), weights="best", skip_on_backend=True)
    return 0


def _free_run_dir(path):
    """`path`, or `path-2`, `path-3`, ... when it already holds a run (the demo never overwrites one)."""
    candidate, number = path, 1
    while candidate.exists() and any(candidate.iterdir()):
        number += 1
        candidate = path.with_name(f"{path.name}-{number}")
    return candidate


def _baseline_callback(config):
    """A callback that records the untrained embedder's retrieval metrics, before the first step."""
    import keras

    from keras_dml.evaluation import RetrievalEvaluation
    from keras_dml.training import data

    evaluation = RetrievalEvaluation(data.evaluation_batches(data.describe(config)), verbose=0)

    class Baseline(keras.callbacks.Callback):
        metrics = None

        def on_train_begin(self, logs=None):
            if self.metrics is None:
                evaluation.set_model(self.model)
                self.metrics = evaluation.evaluate()

    return Baseline()


# ---- evaluate ----------------------------------------------------------------------------


def _evaluate(args):
    import json

    import numpy as np

    from keras_dml.evaluation import RetrievalEvaluation, retrieval_metrics
    from keras_dml.training import data

    embedder, description, source = _load(args.model, args.weights, args.dataset)
    print(f"Evaluating {source} on {description['dataset']} ({args.split} split)", file=sys.stderr)
    batches = data.evaluation_batches(description, args.split, batch_size=args.batch_size)
    evaluation = RetrievalEvaluation(batches, k=args.k, nmi=args.nmi, verbose=0)
    evaluation.set_model(embedder)
    embeddings, labels = evaluation.embed()
    metrics = retrieval_metrics(embeddings, labels, k=evaluation.k, nmi=args.nmi)
    print(json.dumps(metrics, indent=2))
    if args.plots:
        from keras_dml.visualize import save_plots

        images = np.concatenate([np.asarray(x) for x, _ in batches])
        paths = save_plots(args.plots, embeddings, labels, images=images)
        print("Plots written: " + ", ".join(str(p) for p in paths))
    return 0


def _load(source, weights, dataset=None):
    """`(embedder, dataset description, what was loaded)` from a run directory or a `.keras` file."""
    from keras_dml.training import RunDir, TrainConfig, data

    path = Path(source)
    if path.is_dir():
        run = RunDir(path)
        description = run.dataset()
        if dataset is not None and dataset != description["dataset"]:
            description = data.describe(TrainConfig(dataset=dataset, image_size=description["image_size"]))
        return run.load_embedder(weights), description, f"{path} ({weights} weights)"
    if dataset is None:
        raise ValueError(f"{source} is not a run directory: say which data to evaluate it on with --dataset.")
    embedder = _load_keras_file(path)
    description = data.describe(TrainConfig(dataset=dataset, image_size=embedder.inputs[0].shape[1]))
    return embedder, description, str(path)


def _load_keras_file(path):
    """The embedder in a `.keras` file (a MetricModel's embedder part)."""
    from keras_dml.training.run_dir import load_keras_file

    path = Path(path)
    if path.suffix != ".keras" or not path.is_file():
        raise ValueError(f"{path} is neither a run directory nor a .keras file.")
    model = load_keras_file(path)
    return getattr(model, "embedder", model)


# ---- export ------------------------------------------------------------------------------


def _export(args):
    _export_run(Path(args.model), Path(args.out), weights=args.weights, formats=args.formats,
                float_input=args.float_input, verify=not args.no_verify, overwrite=args.overwrite,
                pixel_scale=args.pixel_scale)
    return 0


def _export_run(source, out, weights, formats=names.EXPORT_FORMATS, float_input=False, verify=True,
                overwrite=False, pixel_scale=None, skip_on_backend=False):
    import keras

    from keras_dml.export import describe_export, export_embedder
    from keras_dml.training import RunDir

    if pixel_scale is not None:
        pixel_scale = checks.pixel_scale(pixel_scale)
    if source.is_dir():
        run = RunDir(source)
        embedder, metrics = run.load_embedder(weights), run.metrics_of(weights)
        exported = f"{weights} weights of {source}"
        scale_source = "recorded in the run directory" if pixel_scale is None else "--pixel-scale"
        pixel_scale = run.dataset()["pixel_scale"] if pixel_scale is None else pixel_scale
    else:
        embedder, metrics, exported = _load_keras_file(source), None, str(source)
        scale_source = "--pixel-scale" if pixel_scale is not None else "default for [0, 255] inputs"
        pixel_scale = 1.0 if pixel_scale is None else pixel_scale
    try:
        card = export_embedder(embedder, out, formats=formats, include_preprocessing=not float_input,
                               verify=verify, overwrite=overwrite, metrics=metrics, pixel_scale=pixel_scale)
    except RuntimeError as error:
        if not skip_on_backend or keras.backend.backend() == "tensorflow":
            raise
        print(f"Export skipped on the {keras.backend.backend()} backend: {error}")
        return None
    print(describe_export(card, out))
    print(f"  {exported}; input scale: one uint8 unit = {pixel_scale:g} ({scale_source})")
    return card


# ---- recipes -----------------------------------------------------------------------------


def _recipes(args):
    from keras_dml.training import recipes

    if args.name:
        recipe, sources = recipes.get_recipe(args.name), recipes.sources(args.name)
        for key, value in recipe.items():
            if key == "loss":
                print(f"loss.class_name       {value['class_name']}")
                for name, item in value["config"].items():
                    print(f"loss.{name:<17} {item!s:<12} {sources.get('loss.' + name, '')}")
            else:
                print(f"{key:<22} {value!s:<12} {sources.get(key, '')}")
        return 0
    for name in sorted(recipes.RECIPES):
        print(f"{name:<28} {recipes.describe(recipes.RECIPES[name])}")
    return 0


def build_parser():
    from keras_dml.training.config import TrainConfig

    parser = argparse.ArgumentParser(prog="keras-dml", description="Deep metric learning for Keras 3.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and TensorFlow's logs")
    commands = parser.add_subparsers(dest="command", required=True)
    settings_help = ("settings (--set KEY=VALUE; plain values, null for none, JSON only for loss):\n"
                     + TrainConfig.describe_settings())

    demo = commands.add_parser(
        "demo", help="train the demo recipes (no download), random and pretrained start; print retrieval "
                     "metrics, export",
        description="Train the 'demo' recipe (random start) into a run directory and 'demo-pretrained' (the "
                    "glyph-pretrained small_resnet that ships with keras_dml) into RUN_DIR-pretrained, print "
                    "the untrained and trained retrieval metrics of both on held-out classes, and export the "
                    "random start's best embedder to SavedModel and ONNX.",
        epilog=settings_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--run-dir", default="runs/demo",
                      help="run directory (default runs/demo; runs/demo-2, ... when it holds a run)")
    demo.add_argument("--export-dir", help="where the export goes (default RUN_DIR/export; '' to skip)")
    demo.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                      help="change demo settings (several --set add up; each key once)")
    demo.set_defaults(handler=_demo)

    train = commands.add_parser(
        "train", help="train from a recipe into a run directory",
        description="Train from a recipe (see `keras-dml recipes`). A killed run resumes with --resume "
                    "on the same run directory.",
        epilog=settings_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--recipe", help="recipe name, e.g. cars196-potential-field or digits-triplet-easy")
    train.add_argument("--run-dir", help="run directory (default runs/RECIPE)")
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    train.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                       help="override recipe settings, e.g. --set learning_rate=3e-5 dataset=photos/ "
                            "(several --set add up; each key once)")
    train.set_defaults(handler=_train)

    recipes = commands.add_parser("recipes", help="list the training recipes, or show one with its sources",
                                  description="List the training recipes; with a NAME, its settings and "
                                              "where each comes from.")
    recipes.add_argument("name", nargs="?")
    recipes.set_defaults(handler=_recipes)

    evaluate = commands.add_parser(
        "evaluate", help="retrieval metrics of a trained embedder",
        description="Embed a split with a trained embedder and print Recall@K, R-Precision, MAP@R (and NMI). "
                    "A run directory is evaluated on its own dataset and test split, the same way training "
                    "evaluates it.")
    evaluate.add_argument("model", help="a run directory, or a .keras file (then --dataset)")
    evaluate.add_argument("--weights", choices=names.WEIGHTS, default="best",
                          help="best (highest val MAP@R, default) or final epoch")
    evaluate.add_argument("--dataset", help=f"another dataset than the run's: {', '.join(names.DATASETS)}, "
                                            "or an image folder")
    evaluate.add_argument("--split", default="test", choices=("train", "test"))
    evaluate.add_argument("--k", type=int, nargs="*", default=[1, 2, 4, 8])
    evaluate.add_argument("--nmi", action="store_true", help="also k-means NMI")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--plots", metavar="DIR", help="write a 2-D map, a retrieval grid and projector files")
    evaluate.set_defaults(handler=_evaluate)

    export = commands.add_parser(
        "export", help="export a run's embedder to SavedModel and ONNX, verified",
        description="Export a run directory's embedder to a SavedModel and an ONNX model, checking parity "
                    "with Keras. The input scale recorded in the run directory is used unless --pixel-scale.")
    export.add_argument("model", help="a run directory, or a .keras file")
    export.add_argument("--out", required=True, help="target directory")
    export.add_argument("--weights", choices=names.WEIGHTS, default="best",
                        help="best (highest val MAP@R, default) or final epoch")
    export.add_argument("--formats", nargs="+", choices=names.EXPORT_FORMATS, default=list(names.EXPORT_FORMATS))
    export.add_argument("--float-input", action="store_true",
                        help="take the embedder's float input instead of raw uint8 pixels")
    export.add_argument("--pixel-scale", type=float,
                        help="value of one uint8 unit in the embedder's input (default: the run's)")
    export.add_argument("--overwrite", action="store_true")
    export.add_argument("--no-verify", action="store_true",
                        help="skip reloading the artefacts and comparing them with Keras (not recommended)")
    export.set_defaults(handler=_export)
    return parser


if __name__ == "__main__":
    sys.exit(main())
