"""Search keys: how rows are put in a frame where float32 is accurate, and the key of a pair.

Every search compares *keys*, smaller for closer pairs, that come out of one float32
matrix multiply of augmented rows, `key(x, y) = [x, v_x, 1] . [-y, 1, w_y] = v_x + w_y - x . y`:

- `"euclidean"`, `"squared_euclidean"`: `w = ||y||^2 / 2`, and `v = ||x||^2 / 2` when the
  queries are the gallery (the key, `||x - y||^2 / 2`, is then symmetric), else `v = 0`
  (the query's own term does not change its ranking). Rows are first *centred on the
  gallery mean* (rounded to a multiple of a power of two near the gallery's spread, so
  the subtraction is exact) and scaled by a power of two: the distances are translation-invariant,
  and centring removes the float32 cancellation of `|x|^2 + |y|^2 - 2 x.y` on data far
  from the origin (without it, `0.01 * x + 100` loses most of its neighbours);
- `"cosine"`: rows L2-normalised (in float64; a zero row stays zero), `v = w = 0`, so
  `key = -cos(x, y)` and a zero query has similarity 0 with everything, as in
  `keras_dml.distances.cosine_similarity`;
- `"dot"`: `v = w = 0`, `key = -x . y`; the gallery is scaled by one power of two, each query
  by its own (a positive factor per query does not change its ranking).

Scaling by powers of two is exact and keeps every key far from float32 overflow, so
finite inputs never overflow inside the search: a euclidean query far from a gallery of
tiny spread gets a factor `c` on its `1` column (`[c x, 0, c]`), which multiplies all its
keys by `c`. The final values are recomputed in float64 from the rows as given
(`exact_keys`, `values`); where float64 cannot tell keys apart (`float64_tolerance`),
`exact_order` orders them in integer arithmetic.

Example:

>>> import numpy as np
>>> from keras_dml.search.keys import Frame
>>> gallery = np.array([[100.0, 0.0], [101.0, 0.0]], "float32")
>>> frame = Frame("euclidean", gallery)
>>> frame.rows(gallery).tolist()  # centred on [100, 0] (the mean on a grid of 1), scaled by 1/2
[[0.0, 0.0], [0.5, 0.0]]
"""
from fractions import Fraction

import numpy as np

_ROWS_PER_STEP = 65536
_PAIRS_PER_STEP = 4096
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Queries may reach this many times the gallery's largest magnitude (after centring):
# keys then stay below 2^(2 * 60 + 8) for D < 2^16 rows, far under float32's 2^128.
# Farther queries are scaled down to it (`Frame.queries`).
_MAX_QUERY_SCALE = 2.0 ** 60


def _power_of_two_at_most(value):
    """The largest power of two <= `value` (`value` > 0), as a float64."""
    return float(2.0 ** np.floor(np.log2(value)))


