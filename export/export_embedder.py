"""Turn a trained embedder (a training run directory or a `.keras` file) into serving artefacts.

The `keras-dml export` subcommand as a script, with the same arguments:

    python export/export_embedder.py runs/demo --out exported/demo                  # best epoch
    python export/export_embedder.py runs/cars196 --out exported/cars196 --weights final
    python export/export_embedder.py digits.keras --out exported/digits --pixel-scale 0.00392156862745098

A run directory says its input scale (`dataset.json`); a bare `.keras` file takes
`--pixel-scale` (default 1: `[0, 255]` inputs).

It writes `saved_model/`, `embedder.onnx` and `model_card.json` with
`keras_dml.export.export_embedder`, checks both artefacts against the Keras model, and
prints where they are and how closely they match. `--help` lists the options.
"""
import sys

from keras_dml import cli


def main(argv=None):
    return cli.main(["export", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
