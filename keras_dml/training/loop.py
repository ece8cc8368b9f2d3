"""keras_dml's own training loop, for runs on several replicas or several workers.

Keras 3.15's `model.fit` fails under `MultiWorkerMirroredStrategy` (it reduces the
`(x, y)` batch before the first step) and with `jit_compile=True` on several replicas
(it compiles the whole `strategy.run` as one XLA cluster; keras-team/keras#19005). So
`keras_dml.training.train` routes such runs here (`is_distributed`); one device stays
on `model.fit`.

Each step, on every replica, inside `strategy.run`:

    embeddings, regularisation = embed(x)          # XLA-compiled (jit_compile)
    labels, embeddings = global_batch(labels, embeddings)   # all-gather, not compiled
    loss = criterion(labels, embeddings) / R + regularisation / R   # XLA-compiled
    optimizer.apply(tape.gradient(loss, variables))

XLA cannot compile a collective on CPU, so the gather stays between the two compiled
functions; `tf.GradientTape` differentiates through both. `optimizer.apply` sums the
replicas' gradients itself (Keras's TensorFlow optimizer all-reduces in a replica
context, each part of a `MultiOptimizer` its own variables), so the step sums them
exactly once. Callbacks get what `fit` gives them: `on_epoch_end(epoch, logs)` with
`logs["loss"]` the mean of the epoch's step losses, `model.stop_training`, a
`keras.callbacks.History` as `model.history`, and a progress bar on the chief (the
caller adds the stop on a non-finite loss, `fit.StopOnNonFiniteLoss`, as for `model.fit`).

Only the chief writes the run directory; every other worker writes its own copy to a
temporary directory (`worker_run_dir`), as Keras's `BackupAndRestore` does, and
deletes it at the end.

Example (a compiled `MetricModel` built under `strategy.scope()`):

>>> from keras_dml.training import loop
>>> history = loop.fit(model, strategy, batches, epochs=2, steps_per_epoch=10)  # doctest: +SKIP
"""
import contextlib
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_dml import distributed
from keras_dml.training.run_dir import RunDir


def is_distributed(strategy):
    """Whether a run under `strategy` trains here rather than in `model.fit`."""
    return strategy.num_replicas_in_sync > 1 or isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy):
    """Whether this process writes the run directory (always, outside a multi-worker cluster)."""
    return strategy.extended.should_checkpoint


def worker_run_dir(run, resume):
    """A non-chief worker's own run directory: a new temporary directory, holding a copy of the
    chief's run `run` when resuming (the workers share the chief's storage, as with
    `BackupAndRestore`). The caller deletes it when the run ends."""
    copy = RunDir(tempfile.mkdtemp(prefix="keras-dml-worker-"))
    if resume and run.holds_run():
        shutil.copytree(run.path, copy.path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("logs", ".*.tmp-*"))
    return copy


def fit(model, strategy, batches, epochs, steps_per_epoch, initial_epoch=0, callbacks=(), jit_compile=True,
        verbose=1):
    """Train the compiled `MetricModel` `model` on the global batches `batches` under `strategy`.

    Like `model.fit(batches, epochs=..., steps_per_epoch=..., initial_epoch=...)`: each
    epoch takes the next `steps_per_epoch` batches of one iterator. `batches` yields
    `(x, labels)` global batches, the same stream on every worker. Returns the `History`.
    """
    step = _train_step(model, strategy, jit_compile)
    iterator = iter(strategy.experimental_distribute_dataset(batches))
    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=True,
        add_progbar=bool(verbose) and is_chief(strategy), model=model, verbose=verbose, epochs=epochs,
        steps=steps_per_epoch)
    model.stop_training = False
    with local_predict(model):
        callback_list.on_train_begin()
        logs = {}
        for epoch in range(initial_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            total = 0.0
            for batch in range(steps_per_epoch):
                callback_list.on_train_batch_begin(batch)
                total += float(step(next(iterator)))
                logs = {"loss": total / (batch + 1)}
                callback_list.on_train_batch_end(batch, logs)
                if model.stop_training:
                    break
            logs = dict(logs)
            callback_list.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        callback_list.on_train_end(logs)
    return model.history


@contextlib.contextmanager
def local_predict(model):
    """Within it, `model.predict_on_batch(x)` embeds `x` on this process's copy of the weights.

    Under a strategy Keras's own sends the whole batch to every replica and
    concatenates the outputs (twice the rows on 2 replicas); evaluation needs none of
    that: each worker embeds the evaluation set itself.
    """
    forward = tf.function(lambda x: model(x, training=False))
    model.predict_function = lambda data: forward(data[0][0])  # Keras calls it with [(x,)]
    try:
        yield
    finally:
        model.predict_function = None  # Keras makes its own again on the next predict


def _train_step(model, strategy, jit_compile):
    """`step(distributed batch) -> loss` of the global batch (a `tf.function`)."""
    embedder, criterion, optimizer = model.embedder, model.criterion, model.optimizer
    replicas = strategy.num_replicas_in_sync

    @tf.function(jit_compile=jit_compile)
    def embed(x):
        embeddings = embedder(x, training=True)
        return embeddings, _total(embedder.losses)

    @tf.function(jit_compile=jit_compile)
    def criterion_loss(labels, embeddings):
        with distributed.gathered_by_caller():
            loss = criterion(labels, embeddings)
        return loss + _total(getattr(criterion, "losses", ())) / replicas

    def replica_step(x, labels):
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            embeddings, regularisation = embed(x)
            if replicas > 1:
                labels, embeddings = distributed.global_batch(context, labels, embeddings)
            loss = criterion_loss(labels, embeddings) + regularisation / replicas
            scaled = optimizer.scale_loss(loss)
        variables = model.trainable_variables
        optimizer.apply(tape.gradient(scaled, variables), variables)
        return context.all_reduce("SUM", loss)

    @tf.function
    def step(batch):
        x, labels = batch
        return strategy.experimental_local_results(strategy.run(replica_step, args=(x, labels)))[0]

    return step



def _total(losses):
    """The float32 sum of a layer's regularisation losses (0 for none)."""
    return tf.add_n([tf.constant(0.0)] + [tf.cast(tf.reduce_sum(loss), "float32") for loss in losses])
