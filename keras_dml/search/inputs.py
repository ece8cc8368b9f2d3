"""Checks of what a search is given: distance names, embeddings, label or id columns, k.

Each check returns the value in the form the search uses, or raises a `ValueError` that
names the argument:

>>> import numpy as np
>>> from keras_dml.search import inputs
>>> inputs.check_embeddings(np.ones((2, 3)), "queries").dtype
dtype('float32')
>>> inputs.check_k(True, 5)
Traceback (most recent call last):
...
ValueError: k must be a positive integer; got k=True.
"""
import numpy as np

from keras_dml import checks, distances

SUPPORTED_DISTANCES = ("euclidean", "squared_euclidean", "cosine", "dot")


def check_distance(distance):
    """`distance` validated against `keras_dml.distances` and the search's support."""
    distances.get(distance)
    return checks.one_of(distance, "distance", SUPPORTED_DISTANCES)


def check_embeddings(x, name="embeddings"):
    """`x` as a C-contiguous float32 `(n, D)` array, `D >= 1`, of finite values."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, dim) with dim >= 1; got shape {x.shape}.")
    # bfloat16 (ml_dtypes, from mixed-precision models) is real but not an np.number.
    if (not np.issubdtype(x.dtype, np.number) and x.dtype.name != "bfloat16") or np.iscomplexobj(x):
        raise ValueError(f"{name} must hold real numbers; got dtype {x.dtype}.")
    with np.errstate(over="ignore"):
        x32 = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x32)):
        kind = "NaN or inf values" if not np.all(np.isfinite(x)) else "values beyond the float32 range"
        raise ValueError(f"{name} contains {kind}.")
    return x32


def check_same_dim(queries, gallery, names=("queries", "gallery")):
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"{names[0]} have dimension {queries.shape[1]} but {names[1]} has {gallery.shape[1]}."
        )


def check_column(values, n, name, rows_name="embeddings", kinds="biuUS"):
    """`values` (labels or ids) as a 1-D array of length `n` whose dtype kind is in `kinds`
    (integers or strings by default)."""
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"{name} must have shape (n,) or (n, 1); got shape {values.shape}.")
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but {rows_name} has {n} rows.")
    if values.dtype.kind not in kinds:
        raise ValueError(f"{name} must be integers or strings; got dtype {values.dtype}.")
    return values


def check_k(k, gallery_size, name="k"):
    """`k` as an int in `[1, gallery_size]` (a bool is refused)."""
    k = checks.positive_int(k, name)
    if k > gallery_size:
        raise ValueError(f"{name} must be at most {gallery_size} (the gallery size); got {name}={k}.")
    return k


def check_ks(k, gallery_size):
    """`k` (an int or a non-empty sequence of ints) as a sorted tuple of distinct ints in
    `[1, gallery_size]`."""
    ks = (k,) if np.isscalar(k) else tuple(k)
    if not ks:
        raise ValueError(f"k must be a positive integer or a non-empty sequence of them; got k={k!r}.")
    return tuple(sorted({check_k(v, gallery_size) for v in ks}))
