"""Cross-batch memory (XBM, Wang et al., CVPR 2020): a pair loss against a queue of past embeddings.

The queue is fixed-size, non-trainable layer state: `memory_size` embeddings and their
labels, a count of filled slots and the next slot to write. Each call first writes the
(gathered, normalised, stop-gradient) batch into the next slots, oldest first out, then
computes the wrapped loss with the batch as anchors and the filled memory as references
(each anchor's own slot left out). Every shape is static, so it compiles under XLA. The
queue is part of the layer's weights: checkpoints and `.keras` files hold it, so a
resumed run continues with the memory it had.
"""
import keras
from keras import ops

from keras_dml import checks, miners
from keras_dml.losses.base import TrainableMetricLoss
from keras_dml.losses.pair import PairTerms


@keras.saving.register_keras_serializable(package="keras_dml")
class CrossBatchMemory(TrainableMetricLoss):
    """`loss` computed between the batch and a memory of the last `memory_size` embeddings.

    Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR 2020: embeddings
    drift slowly once training settles, so those of recent batches stand in for many
    more negatives than one batch holds. `loss` is any keras_dml pair loss (not
    `LiftedStructureLoss`, which needs each positive's own negatives); `miner` an
    optional `keras_dml.miners.PairMiner` that mines batch against memory. The memory
    must hold at least one (global) batch. Train it through
    `keras_dml.models.MetricModel`, which builds the queue for the embedder's width:

    Example:

    >>> import keras, numpy as np, keras_dml
    >>> criterion = keras_dml.losses.CrossBatchMemory(keras_dml.losses.ContrastiveLoss(), memory_size=64)
    >>> embedder = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
    >>> model = keras_dml.models.MetricModel(embedder, criterion)
    >>> model.compile(optimizer="adam")
    >>> x = np.random.default_rng(0).normal(size=(32, 16)).astype("float32")
    >>> history = model.fit(x, np.arange(32) % 4, batch_size=8, epochs=1, verbose=0)
    >>> int(criterion.filled.numpy())
    32

    Under `tf.distribute` the loss sees the gathered global batch, and the queue
    (`aggregation="only_first_replica"`) takes it once per step.
    """

    weighs_anchors = True

    def __init__(self, loss, memory_size=1024, miner=None, embedding_dim=None, cross_replica=True, **kwargs):
        if isinstance(loss, dict):  # from get_config
            loss = keras.saving.deserialize_keras_object(loss)
        if not isinstance(loss, PairTerms) or not loss.takes_references:
            raise ValueError(f"loss must be a keras_dml pair loss that compares with references; got "
                             f"{type(loss).__name__}.")
        if isinstance(miner, dict):  # from get_config
            miner = miners.PairMiner(**miner)
        if miner is not None and not isinstance(miner, miners.PairMiner):
            raise ValueError(f"miner must be a keras_dml.miners.PairMiner; got {type(miner).__name__}.")
        super().__init__(normalize=loss.normalize, cross_replica=cross_replica, **kwargs)
        self.loss = loss
        self.miner = miner
        self.memory_size = checks.positive_int(memory_size, "memory_size")
        self.embedding_dim = None if embedding_dim is None else checks.positive_int(embedding_dim, "embedding_dim")
        if self.embedding_dim is not None:
            self.build(None, (None, self.embedding_dim))

    def build(self, labels_shape, embeddings_shape):
        width = embeddings_shape[-1]
        if self.embedding_dim is not None and width != self.embedding_dim:
            raise ValueError(f"embeddings have dimension {width} but CrossBatchMemory has "
                             f"embedding_dim={self.embedding_dim}.")
        self.embedding_dim = int(width)

        def state(name, shape, dtype):
            return self.add_weight(shape=shape, dtype=dtype, initializer="zeros", trainable=False,
                                   aggregation="only_first_replica", name=name)

        self.memory = state("memory", (self.memory_size, self.embedding_dim), "float32")
        self.memory_labels = state("memory_labels", (self.memory_size,), "int32")
        self.filled = state("filled", (), "int32")
        self.position = state("position", (), "int32")
        if isinstance(self.loss, keras.layers.Layer) and not self.loss.built:
            self.loss.build(labels_shape, embeddings_shape)
        self.built = True

    def enqueue(self, labels, embeddings):
        """Writes the batch into the next slots; the `References` the loss compares with."""
        n = embeddings.shape[0]
        if n is not None and n > self.memory_size:
            raise ValueError(f"memory_size={self.memory_size} is smaller than the batch ({n}): the memory "
                             "must hold at least one (global) batch.")
        size = ops.shape(embeddings)[0]
        slots = (self.position + ops.arange(size, dtype="int32")) % self.memory_size
        memory = ops.scatter_update(self.memory, slots[:, None], ops.stop_gradient(embeddings))
        memory_labels = ops.scatter_update(self.memory_labels, slots[:, None], ops.cast(labels, "int32"))
        filled = ops.minimum(self.filled + size, self.memory_size)
        self.memory.assign(memory)
        self.memory_labels.assign(memory_labels)
        self.filled.assign(filled)
        self.position.assign((self.position + size) % self.memory_size)
        valid = ops.arange(self.memory_size, dtype="int32") < filled
        return miners.References(memory_labels, memory, valid, slots)

    def terms(self, labels, embeddings):
        references = self.enqueue(labels, embeddings)
        labels = ops.cast(labels, "int32")
        selection = None
        if self.miner is not None:
            selection = self.miner.select(miners.pairs(labels, embeddings, self.miner.distance, references))
        return self.loss.terms(labels, embeddings, selection=selection, references=references)

    def get_config(self):
        config = super().get_config()
        config.pop("normalize")
        return {**config, "loss": keras.saving.serialize_keras_object(self.loss), "memory_size": self.memory_size,
                "miner": None if self.miner is None else self.miner.get_config(), "embedding_dim": self.embedding_dim}
