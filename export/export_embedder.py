"""Turn a trained embedder (a `.keras` file or a training run directory) into serving artefacts.

    python export/export_embedder.py runs/cars196 exported/cars196
    python export/export_embedder.py digits.keras exported/digits --pixel-scale 0.00392156862745098

writes `saved_model/`, `embedder.onnx` and `model_card.json` into the output directory
with `keras_dml.export.export_embedder`, checks both artefacts against the Keras model,
and prints where they are and how closely they match.
"""
import argparse
import os
import sys


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a .keras file, or a run directory holding embedder.keras (and metrics.json)")
    parser.add_argument("output", help="directory to write the artefacts to")
    parser.add_argument("--formats", nargs="+", default=["saved_model", "onnx"], choices=["saved_model", "onnx"])
    parser.add_argument("--float-input", action="store_true",
                        help="take the model's own float input instead of raw uint8 pixels")
    parser.add_argument("--pixel-scale", type=float, default=1.0,
                        help="model input per uint8 unit: 1.0 for [0, 255] backbones (default), 1/255 for [0, 1] models")
    parser.add_argument("--no-verify", action="store_true", help="skip reloading the artefacts and comparing with Keras")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from keras_dml.export import describe_export, export_embedder, load_embedder

    embedder, metrics = load_embedder(args.source)
    card = export_embedder(embedder, args.output, formats=args.formats, include_preprocessing=not args.float_input,
                           verify=not args.no_verify, overwrite=args.overwrite, metrics=metrics,
                           pixel_scale=args.pixel_scale)
    print(describe_export(card, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
