"""Train an embedder from a recipe: data -> embedder -> criterion -> `model.fit` -> run directory.

`train(config, run_dir)` composes the library's public calls and writes:

    run_dir/config.json      the full configuration (a resumed run must match it)
    run_dir/backup/          keras.callbacks.BackupAndRestore state (removed when done)
    run_dir/history.jsonl    one line of logs per epoch, retrieval metrics included
    run_dir/best.keras       the MetricModel with the best validation MAP@R so far
    run_dir/embedder.keras   the final embedder, the part to export
    run_dir/metrics.json     the final retrieval metrics on the test classes
    run_dir/logs/            TensorBoard logs

A killed run (Ctrl-C, SIGTERM, a lost machine) resumes with `resume=True` from its last
finished epoch, on the same batches it would have seen: the P x K stream is a function
of the seed, and the finished epochs' batches are skipped.
"""
import dataclasses
import inspect
import json
import signal
from pathlib import Path

import keras


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on; a recipe fills it, `--set key=value` overrides it."""

    dataset: str = "digits"
    data_dir: str = None
    manual_dir: str = None
    backbone: str = "mlp"
    weights: str = None
    embedding_dim: int = 16
    image_size: int = 8
    pooling: str = "avg"
    freeze_batchnorm: bool = True
    loss: dict = dataclasses.field(default_factory=lambda: {"class": "TripletLoss", "params": {}})
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    proxy_lr_multiplier: float = 1.0
    classes_per_batch: int = 5
    samples_per_class: int = 16
    epochs: int = 10
    steps_per_epoch: int = None
    eval_every: int = 1
    seed: int = 0
    jit_compile: object = "auto"
    mixed_precision: str = None
    strategy: str = "default"

    @classmethod
    def from_dict(cls, values):
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"Unknown training setting(s) {unknown}; valid: {[f.name for f in dataclasses.fields(cls)]}.")
        return cls(**values)

    def to_dict(self):
        return dataclasses.asdict(self)


def build_criterion(spec, num_classes, embedding_dim):
    """The loss described by `{"class": name in keras_dml.losses, "params": {...}}`.

    `num_classes` and `embedding_dim` are passed to the losses whose constructor takes
    them (proxy losses, PDDM); a `base_loss` param that is itself a spec is built first.
    """
    from keras_dml import losses

    if not isinstance(spec, dict) or "class" not in spec:
        raise ValueError(f"loss must be a dict {{'class': ..., 'params': {{...}}}}; got {spec!r}.")
    cls = getattr(losses, spec["class"], None)
    if not (inspect.isclass(cls)):
        raise ValueError(f"Unknown loss class {spec['class']!r}; valid: {sorted(losses.__all__)}.")
    params = dict(spec.get("params", {}))
    if isinstance(params.get("base_loss"), dict):
        params["base_loss"] = build_criterion(params["base_loss"], num_classes, embedding_dim)
    accepted = inspect.signature(cls.__init__).parameters
    for name, value in (("num_classes", num_classes), ("embedding_dim", embedding_dim)):
        if name in accepted:
            params.setdefault(name, value)
    return cls(**params)


def build_optimizer(config):
    """Adam or AdamW at `learning_rate`; proxies at `proxy_lr_multiplier` times it."""
    from keras_dml import optimizers

    choices = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}
    if config.optimizer not in choices:
        raise ValueError(f"Unknown optimizer={config.optimizer!r}; expected one of {sorted(choices)}.")
    kwargs = {"weight_decay": config.weight_decay} if config.optimizer == "adamw" else {}
    optimizer = choices[config.optimizer](learning_rate=config.learning_rate, **kwargs)
    if config.proxy_lr_multiplier != 1.0:
        optimizer = optimizers.with_proxy_lr_multiplier(optimizer, config.proxy_lr_multiplier)
    return optimizer


def load_data(config):
    """`(train_batches, test_batches, num_train_classes, input_shape, train_size)`."""
    import tensorflow as tf

    from keras_dml.data import augment, class_balanced, load_dataset

    train, num_classes = load_dataset(config.dataset, "train", data_dir=config.data_dir, manual_dir=config.manual_dir)
    test, _ = load_dataset(config.dataset, "test", data_dir=config.data_dir, manual_dir=config.manual_dir)
    train_size = int(train.reduce(0, lambda count, _: count + 1))
    if config.dataset == "digits":
        input_shape, train_transform, test_batches = (8, 8, 1), None, test.batch(256)
    else:
        input_shape = (config.image_size, config.image_size, 3)
        train_transform = augment.train_transform(config.image_size)
        test_batches = augment.map_images(test, augment.eval_transform(config.image_size), batch_size=64)
    train_batches = class_balanced(
        train, config.classes_per_batch, config.samples_per_class, seed=config.seed, transform=train_transform
    )
    return train_batches.prefetch(tf.data.AUTOTUNE), test_batches, num_classes, input_shape, train_size


class _EpochLog(keras.callbacks.Callback):
    """Appends each epoch's logs to `history.jsonl`."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _finished_epochs(backup_dir):
    metadata = Path(backup_dir) / "training_metadata.json"
    return json.loads(metadata.read_text())["epoch"] if metadata.exists() else 0


