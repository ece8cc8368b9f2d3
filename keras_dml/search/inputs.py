"""Checks of what a search is given: distance names, embeddings, label or id columns, k.

Each check returns the value in the form the search uses, or raises a `ValueError` that
names the argument. Embeddings are searched in float32 or, when given as float64 (or as
integers wider than 16 bits), in float64, so no value is rounded on the way in; the
column checks decide a dtype once and refuse a later batch that would change its kind
or lose precision:

>>> import numpy as np
>>> from keras_dml.search import inputs
>>> inputs.check_embeddings(np.ones((2, 3), "float16"), "queries").dtype
dtype('float32')
>>> inputs.check_embeddings(np.ones((2, 3)), "queries").dtype
dtype('float64')
>>> inputs.fit_column(np.array(["x"]), np.dtype("int64"), "labels")
Traceback (most recent call last):
...
ValueError: labels are strings but this index holds integers (decided by its first add()); ids and labels keep one kind.
>>> inputs.check_k(True, 5)
Traceback (most recent call last):
...
ValueError: k must be a positive integer; got k=True.
"""
import numpy as np

from keras_dml import checks, distances

SUPPORTED_DISTANCES = ("euclidean", "squared_euclidean", "cosine", "dot")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_distance(distance):
    """`distance` validated against `keras_dml.distances` and the search's support."""
    if not isinstance(distance, str):
        raise ValueError(f"distance must be a name, one of {list(SUPPORTED_DISTANCES)}; got distance={distance!r}.")
    distances.get(distance)
    return checks.one_of(distance, "distance", SUPPORTED_DISTANCES)


def embedding_dtype(dtype):
    """The dtype embeddings of `dtype` are searched in: float64 for float64 and for integers
    float32 cannot hold exactly (wider than 16 bits), float32 for every other real dtype."""
    wide = dtype == np.float64 or (np.issubdtype(dtype, np.integer) and dtype.itemsize > 2)
    return np.dtype(np.float64 if wide else np.float32)


def check_embeddings(x, name="embeddings"):
    """`x` as a C-contiguous `(n, D)` array, `D >= 1`, of finite values within the float32
    range, in `embedding_dtype(x.dtype)` (float32 or float64: nothing is rounded)."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, dim) with dim >= 1; got shape {x.shape}.")
    # bfloat16 (ml_dtypes, from mixed-precision models) is real but not an np.number.
    if (not np.issubdtype(x.dtype, np.number) and x.dtype.name != "bfloat16") or np.iscomplexobj(x):
        raise ValueError(f"{name} must hold real numbers; got dtype {x.dtype}.")
    if np.issubdtype(x.dtype, np.floating) and x.dtype.itemsize > 8:
        raise ValueError(f"{name} has dtype {x.dtype}, wider than float64; convert it to float64 first.")
    x = np.ascontiguousarray(x, dtype=embedding_dtype(x.dtype))
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf values.")
    if np.abs(x).max(initial=0.0) > _FLOAT32_MAX:  # distances are returned as float32
        raise ValueError(f"{name} contains values beyond the float32 range.")
    return x


def fit_embeddings(x, dtype, name="embeddings"):
    """Checked embeddings `x` in `dtype`, the dtype an index decided on its first add; a
    ValueError when a float64 batch would lose precision in a float32 index."""
    if x.dtype == dtype:
        return x
    converted = x.astype(dtype)
    if not np.array_equal(converted, x):
        raise ValueError(f"{name} are {x.dtype} but this index stores {dtype} (decided by its first add()); "
                         f"these values would lose precision. Pass {name}.astype('{dtype}') to accept the "
                         f"rounding, or build the index from {x.dtype} embeddings.")
    return converted


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


_KINDS = {"b": "booleans", "i": "integers", "u": "integers", "U": "strings", "S": "byte strings"}


def column_dtype(values):
    """The dtype a column (ids, labels) is stored in from its first batch: integers as
    int64 (uint64 when unsigned), other kinds as they are."""
    if values.dtype.kind == "i":
        return np.dtype(np.int64)
    return np.dtype(np.uint64) if values.dtype.kind == "u" else values.dtype


def fit_column(values, dtype, name):
    """A checked column batch in the stored column's `dtype`: the same kind (booleans,
    integers, strings, byte strings), and integers only when each fits exactly; else a
    ValueError saying why (numpy would turn uint64 and int64 into float64, or ints and
    strings into strings)."""
    kind, stored = _KINDS[values.dtype.kind], _KINDS[dtype.kind]
    if kind != stored:
        raise ValueError(f"{name} are {kind} but this index holds {stored} (decided by its first add()); "
                         f"ids and labels keep one kind.")
    if dtype.kind in "US":
        return values
    if dtype.kind in "iu" and len(values):
        limits = np.iinfo(dtype)
        low, high = int(values.min()), int(values.max())  # Python ints: no wrap-around
        if low < limits.min or high > limits.max:
            raise ValueError(f"{name} hold values in [{low}, {high}], outside the {dtype} range of this "
                             f"index's {name} (decided by its first add()).")
    return values.astype(dtype)


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
