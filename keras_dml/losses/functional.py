"""The functional form of each stateless loss, as Keras pairs `mean_squared_error` with `MeanSquaredError`.

`triplet_loss(labels, embeddings, margin=0.1)` is `TripletLoss(margin=0.1)(labels,
embeddings)`: the class holds the configuration, its `terms` the formula, and the
function is one call of both (so the two can never disagree).

>>> import numpy as np, keras_dml
>>> labels = np.array([0, 0, 1, 1])
>>> x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
>>> value = keras_dml.losses.triplet_loss(labels, x, margin=0.1)
>>> bool(np.isclose(value, keras_dml.losses.TripletLoss(margin=0.1)(labels, x)))
True
"""
import inspect


def functional_form(cls, name):
    """`name(labels, embeddings, sample_weight=None, selection=None, **config)` for the loss class `cls`."""

    def loss(labels, embeddings, sample_weight=None, selection=None, **config):
        extra = {} if selection is None else {"selection": selection}
        return cls(**config)(labels, embeddings, sample_weight=sample_weight, **extra)

    loss.__name__ = loss.__qualname__ = name
    loss.__doc__ = (f"`{cls.__name__}(**config)(labels, embeddings, sample_weight, selection)` in one call; "
                    f"`config` takes {cls.__name__}'s arguments.\n\n" + inspect.getdoc(cls))
    return loss
