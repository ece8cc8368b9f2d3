"""Argument checks shared by the whole library, with one convention: `check(value, name, ...)`.

Each check returns the value in its canonical form, or raises a `ValueError` whose message
starts with the argument's name, so that the caller's error says which argument is wrong:

>>> from keras_dml import checks
>>> checks.positive_int(8, "samples_per_class")
8
>>> checks.one_of("semihard", "negative", ("all", "hard", "semihard"))
'semihard'

Array checks that belong to one room stay there (loss inputs in `losses.base`, search
inputs in `search`), built on these.
"""
import numbers

import numpy as np


def concrete_values(x):
    """`x` as a NumPy array when its values are known now (eager), else None."""
    try:
        return np.asarray(x)
    except Exception:  # a symbolic tensor (tf.function, jax tracer) has no values yet
        return None


def positive_int(value, name):
    """`value` as an int; a `ValueError` naming `name` unless it is a whole number >= 1 (not a bool)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not float(value).is_integer()
        or value < 1
    ):
        raise ValueError(f"{name} must be a positive integer; got {name}={value!r}.")
    return int(value)


def one_of(value, name, choices):
    """`value`, or a `ValueError` naming `name` unless it is one of `choices`."""
    if not isinstance(value, str | int | float | type(None)) or value not in choices:
        raise ValueError(f"Unknown {name}={value!r}; expected one of {list(choices)}.")
    return value


def _real(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number; got {name}={value!r}.")
    return float(value)


def positive(value, name):
    """`value` as a float; a `ValueError` naming `name` unless it is a number > 0."""
    if not _real(value, name) > 0:
        raise ValueError(f"{name} must be positive; got {name}={value!r}.")
    return float(value)


def non_negative(value, name):
    """`value` as a float; a `ValueError` naming `name` unless it is a number >= 0."""
    if not _real(value, name) >= 0:
        raise ValueError(f"{name} must be >= 0; got {name}={value!r}.")
    return float(value)


def half_open(value, name, low, high):
    """`value` as a float; a `ValueError` naming `name` unless `low <= value < high`."""
    if not low <= _real(value, name) < high:
        raise ValueError(f"{name} must be in [{low:g}, {high:g}); got {name}={value!r}.")
    return float(value)


def fraction(value, name):
    """`value` as a float; a `ValueError` naming `name` unless `0 < value <= 1`."""
    if not 0 < _real(value, name) <= 1:
        raise ValueError(f"{name} must be in (0, 1]; got {name}={value!r}.")
    return float(value)


def built_width(shape, embedding_dim, owner):
    """The width (last dimension of `shape`) that `owner` builds its weights for.

    A `ValueError` naming `embedding_dim` when the width is unknown, or differs from
    `embedding_dim` when that was given (an optional check of the data's shape).
    """
    width = None if shape is None or not len(shape) else shape[-1]
    if width is None:
        raise ValueError(
            f"embedding_dim: {owner} cannot take its width from an embeddings shape of {shape}; "
            "pass embedding_dim= or build it on embeddings of known width."
        )
    if embedding_dim is not None and int(width) != embedding_dim:
        raise ValueError(
            f"embeddings have dimension {width} but {owner} has embedding_dim={embedding_dim}."
        )
    return int(width)
