"""`train(config, run_dir)`: data -> embedder -> criterion -> `model.fit` -> run directory.

Every setting is checked against the data before the run directory is created: the
names, the folder, pretrained weights in reach, the batch composition against the
training classes (the sampler's checks), the criterion's class count and width against
the data and the embedder, the input scale. A failed start leaves nothing behind; the
run directory is created only in a new or empty folder (`RunDir`). A killed run (Ctrl-C, SIGTERM, SIGKILL, a lost machine) resumes with
`resume=True` from its last committed epoch, on the batches it would have seen: the
P x K stream is a function of the seed, and the finished epochs' batches are skipped.
A finished run resumed trains nothing.

On several replicas or workers (`strategy`), training runs in keras_dml's own loop,
`keras_dml.training.loop.fit`, instead of `model.fit`; only the chief writes `run_dir`.

A loss that is not finite (NaN or infinite) at any step stops the run with a
`NonFiniteLossError` on every path (`model.fit` and `loop.fit`): that epoch is not
committed, so no NaN weights reach best.keras or the backup, and the run is not finished.

With `warmup_epochs > 0` the backbone is frozen for the first epochs: the head and the
criterion's proxies train, the backbone keeps its pretrained weights.
"""
import contextlib
import json
import math
import shutil
import signal
import sys

import keras
import numpy as np

from keras_dml import checks
from keras_dml.training import data
from keras_dml.training.config import TrainConfig
from keras_dml.training.run_dir import EpochCommit, RunDir, RunDirError


class NonFiniteLossError(RuntimeError):
    """The training loss was NaN or infinite: the run stopped without committing that epoch."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `NonFiniteLossError` at the end of the first step whose loss is not finite.

    Unlike `keras.callbacks.TerminateOnNaN`, which ends `fit` quietly (the run would
    then finish as a success), the error reaches the caller, before the epoch's end
    would commit anything. Put it first.
    """

    def __init__(self, run_dir):
        super().__init__()
        self.run, self.epoch = run_dir, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(np.asarray(loss))):
            raise NonFiniteLossError(
                f"the training loss is {float(np.asarray(loss))} at epoch {self.epoch}, step {batch + 1}: the run "
                f"stopped, and {self.run.path} keeps only the epochs before it (unfinished). Train again in a new "
                "run directory with a lower learning_rate, or check the data and the loss settings.")


def build_optimizer(config):
    """Adam or AdamW at `learning_rate`; proxies at `proxy_lr_multiplier` times it."""
    from keras_dml import optimizers

    kwargs = {"weight_decay": config.weight_decay} if config.optimizer == "adamw" else {}
    optimizer = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}[config.optimizer](
        learning_rate=config.learning_rate, **kwargs)
    if config.proxy_lr_multiplier != 1.0:
        optimizer = optimizers.with_proxy_lr_multiplier(optimizer, config.proxy_lr_multiplier)
    return optimizer


def make_strategy(config):
    """The `tf.distribute` strategy of `config.strategy` and the `jit_compile` to use under it.

    A run on several replicas or workers trains in keras_dml's own loop
    (`keras_dml.training.loop`), which compiles each replica's step pieces with XLA
    (`jit_compile="auto"` means True there).
    """
    from keras_dml import distributed
    from keras_dml.training import loop

    strategy = distributed.make_strategy(config.strategy)
    jit_compile = config.jit_compile
    if loop.is_distributed(strategy):
        jit_compile = jit_compile in ("auto", True)
        if config.classes_per_batch % strategy.num_replicas_in_sync:
            raise ValueError(
                f"classes_per_batch={config.classes_per_batch} must be a multiple of the "
                f"{strategy.num_replicas_in_sync} replicas, so that each replica gets whole classes."
            )
    return strategy, jit_compile


def train(config, run_dir, resume=False, callbacks=(), verbose=1):
    """Train as `config` says, writing the run directory; returns `(model, metrics)`.

    `config` is a `TrainConfig` or a dict of its settings. `resume=True` continues the
    run in `run_dir` (which must hold the same config); on a finished run it trains
    nothing and returns the final model and metrics. `config.mixed_precision` (e.g.
    `"mixed_bfloat16"`) applies to this run only: the global dtype policy is restored.
    """
    from keras_dml.training import loop

    config = TrainConfig.from_dict(config if isinstance(config, dict) else config.to_dict())
    strategy, jit_compile = make_strategy(config)  # first: a multi-worker strategy must precede other TF ops
    run = RunDir(run_dir)
    worker_copy = None if loop.is_chief(strategy) else loop.worker_run_dir(run, resume)
    try:
        return _train(config, worker_copy or run, resume, strategy, jit_compile, callbacks, verbose)
    finally:
        if worker_copy is not None:
            shutil.rmtree(worker_copy.path, ignore_errors=True)


