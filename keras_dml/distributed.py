"""Training under `tf.distribute`: every keras_dml loss over the global batch.

Under a strategy (`MirroredStrategy`, `MultiWorkerMirroredStrategy`, `TPUStrategy`),
`model.fit` runs the train step on every replica with a slice of the global batch,
then sums the replicas' gradients. A metric loss on the slice alone would mine
positives and negatives among `1 / R` of the batch. With `cross_replica=True` (the
default of every keras_dml loss) each replica instead:

1. all-gathers the labels and embeddings of every replica, in replica order, so it
   mines and computes the loss `L` on the global batch exactly as one device would;
2. treats the other replicas' embeddings as constants (nothing is sent back across
   replicas in the backward pass) and lets the gradient reach its own embeddings
   multiplied by `R`;
3. returns `L / R`, as Keras's own losses do under a strategy.

So replica `r` gets `dL/dz` for its own embeddings `z` (`R x 1/R`) and `dL/dw / R` for
the criterion's weights `w` (proxies, a PDDM unit); summed over the `R` replicas that is
the single-device gradient of `L` on the global batch, and Keras reports `L` as the
loss. With `cross_replica=False` replica `r` returns `L_r / R`, its own slice's loss:
the step then follows the mean of the replicas' losses.

All of this is TensorFlow-specific and lives here; the losses call `replica_loss`,
which changes nothing on other backends, outside a strategy's replica context or with
a single replica. TensorFlow is imported only when the TensorFlow backend is active.

Example (two GPUs, or two logical CPUs set up with
`tf.config.set_logical_device_configuration`):

>>> import keras, tensorflow as tf, keras_dml
>>> strategy = keras_dml.distributed.make_strategy("mirrored")  # doctest: +SKIP
>>> with strategy.scope():  # doctest: +SKIP
...     model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
...     model.compile(optimizer="adam", loss=keras_dml.losses.TripletLoss())
"""
import contextlib

import keras

from keras_dml.names import STRATEGIES


def make_strategy(name="default"):
    """The `tf.distribute` strategy called `name`, for command-line `--strategy` flags.

    - `"default"`: TensorFlow's default strategy (one device);
    - `"mirrored"`: `MirroredStrategy` over every local GPU (the CPU when there is none);
    - `"multiworker"`: `MultiWorkerMirroredStrategy`; the cluster comes from the
      `TF_CONFIG` environment variable of each worker (see docs/distributed.md). Create
      it before any other TensorFlow operation runs.
    """
    import os

    from keras_dml import backends

    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {name!r}.")
    if name != "default" and keras.backend.backend() != "tensorflow":
        raise ValueError(f"strategy={name!r} trains under tf.distribute, on KERAS_BACKEND=tensorflow only; the "
                         f"backend is {keras.backend.backend()}. Set KERAS_BACKEND=tensorflow, or train on one "
                         "device (strategy='default').")
    tf = backends.tensorflow(f"strategy={name!r} (tf.distribute)")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("strategy='multiworker' reads its cluster from the TF_CONFIG environment variable, "
                             "which is not set: see docs/distributed.md for the launch.")
        return tf.distribute.MultiWorkerMirroredStrategy()


def replica_context():
    """The `tf.distribute` replica context of a step that runs on several replicas, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()  # None in a cross-replica context
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def replica_share(value):
    """`value / R` in a step on `R > 1` replicas, whose gradients Keras sums; else `value`."""
    context = replica_context()
    return value if context is None else value / context.num_replicas_in_sync


def replica_loss(compute, labels, embeddings, cross_replica=True):
    """This replica's share of the loss `compute(labels, embeddings)`.

    `labels` `(n,)` (integer, in their own dtype) and float32 `embeddings` `(n, D)` are
    this replica's slice.
    Outside a multi-replica step it is `compute(labels, embeddings)` itself.
    """
    context = replica_context()
    if context is None:
        return compute(labels, embeddings)
    if cross_replica and not _gathered_by_caller:
        labels, embeddings = global_batch(context, labels, embeddings)
    return compute(labels, embeddings) / context.num_replicas_in_sync


_gathered_by_caller = False


@contextlib.contextmanager
def gathered_by_caller():
    """Within it, losses take their input as the global batch already gathered by `global_batch`.

    For a training loop that compiles the loss with XLA apart from the gather (XLA
    cannot compile a collective on CPU): `replica_loss` then returns `L / R` on the
    batch it is given. A process-wide switch, not a thread-local one, because
    `MirroredStrategy` traces each replica's step in its own thread.
    """
    global _gathered_by_caller
    previous, _gathered_by_caller = _gathered_by_caller, True
    try:
        yield
    finally:
        _gathered_by_caller = previous


def built_labels(labels):
    """`labels` as int32 when Keras builds a compiled loss under a strategy, else unchanged.

    Before the first step, Keras's TensorFlow trainer builds `compile(loss=...)` on the
    replicas' first batch reduced with MEAN (`_maybe_symbolic_build`), which turns
    integer labels into float64 placeholders. Only shapes and dtypes matter there, so
    symbolic float labels in a cross-replica context are cast back; real labels
    (eager, or in a replica's step) are left for `check_labels` to judge.
    """
    if keras.backend.backend() != "tensorflow":
        return labels
    import tensorflow as tf

    symbolic = tf.is_tensor(labels) and not tf.executing_eagerly()
    if symbolic and labels.dtype.is_floating and tf.distribute.in_cross_replica_context():
        return tf.cast(labels, "int32")
    return labels


def global_batch(context, labels, embeddings):
    """Labels and embeddings of every replica, concatenated in replica order.

    Replicas may hold different numbers of samples (an uneven last batch). Only this
    replica's rows carry a gradient, scaled by the number of replicas `R`.
    """
    import tensorflow as tf

    replicas = context.num_replicas_in_sync

    @tf.custom_gradient
    def times_replicas_gradient(x):
        return tf.identity(x), lambda upstream: upstream * replicas

    local_devices = context.strategy.extended.worker_devices  # this worker's, one per local replica
    # a collective needs placed inputs (MultiWorkerMirroredStrategy leaves a replica's ops unplaced)
    replica = int(tf.get_static_value(context.replica_id_in_sync_group))
    with tf.device(local_devices[replica % len(local_devices)]):
        labels, local = tf.identity(labels), tf.stop_gradient(embeddings)
        sizes = context.all_gather(tf.shape(labels)[:1], axis=0)
        all_labels, constant = context.all_gather([labels, local], axis=0)
    start = tf.reduce_sum(sizes[: context.replica_id_in_sync_group])
    rows = start + tf.range(tf.shape(labels)[0])
    constant.set_shape([all_labels.shape[0], embeddings.shape[1]])  # all_gather loses the static shape
    all_embeddings = tf.tensor_scatter_nd_update(constant, rows[:, None], times_replicas_gradient(embeddings))
    return all_labels, all_embeddings
