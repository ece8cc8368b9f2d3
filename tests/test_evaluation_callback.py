"""RetrievalEvaluation: metrics in the epoch logs, in history.history, driving EarlyStopping."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dml.evaluation import RetrievalEvaluation, retrieval_metrics
from keras_dml.losses import TripletLoss


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(6), n // 6).astype("int32")
    x = (np.eye(6, 10)[y] + 0.8 * rng.normal(size=(n, 10))).astype("float32")
    return x, y


def embedder(learning_rate=0.05):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(4)])
    model.compile(keras.optimizers.SGD(learning_rate), loss=TripletLoss())
    return model


def test_metrics_reach_history_and_match_retrieval_metrics(capsys):
    x, y = data()
    model = embedder()
    evaluation = RetrievalEvaluation((x, y), k=(1, 4), batch_size=32)
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[evaluation])
    for name in ("val_recall@1", "val_recall@4", "val_r_precision", "val_map_at_r"):
        assert len(history.history[name]) == 2
    expected = retrieval_metrics(model.predict(x, verbose=0), y, k=(1, 4))
    for name in ("recall@1", "recall@4", "r_precision", "map_at_r"):
        assert history.history["val_" + name][-1] == pytest.approx(expected[name])
    assert evaluation.best == max(history.history["val_map_at_r"])
    assert "val_map_at_r:" in capsys.readouterr().out


def test_metrics_drive_early_stopping():
    x, y = data()
    model = embedder(learning_rate=0.0)  # frozen weights: the metric never improves
    callbacks = [RetrievalEvaluation((x, y), k=1, verbose=0),
                 keras.callbacks.EarlyStopping("val_map_at_r", mode="max", patience=1)]
    history = model.fit(x, y, batch_size=32, epochs=8, verbose=0, callbacks=callbacks)
    assert len(history.history["loss"]) == 2  # stopped after one epoch without improvement
    assert callbacks[1].stopped_epoch == 1


def test_dataset_input_every_and_prefix():
    x, y = data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(20)
    model = embedder()
    evaluation = RetrievalEvaluation(dataset, every=2, k=(2,), monitor="recall@2", prefix="holdout_",
                                     verbose=0)
    history = model.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[evaluation])
    assert len(history.history["holdout_recall@2"]) == 2  # epochs 2 and 4 only
    arrays = RetrievalEvaluation((x, y), k=(2,))
    arrays.set_model(model)
    assert evaluation.evaluate() == arrays.evaluate()
    assert evaluation.best_epoch in (1, 3)


def test_bad_arguments_are_clear_errors():
    x, y = data()
    with pytest.raises(ValueError, match="monitor"):
        RetrievalEvaluation((x, y), k=(1,), monitor="recall@5")
    with pytest.raises(ValueError, match="every"):
        RetrievalEvaluation((x, y), every=0)
    with pytest.raises(ValueError, match="data"):
        RetrievalEvaluation((x, y, y))
    inputs = keras.Input((10,))
    two_outputs = keras.Model(inputs, [keras.layers.Dense(2)(inputs), keras.layers.Dense(2)(inputs)])
    evaluation = RetrievalEvaluation((x, y))
    evaluation.set_model(two_outputs)
    with pytest.raises(ValueError, match="several outputs"):
        evaluation.evaluate()
