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
finite inputs never overflow inside the search. The final values are recomputed in
float64 from the rows as given (`exact_keys`, `values`).

Example:

>>> import numpy as np
>>> from keras_dml.search.keys import Frame
>>> gallery = np.array([[100.0, 0.0], [101.0, 0.0]], "float32")
>>> frame = Frame("euclidean", gallery)
>>> frame.rows(gallery).tolist()  # centred on [100, 0] (the mean on a grid of 1), scaled by 1/2
[[0.0, 0.0], [0.5, 0.0]]
"""
import numpy as np

_ROWS_PER_STEP = 65536
_PAIRS_PER_STEP = 4096
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Queries may reach this many times the gallery's largest magnitude (after centring):
# keys then stay below 2^(2 * 60 + 8) for D < 2^16 rows, far under float32's 2^128.
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
        """`x` (checked float32 rows) in the frame, float32; a ValueError naming `name`
        when a row is too far from the gallery for float32 keys."""
        out = np.empty(x.shape, np.float32)
        for start in range(0, len(x), _ROWS_PER_STEP):
            chunk = x[start:start + _ROWS_PER_STEP].astype(np.float64)
            if self.distance == "cosine":
                norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
                chunk /= np.where(norms > 0, norms, 1.0)[:, None]
            elif self.distance == "dot" and not gallery:
                largest = np.abs(chunk).max(axis=1)
                chunk /= np.array([_power_of_two_at_most(v) if v > 0 else 1.0 for v in largest])[:, None]
            else:
                chunk = (chunk - self.mean) * self.scale
                if np.abs(chunk).max(initial=0.0) > _MAX_QUERY_SCALE:
                    raise ValueError(
                        f"{name} hold values about {np.abs(chunk).max():.3g} times the gallery's spread; "
                        f"their {self.distance} keys would overflow float32."
                    )
            out[start:start + len(chunk)] = chunk
        return out

    def left(self, rows, own_term=False):
        """`[x, v, 1]`: query rows (in the frame) augmented, float32; `v` is the query's
        own term `||x||^2 / 2` (euclidean, `own_term=True`) or 0."""
        out = np.empty((len(rows), rows.shape[1] + 2), np.float32)
        out[:, :-2], out[:, -1] = rows, 1.0
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

    def error_bound(self, query_rows, gallery_rows):
        """A bound on `|float32 key - exact key|` of each query's pairs, where the exact
        key is computed in float64 from the rows as given (not rounded into the frame).

        The float32 multiply of `n = D + 2` products errs by at most `gamma_n S`,
        `S = |x| |y| + |v| + |w|` (Higham, Th. 3.5); rounding the rows into the frame and
        `v`, `w` adds a few units of `2^-24` times the same `S`. Twice `(n + 8) 2^-24 S`
        covers both.
        """
        largest_norm = np.sqrt(np.einsum("ij,ij->i", gallery_rows, gallery_rows, dtype=np.float64).max())
        norms = np.sqrt(np.einsum("ij,ij->i", query_rows, query_rows, dtype=np.float64))
        extra = 0.5 * (largest_norm ** 2 + norms ** 2) if self.euclidean else 0.0
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
