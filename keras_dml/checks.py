"""Argument checks shared by the whole library, with one convention: `check(value, name, ...)`.

Each check returns the value in its canonical form, or raises an `ArgumentError` (a
`ValueError`) that carries the argument's name, so that the caller's error says which
argument is wrong, and the command line can say which flag:

>>> from keras_dml import checks
>>> checks.positive_int(8, "samples_per_class")
8
>>> checks.one_of("semihard", "negative", ("all", "hard", "semihard"))
'semihard'
>>> try:
...     checks.pixel_scale(float("inf"))
... except checks.ArgumentError as error:
...     print(error.name)
pixel_scale

Array checks that belong to one room stay there (loss inputs in `losses.base`, search
inputs in `search`), built on these.
"""
import math
import numbers

import numpy as np

# What one uint8 unit may be in an embedder's input: 1/255 for [0, 1] inputs, 1 for [0, 255].
PIXEL_SCALE_RANGE = (1e-6, 1e3)


class ArgumentError(ValueError):
    """A bad argument, typed where it is found: `name` is the argument, `str(error)` what is wrong.

    `remedies` (`{argument: value}`) are settings that would fix it; the message ends
    with them in Python's spelling (`pass overwrite=True.`), and `describe(spell)` words
    them in another's, e.g. the command line's flags:

    >>> error = ArgumentError("directory", "out/ holds a previous export", {"overwrite": True})
    >>> str(error)
    'out/ holds a previous export; pass overwrite=True.'
    >>> error.describe(lambda name, value: "--" + name)
    'out/ holds a previous export; pass --overwrite.'
    """

    def __init__(self, name, message, remedies=None):
        self.name, self.message, self.remedies = name, message, dict(remedies or {})
        super().__init__(self.describe(python_spelling))

    def describe(self, spell):
        """The message, its remedies spelled by `spell(argument, value)`."""
        if not self.remedies:
            return self.message
        return f"{self.message}; pass {' or '.join(spell(k, v) for k, v in self.remedies.items())}."


def python_spelling(name, value):
    """`name=value` as a Python call writes it."""
    return f"{name}={value!r}"


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
        raise ArgumentError(name, f"{name} must be a positive integer; got {name}={value!r}.")
    return int(value)


def one_of(value, name, choices):
    """`value`, or a `ValueError` naming `name` unless it is one of `choices`."""
    if not isinstance(value, str | int | float | type(None)) or value not in choices:
        raise ArgumentError(name, f"Unknown {name}={value!r}; expected one of {list(choices)}.")
    return value


def number(value, name):
    """`value` as a float; a `ValueError` naming `name` unless it is a finite number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ArgumentError(name, f"{name} must be a finite number; got {name}={value!r}.")
    return float(value)


def _real(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentError(name, f"{name} must be a number; got {name}={value!r}.")
    return float(value)


def positive(value, name, finite=False):
    """`value` as a float; a `ValueError` naming `name` unless it is a number > 0 (and finite, with `finite`)."""
    if not _real(value, name) > 0 or (finite and not math.isfinite(value)):
        raise ArgumentError(name, f"{name} must be positive{' and finite' if finite else ''}; got {name}={value!r}.")
    return float(value)


def non_negative(value, name):
    """`value` as a float; a `ValueError` naming `name` unless it is a number >= 0."""
    if not _real(value, name) >= 0:
        raise ArgumentError(name, f"{name} must be >= 0; got {name}={value!r}.")
    return float(value)


def half_open(value, name, low, high):
    """`value` as a float; a `ValueError` naming `name` unless `low <= value < high`."""
    if not low <= _real(value, name) < high:
        raise ValueError(f"{name} must be in [{low:g}, {high:g}); got {name}={value!r}.")
    return float(value)


def fraction(value, name):
    """`value` as a float; a `ValueError` naming `name` unless `0 < value <= 1`."""
    if not 0 < _real(value, name) <= 1:
        raise ArgumentError(name, f"{name} must be in (0, 1]; got {name}={value!r}.")
    return float(value)


def pixel_scale(value, name="pixel_scale"):
    """`value` as a float: what one uint8 unit is in an embedder's input, within `PIXEL_SCALE_RANGE`.

    1/255 for embedders that take `[0, 1]` images, 1 for `[0, 255]`; a `ValueError`
    naming `name` for anything non-finite, non-positive or outside the range.
    """
    low, high = PIXEL_SCALE_RANGE
    if not low <= _real(value, name) <= high:
        raise ArgumentError(name, f"{name} must be a number in [{low:g}, {high:g}] (1/255 for [0, 1] inputs, "
                                  f"1 for [0, 255]); got {name}={value!r}.")
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