class Frame:
    """The transformation a search applies to every row, fixed by the gallery.

    Args:
        distance: one of `keras_dml.search.inputs.SUPPORTED_DISTANCES` (checked).
        gallery: `(n, D)` float32 rows (checked).
    """

    def __init__(self, distance, gallery):
        self.distance = distance
        self.euclidean = distance in ("euclidean", "squared_euclidean")
        mean = np.zeros(gallery.shape[1])
        if self.euclidean:
            mean = np.add.reduce(gallery, axis=0, dtype=np.float64) / len(gallery)
        largest = 0.0
        for start in range(0, len(gallery), _ROWS_PER_STEP):
            chunk = gallery[start:start + _ROWS_PER_STEP].astype(np.float64) - mean
            largest = max(largest, float(np.abs(chunk).max(initial=0.0)))
        # The centre is the mean rounded to a multiple of `grid`, the power of two just
        # above the gallery's spread: rows minus it are exact in float32 (small integers
        # stay small integers), and lie within 1.5 grid of 0, scaled into (-1, 1).
        grid = 2.0 * _power_of_two_at_most(largest) if largest > 0 else 1.0
        self.mean = np.round(mean / grid) * grid
        self.scale = 0.5 / grid

    def rows(self, x, name="queries", gallery=False):
        """`x` (checked rows) in the frame, float32."""
        return self.queries(x, name, gallery)[0]

    def queries(self, x, name="queries", gallery=False):
        """`(rows, weights)`: `x` (checked rows) in the frame, float32, and the factor of each
        row's `w` column (`left`). A euclidean query farther from the gallery than
        `_MAX_QUERY_SCALE` times its spread is scaled down by a power of two, and so is its
        weight: its keys are all multiplied by that factor, which keeps their order and
        keeps them finite."""
        out = np.empty(x.shape, np.float32)
        weights = np.ones(len(x))
        for start in range(0, len(x), _ROWS_PER_STEP):
            chunk = x[start:start + _ROWS_PER_STEP].astype(np.float64)
            if self.distance == "cosine":
                chunk = unit_rows(chunk)
            elif self.distance == "dot" and not gallery:
                largest = np.abs(chunk).max(axis=1)
                chunk /= np.array([_power_of_two_at_most(v) if v > 0 else 1.0 for v in largest])[:, None]
            else:
                chunk = (chunk - self.mean) * self.scale
                largest = np.zeros(len(chunk)) if gallery else np.abs(chunk).max(axis=1, initial=0.0)
                far = np.flatnonzero(largest > _MAX_QUERY_SCALE)
                if len(far):  # a power of two that brings them under the bound
                    factor = np.array([0.5 / _power_of_two_at_most(v / _MAX_QUERY_SCALE) for v in largest[far]])
                    chunk[far] *= factor[:, None]
                    weights[start + far] = factor
            out[start:start + len(chunk)] = chunk
        return out, weights

    def left(self, rows, own_term=False, weights=None):
        """`[x, v, c]`: query rows (in the frame) augmented, float32; `v` is the query's
        own term `||x||^2 / 2` (euclidean, `own_term=True`) or 0, `c` its weight (`queries`) or 1."""
        out = np.empty((len(rows), rows.shape[1] + 2), np.float32)
        out[:, :-2], out[:, -1] = rows, 1.0 if weights is None else weights
        out[:, -2] = self._half_squared_norms(rows) if own_term else 0.0
        return out

    def right(self, rows):
        """`[-y, 1, w]`: gallery rows (in the frame) augmented, float32."""
        out = np.empty((len(rows), rows.shape[1] + 2), np.float32)
        np.negative(rows, out=out[:, :-2])
        out[:, -2], out[:, -1] = 1.0, self._half_squared_norms(rows)
        return out

    def _half_squared_norms(self, rows):
        return 0.5 * np.einsum("ij,ij->i", rows, rows) if self.euclidean else 0.0

    def error_bound(self, query_rows, gallery_rows, weights=1.0):
        """A bound on `|float32 key - exact key|` of each query's pairs, where the exact
        key is computed in float64 from the rows as given (not rounded into the frame).

        The float32 multiply of `n = D + 2` products errs by at most `gamma_n S`,
        `S = |x| |y| + |v| + |w|` (Higham, Th. 3.5); rounding the rows into the frame and
        `v`, `w` adds a few units of `2^-24` times the same `S`. Twice `(n + 8) 2^-24 S`
        covers both.
        """
        largest_norm = np.sqrt(np.einsum("ij,ij->i", gallery_rows, gallery_rows, dtype=np.float64).max())
        norms = np.sqrt(np.einsum("ij,ij->i", query_rows, query_rows, dtype=np.float64))
        extra = 0.5 * (weights * largest_norm ** 2 + norms ** 2) if self.euclidean else 0.0
        n = query_rows.shape[1] + 2
        return 2.0 * (n + 8) * 2.0 ** -24 * (norms * largest_norm + extra + 2.0 ** -100)


def exact_keys(distance, queries, gallery, query_ids, gallery_ids):
    """float64 keys of the pairs `(queries[query_ids[p]], gallery[gallery_ids[p]])`, rows
    as given: `||x - y||^2` for the euclidean distances, `-cos` for `"cosine"` (0 for a
    zero row), `-x . y` for `"dot"`. Ranks exactly like a float64 brute force."""
    keys = np.empty(len(query_ids))
    for start in range(0, len(keys), _PAIRS_PER_STEP):  # float64 copies stay in cache
        step = slice(start, start + _PAIRS_PER_STEP)
        x = queries[query_ids[step]].astype(np.float64)
        y = gallery[gallery_ids[step]].astype(np.float64)
        if distance in ("euclidean", "squared_euclidean"):
            y -= x
            keys[step] = np.einsum("ij,ij->i", y, y)
            continue
        dot = np.einsum("ij,ij->i", x, y)
        if distance == "cosine":
            norms = np.sqrt(np.einsum("ij,ij->i", x, x) * np.einsum("ij,ij->i", y, y))
            dot /= np.where(norms > 0, norms, 1.0)
        keys[step] = -dot
    return keys


