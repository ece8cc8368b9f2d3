"""Training from recipes into run directories.

- `config`: `TrainConfig`, every setting with its type, default and check;
- `recipes`: the benchmark set-ups and the demo, as settings;
- `data`: a run's dataset description, training batches and evaluation pipeline;
- `run_dir`: `RunDir`, the one writer and reader of a run directory;
- `fit`: `train(config, run_dir)`, which composes them with `model.fit`.

`config` and `recipes` are plain Python; the names from `data`, `run_dir` and `fit`
load Keras (and TensorFlow) on first use, so that `keras-dml --help` stays instant.

Example:

>>> from keras_dml import training
>>> config = training.get_recipe("digits-triplet-easy")
>>> model, metrics = training.train(config, "runs/digits")  # doctest: +SKIP
>>> training.RunDir("runs/digits").load_embedder("best")  # doctest: +SKIP
"""
import importlib

from keras_dml.training.config import TrainConfig
from keras_dml.training.recipes import RECIPES, get_recipe

_LAZY = {"train": "fit", "build_optimizer": "fit", "make_strategy": "fit", "NonFiniteLossError": "fit",
         "RunDir": "run_dir", "RunDirError": "run_dir"}

__all__ = ["RECIPES", "NonFiniteLossError", "RunDir", "RunDirError", "TrainConfig", "build_optimizer", "get_recipe",
           "make_strategy", "train"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"keras_dml.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'keras_dml.training' has no attribute {name!r}")
