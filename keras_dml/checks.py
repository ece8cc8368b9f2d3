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


def fraction(value, name):
    """`value` as a float; a `ValueError` naming `name` unless `0 < value <= 1`."""
    if not 0 < _real(value, name) <= 1:
        raise ValueError(f"{name} must be in (0, 1]; got {name}={value!r}.")
    return float(value)