def float64_tolerance(distance, keys, dim, query_norms=None, gallery_norms=None):
    """A bound on twice the error of `exact_keys`' float64 keys: `(D + 8) 2^-52` times the
    key's scale (its own size for the euclidean distances, 1 for cosine, `||x|| ||y||` for
    `"dot"`, from `query_norms` and `gallery_norms`; Higham Th. 3.5 plus the differences
    and the division). Keys closer than it may be tied, or ordered wrongly, in float64."""
    if distance in ("euclidean", "squared_euclidean"):
        scale = np.abs(keys)
    elif distance == "cosine":
        scale = np.ones_like(keys)
    else:
        scale = query_norms * gallery_norms
    return (dim + 8) * 2.0 ** -52 * scale


def unit_rows(x):
    """Rows of `x` divided by their L2 norms in float64 (a zero row stays zero), in x's dtype
    (float32 or float64)."""
    rows = x.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    return (rows / np.where(norms > 0, norms, 1.0)[:, None]).astype(x.dtype, copy=False)


def exact_order(distance, query, rows, ids):
    """`ids` (the gallery indices of `rows`) in the exact order of their keys against the
    one `query` row, ties by index. The keys are computed in integer arithmetic from the
    values as given (a float is an integer times a power of two), so this is the order
    of the real numbers, which float64 can get wrong: the cosines of parallel vectors,
    a query far from a gallery of tiny spread. Identical rows are computed once."""
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    (q,), gallery = _integers(query[None], unique)
    if distance in ("euclidean", "squared_euclidean"):
        exact = [sum((a - b) * (a - b) for a, b in zip(q, row)) for row in gallery]
    else:
        dots = [sum(a * b for a, b in zip(q, row)) for row in gallery]
        if distance == "dot":
            exact = [-d for d in dots]
        else:  # -cos orders as -sign(d) d^2 / ||y||^2 (the query's norm is common); zero rows: 0
            exact = [Fraction(-d * abs(d), n) if n else Fraction(0)
                     for d, n in zip(dots, (sum(b * b for b in row) for row in gallery))]
    keys = [exact[i] for i in inverse.reshape(-1)]
    return ids[sorted(range(len(ids)), key=lambda i: (keys[i], ids[i]))]


def _integers(*arrays):
    """The values of float arrays as nested lists of Python ints, all scaled by one power of
    two (exact: a float is its mantissa times a power of two)."""
    flat = np.concatenate([a.reshape(-1) for a in arrays]).astype(np.float64)
    mantissa, exponent = np.frexp(flat)
    mantissa = (mantissa * 2.0 ** 53).astype(np.int64)  # exact: 53-bit integers
    exponent = exponent.astype(np.int64) - 53
    low = int(exponent[mantissa != 0].min(initial=0))
    ints = [int(m) << int(e - low) if m else 0 for m, e in zip(mantissa.tolist(), exponent.tolist())]
    out, start = [], 0
    for a in arrays:
        rows = [ints[start + i * a.shape[1]:start + (i + 1) * a.shape[1]] for i in range(len(a))]
        out.append(rows)
        start += a.size
    return out


def values(distance, keys):
    """The named pairwise function's values (`keras_dml.distances`) from `exact_keys`, as
    float32; a ValueError when they exceed the float32 range."""
    if distance == "euclidean":
        result = np.sqrt(keys)
    elif distance == "squared_euclidean":
        result = keys
    else:
        result = -keys
    if np.any(np.abs(result) > _FLOAT32_MAX):
        raise ValueError(f"the {distance} values of these embeddings exceed the float32 range; "
                         f"scale the embeddings down.")
    return result.astype(np.float32)
