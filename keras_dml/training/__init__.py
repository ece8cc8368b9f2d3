"""Training from recipes into run directories.

- `config`: `TrainConfig`, every setting with its type, default and check;
- `recipes`: the benchmark set-ups and the demo, as settings;
- `data`: a run's dataset description, training batches and evaluation pipeline;
- `run_dir`: `RunDir`, the one writer and reader of a run directory;
- `fit`: `train(config, run_dir)`, which composes them with `model.fit`.

Example:

>>> from keras_dml import training
>>> config = training.get_recipe("digits-triplet-easy")
>>> model, metrics = training.train(config, "runs/digits")  # doctest: +SKIP
>>> training.RunDir("runs/digits").load_embedder("best")  # doctest: +SKIP
"""
from keras_dml.training.config import TrainConfig
from keras_dml.training.fit import build_criterion, build_optimizer, make_strategy, train
from keras_dml.training.recipes import RECIPES, get_recipe
from keras_dml.training.run_dir import RunDir, RunDirError

__all__ = ["RECIPES", "RunDir", "RunDirError", "TrainConfig", "build_criterion", "build_optimizer", "get_recipe",
           "make_strategy", "train"]
