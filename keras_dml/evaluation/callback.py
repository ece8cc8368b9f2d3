"""`RetrievalEvaluation`: retrieval metrics of a validation set at the end of epochs.

The callback embeds the validation set with the model being trained, computes
`retrieval_metrics` and writes them into the epoch's `logs` as `val_recall@1`,
`val_r_precision`, `val_map_at_r`, ... . Callbacks listed after it (`EarlyStopping`,
`ModelCheckpoint`, `TensorBoard`) and `history.history` see them like any other metric.

Example:

```python
evaluation = keras_dml.evaluation.RetrievalEvaluation((x_val, y_val), k=(1, 4))
stop = keras.callbacks.EarlyStopping("val_map_at_r", mode="max", patience=3)
model.fit(train_ds, epochs=50, callbacks=[evaluation, stop])  # evaluation first
```
"""
import keras
import numpy as np

from keras_dml.evaluation.metrics import retrieval_metrics


class RetrievalEvaluation(keras.callbacks.Callback):
    """Retrieval metrics of a validation set, written into the epoch logs.

    Args:
        data: `(x, y)` arrays, or a batched `tf.data.Dataset` (or any iterable) of
            `(x, y)` batches; extra elements such as sample weights are ignored.
        every: evaluate after every `every`-th epoch (and only then: on other epochs
            the keys are absent from `logs`).
        k: the K of each Recall@K.
        monitor: the metric followed for `best` / `best_epoch` (name without prefix:
            `"map_at_r"`, `"r_precision"`, `"recall@K"`, or `"nmi"` with `nmi=True`).
        prefix: prepended to every metric name in `logs`.
        distance, nmi, chunk_size: passed to `retrieval_metrics`.
        batch_size: batch size of `model.predict` for array data.
        steps: number of batches to take from a dataset (needed when it repeats).
        verbose: 1 prints the metrics after each evaluation, 0 is silent.

    The model's outputs are the embeddings: a plain embedder's outputs, or whatever a
    `MetricModel`'s `predict` returns. A dict output must hold them as `"embeddings"`.
    """

    def __init__(self, data, every=1, k=(1, 2, 4, 8), monitor="map_at_r", prefix="val_",
                 distance="euclidean", nmi=False, chunk_size=1024, batch_size=256, steps=None,
                 verbose=1):
        super().__init__()
        if int(every) != every or every < 1:
            raise ValueError(f"every must be a positive integer; got {every!r}.")
        ks = (k,) if np.isscalar(k) else tuple(k)
        names = [f"recall@{int(v)}" for v in ks] + ["r_precision", "map_at_r"] + (["nmi"] if nmi else [])
        if monitor not in names:
            raise ValueError(f"monitor={monitor!r} is not computed; expected one of {names}.")
        if isinstance(data, (tuple, list)) and len(data) != 2:
            raise ValueError(f"data must be (x, y) arrays or a dataset of (x, y) batches; got {len(data)} items.")
        self.data = data
        self.every = int(every)
        self.k = ks
        self.monitor = monitor
        self.prefix = prefix
        self.distance = distance
        self.nmi = nmi
        self.chunk_size = chunk_size
        self.batch_size = batch_size
        self.steps = steps
        self.verbose = verbose
        self.best = None
        self.best_epoch = None
        self.last_results = None

    def embed(self):
        """`(embeddings, labels)` of the validation set under the current weights."""
        if isinstance(self.data, (tuple, list)):
            x, y = self.data
            return _embeddings(self.model.predict(x, batch_size=self.batch_size, verbose=0)), np.asarray(y)
        embeddings, labels = [], []
        for step, batch in enumerate(self.data):
            if self.steps is not None and step >= self.steps:
                break
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError("a dataset given to RetrievalEvaluation must yield (x, y) batches.")
            # tf tensors -> any backend; a copy, since np.asarray's read-only view of a tf.data
            # batch breaks torch.compile ("Expected np.nditer base, got memoryview")
            x = keras.tree.map_structure(np.array, batch[0])
            embeddings.append(_embeddings(self.model.predict_on_batch(x)))
            labels.append(np.asarray(batch[1]).reshape(-1))
        if not embeddings:
            raise ValueError("the validation dataset yielded no batches.")
        return np.concatenate(embeddings), np.concatenate(labels)

    def evaluate(self):
        """The metrics of the validation set now, as `retrieval_metrics` returns them."""
        embeddings, labels = self.embed()
        return retrieval_metrics(embeddings, labels, k=self.k, distance=self.distance,
                                 nmi=self.nmi, chunk_size=self.chunk_size)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        results = self.evaluate()
        self.last_results = results
        scores = {name: value for name, value in results.items()
                  if name not in ("num_queries", "skipped_queries")}
        if logs is not None:
            logs.update({self.prefix + name: value for name, value in scores.items()})
        if self.best is None or scores[self.monitor] > self.best:
            self.best, self.best_epoch = scores[self.monitor], epoch
        if self.verbose:
            shown = " - ".join(f"{self.prefix}{name}: {value:.4f}" for name, value in scores.items())
            print(f"Epoch {epoch + 1} retrieval ({results['num_queries']} queries): {shown}")


def _embeddings(outputs):
    if isinstance(outputs, dict):
        if "embeddings" not in outputs:
            raise ValueError(
                f"the model returns a dict without an 'embeddings' entry (keys: {sorted(outputs)})."
            )
        outputs = outputs["embeddings"]
    if isinstance(outputs, (tuple, list)):
        raise ValueError("the model returns several outputs; RetrievalEvaluation needs one embedding tensor.")
    return np.asarray(outputs)