def _train(config, run, resume, strategy, jit_compile, callbacks, verbose):
    _check_run_dir(run, config, resume)
    if run.is_finished():
        print(f"{run.path} is a finished run of {config.epochs} epochs: nothing to train.")
        return run.load_model("final"), run.metrics()
    description = run.dataset() if run.holds_run() else data.describe(config)  # a resume keeps its record
    checks.pixel_scale(description["pixel_scale"])
    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.config.set_dtype_policy(config.mixed_precision)
    try:
        batches = data.training_batches(config, description)  # the sampler checks P x K against the classes
        with strategy.scope():
            model = _build_model(config, description)
        if not run.holds_run():
            run.create(config.to_dict(), description)
        return _fit(config, description, run, model, batches, strategy, jit_compile, callbacks, verbose)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _check_run_dir(run, config, resume):
    """Refuse a directory holding another run, or a resume that cannot work (before anything is built)."""
    if run.holds_run():
        if not resume:
            raise checks.ArgumentError("run_dir", f"run directory {run.path} already holds a run: choose another "
                                                  "directory, or resume it", {"resume": True})
        saved = run.config()
        changed = sorted(k for k in set(saved) | set(config.to_dict()) if saved.get(k) != config.to_dict().get(k))
        if changed:
            raise checks.ArgumentError(changed[0], f"cannot resume {run.path}: its config differs in {changed}; "
                                                   "resume with its own settings, or train into another directory.")
        if not run.is_finished():
            run.committed_epoch(config.epochs)  # refuses inconsistent backups now
    elif resume and run.path.exists() and any(run.path.iterdir()):
        raise RunDirError(f"cannot resume {run.path}: it holds no keras-dml run (no manifest.json).")
    else:
        run.check_new()


def _build_model(config, description):
    from keras_dml import losses
    from keras_dml.models import MetricModel, build_embedder

    input_shape = tuple(description["input_shape"])
    embedder = build_embedder(config.backbone, config.embedding_dim, input_shape=input_shape,
                              weights=config.weights, pooling=config.pooling,
                              freeze_batchnorm=config.freeze_batchnorm)
    try:
        criterion = losses.get(config.loss, num_classes=description["num_train_classes"],
                               embedding_dim=config.embedding_dim)
    except (TypeError, ValueError) as error:
        raise checks.ArgumentError("loss", f"loss={json.dumps(config.loss)} cannot be built: {error}") from None
    _check_criterion(criterion, config, description)
    model = MetricModel(embedder, criterion)
    model.build((None, *input_shape))
    return model


def _check_criterion(criterion, config, description):
    """An `ArgumentError` naming `loss` when the criterion's class count or width is not the run's."""
    wanted = {"num_classes": (description["num_train_classes"],
                              f"dataset={description['dataset']} has {description['num_train_classes']} "
                              "training classes"),
              "embedding_dim": (config.embedding_dim, f"the embedder's embedding_dim is {config.embedding_dim}")}
    for loss in (criterion, getattr(criterion, "base_loss", None)):
        for name, (value, said) in wanted.items():
            got = getattr(loss, name, None)
            if got is not None and got != value:
                raise checks.ArgumentError("loss", f"the loss config sets {name}={got}, but {said}: leave {name} "
                                                   f"out of the loss config (the run fills it in) or set it to {value}.")


def _fit(config, description, run, model, batches, strategy, jit_compile, callbacks, verbose):
    from keras_dml.evaluation import RetrievalEvaluation
    from keras_dml.training import loop

    run.remove_temporary_files()
    done = run.committed_epoch(config.epochs)
    train_batches, train_size = batches
    steps = config.steps_per_epoch or max(1, train_size // (config.classes_per_batch * config.samples_per_class))
    evaluation = RetrievalEvaluation(data.evaluation_batches(description), every=config.eval_every, verbose=0)
    all_callbacks = [StopOnNonFiniteLoss(run), evaluation, EpochCommit(run),
                     keras.callbacks.TensorBoard(str(run.make_directory("logs"))), *callbacks]
    backbone_layers = [(layer, layer.trainable) for layer in _layers(model.embedder.get_layer("backbone"))]
    previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for first, last, frozen in _phases(config):
            if last < done:
                continue
            with strategy.scope():  # the optimizer's variables are mirrored like the model's
                _start_phase(model, config, jit_compile and not loop.is_distributed(strategy), backbone_layers,
                             frozen)
            if first < done <= last:
                run.restore(model, done)
                print(f"Resuming {run.path} after epoch {done} of {config.epochs}.")
            start = max(first, done)
            if start < last and loop.is_distributed(strategy):
                loop.fit(model, strategy, train_batches.skip(start * steps), initial_epoch=start, epochs=last,
                         steps_per_epoch=steps, callbacks=all_callbacks, jit_compile=jit_compile, verbose=verbose)
            elif start < last:
                model.fit(train_batches.skip(start * steps), initial_epoch=start, epochs=last,
                          steps_per_epoch=steps, callbacks=all_callbacks, shuffle=False, verbose=verbose)
    except KeyboardInterrupt:
        committed = run.committed_epoch(config.epochs)
        print(f"\nInterrupted after epoch {committed}: resume with "
              f"`keras-dml train --run-dir {run.path} --resume`.", file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    evaluation.set_model(model)  # also when a resume had no epoch left to fit
    with loop.local_predict(model) if loop.is_distributed(strategy) else contextlib.nullcontext():
        metrics = evaluation.evaluate()
    run.finish(model, metrics)
    return model, metrics


def _phases(config):
    """`(first epoch, end epoch, backbone frozen)`: the warm-up, then the rest."""
    phases = [(0, config.warmup_epochs, True), (config.warmup_epochs, config.epochs, False)]
    return [phase for phase in phases if phase[1] > phase[0]]


def _start_phase(model, config, jit_compile, backbone_layers, frozen):
    """Freeze the backbone (or give its layers back their own settings) and compile with a new optimizer.

    Each phase has its own optimizer, built on the variables that train in it (the
    warm-up's Adam moments do not carry over: ours).
    """
    for layer, trainable in backbone_layers:
        layer.trainable = trainable
    if frozen:
        backbone_layers[0][0].trainable = False
    model.compile(optimizer=build_optimizer(config), jit_compile=jit_compile)
    model.optimizer.build(model.trainable_variables)


def _layers(layer):
    yield layer
    for sub in getattr(layer, "layers", ()):
        yield from _layers(sub)