def _prepare_run_dir(run_dir, config, resume):
    run_dir = Path(run_dir)
    config_file = run_dir / "config.json"
    if config_file.exists():
        if not resume:
            raise ValueError(f"run directory {run_dir} already holds a run; pass resume=True (--resume) "
                             "to continue it, or choose another directory.")
        saved = json.loads(config_file.read_text())
        if saved != config.to_dict():
            changed = sorted(k for k in set(saved) | set(config.to_dict()) if saved.get(k) != config.to_dict().get(k))
            raise ValueError(f"cannot resume {run_dir}: its config differs in {changed}.")
    elif resume and run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(f"cannot resume {run_dir}: it has no config.json.")
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file.write_text(json.dumps(config.to_dict(), indent=2))
    return run_dir


def make_strategy(config):
    """The `tf.distribute` strategy of `config.strategy` and the `jit_compile` to use under it."""
    from keras_dml import distributed

    if config.strategy == "multiworker":
        raise ValueError(
            "strategy='multiworker': Keras 3's model.fit fails under MultiWorkerMirroredStrategy "
            "(it cannot reduce the (x, y) batch); the losses support it in a custom training loop, "
            "see docs/distributed.md."
        )
    strategy = distributed.make_strategy(config.strategy)
    jit_compile = config.jit_compile
    if strategy.num_replicas_in_sync > 1:
        if jit_compile is True:
            raise ValueError("jit_compile=True fails in Keras's fit on several replicas "
                             "(keras-team/keras#19005); use jit_compile='auto' or False.")
        jit_compile = False
        if config.classes_per_batch % strategy.num_replicas_in_sync:
            raise ValueError(
                f"classes_per_batch={config.classes_per_batch} must be a multiple of the "
                f"{strategy.num_replicas_in_sync} replicas, so that each replica gets whole classes."
            )
    return strategy, jit_compile


def train(config, run_dir, resume=False, callbacks=(), verbose=1):
    """Train as `config` says, writing the run directory; returns `(model, metrics)`.

    `config.mixed_precision` (e.g. `"mixed_bfloat16"`) applies to this run only: the
    global dtype policy is restored afterwards.
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    strategy, jit_compile = make_strategy(config)
    run_dir = _prepare_run_dir(run_dir, config, resume)
    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.config.set_dtype_policy(config.mixed_precision)
    try:
        return _fit(config, run_dir, strategy, jit_compile, callbacks, verbose)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _fit(config, run_dir, strategy, jit_compile, callbacks, verbose):
    from keras_dml.evaluation import RetrievalEvaluation
    from keras_dml.models import MetricModel, build_embedder

    train_batches, test_batches, num_classes, input_shape, train_size = load_data(config)
    batch_size = config.classes_per_batch * config.samples_per_class
    steps = config.steps_per_epoch or max(1, train_size // batch_size)
    with strategy.scope():
        embedder = build_embedder(config.backbone, config.embedding_dim, input_shape=input_shape,
                                  weights=config.weights, pooling=config.pooling,
                                  freeze_batchnorm=config.freeze_batchnorm)
        model = MetricModel(embedder, build_criterion(config.loss, num_classes, config.embedding_dim))
        model.build((None, *input_shape))
        model.compile(optimizer=build_optimizer(config), jit_compile=jit_compile)

    backup_dir = run_dir / "backup"
    done = _finished_epochs(backup_dir)
    evaluation = RetrievalEvaluation(test_batches, every=config.eval_every, verbose=0)  # fit prints the logs
    all_callbacks = [
        evaluation,
        keras.callbacks.BackupAndRestore(str(backup_dir)),
        keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor="val_map_at_r", mode="max",
                                        save_best_only=True),
        keras.callbacks.TensorBoard(str(run_dir / "logs")),
        _EpochLog(run_dir / "history.jsonl"),
        *callbacks,
    ]
    previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        model.fit(train_batches.skip(done * steps), epochs=config.epochs, steps_per_epoch=steps,
                  callbacks=all_callbacks, shuffle=False, verbose=verbose)
    except KeyboardInterrupt:
        print(f"\nInterrupted after epoch {_finished_epochs(backup_dir)}: resume with "
              f"`keras-dml train --run-dir {run_dir} --resume` (same settings).")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)

    metrics = evaluation.evaluate()
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    model.embedder.save(run_dir / "embedder.keras")
    return model, metrics

