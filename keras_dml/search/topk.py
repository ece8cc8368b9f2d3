"""The running top-k of each query: its best `depth` (key, gallery index) pairs so far.

Candidates are packed as one uint64 each, `(order-preserving bits of the float32 key) << 32
| gallery index`, so one `np.partition` selects by key and breaks ties by the lower
gallery index, exactly as a stable sort of the full key matrix would. A block's values
are compared with each query's current bound (its `depth`-th best key so far); only values
at or below it enter the list, so after the first block almost nothing is copied or sorted.

Example:

>>> import numpy as np
>>> from keras_dml.search.topk import RunningTopK
>>> topk = RunningTopK(num_queries=1, depth=2)
>>> topk.push(np.array([0]), np.array([[3.0, 1.0, 1.0, 0.5]], "float32"), gallery_start=0)
>>> ids, keys = topk.result(0, 1)
>>> ids.tolist(), keys.tolist()
([[3, 1]], [[0.5, 1.0]])
"""
import numpy as np

_EMPTY = np.uint64(np.iinfo(np.uint64).max)
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)
# When a block's share of values under the queries' bounds exceeds this, the bounds are
# first tightened with the block's own order statistics, and if that is not enough the
# block's rows are merged whole instead of value by value.
_DENSE_SHARE = 0.125
# A block's keys are narrowed to the queries with hits when fewer than 1 in this many have any.
FEW_QUERIES = 4


def _sortable(values):
    """float32 -> uint32 with the same order (-0.0 is folded onto +0.0 first).

    Non-negative floats get their sign bit set, negative ones all bits flipped.
    """
    bits = (values + np.float32(0.0)).view(np.int32)
    return (bits ^ ((bits >> 31) | np.int32(-(2**31)))).view(np.uint32)


def _unsortable(sortable):
    """Inverse of `_sortable`."""
    bits = sortable.astype(np.uint32).view(np.int32)
    return (bits ^ (~(bits >> 31) | np.int32(-(2**31)))).view(np.float32)


def _pack(values, gallery_ids):
    return (_sortable(values).astype(np.uint64) << _SHIFT) | gallery_ids.astype(np.uint64)


def _bound_of(packed):
    """The float32 key packed in `packed`; +inf for empty slots."""
    bound = _unsortable((packed >> _SHIFT).astype(np.uint32))
    return np.where(packed == _EMPTY, np.float32(np.inf), bound)


class RunningTopK:
    """The `depth` smallest keys offered so far for each of `num_queries` queries,
    numbered from `first_query`.

    Lists hold up to `depth + slack` packed candidates; a list is cut back to `depth`
    only when it overflows, so merging is rare. `bound[q]` is never below query `q`'s
    true `depth`-th best key, which makes `values <= bound` a safe filter.
    """

    def __init__(self, num_queries, depth, first_query=0):
        self.first_query = first_query  # queries are numbered from here
        self.depth = int(depth)
        self.width = self.depth + default_slack(self.depth)
        self.packed = np.full((num_queries, self.width), _EMPTY, np.uint64)
        self.fill = np.zeros(num_queries, np.int64)
        self.bound = np.full(num_queries, np.inf, np.float32)

    def push(self, queries, values, gallery_start, transposed=False):
        """Offer `values[i, j]` as key of query `queries[i]` (an index array), gallery item
        `gallery_start + j`.

        With `transposed=True`, `values` is a block whose *columns* are the queries
        (read as `values.T` without copying it).
        """
        axis = 0 if transposed else 1  # the gallery axis of `values`
        local = queries - self.first_query
        # Once lists have filled, most queries have no value under their bound: one
        # minimum per query finds the few that do, and only their keys are read on.
        near = np.flatnonzero(values.min(axis=axis) <= self.bound[local])
        if len(near) == 0:
            return
        if len(near) * FEW_QUERIES < len(local):
            values, local, axis, transposed = (values.T if transposed else values)[near], local[near], 1, False
        bound = self.bound[local]
        hits = np.flatnonzero(values <= np.expand_dims(bound, axis))
        if len(hits) > _DENSE_SHARE * values.size and values.shape[axis] >= self.depth:
            # Many values pass (a query's first block): each query's `depth`-th smallest
            # value in this block alone is a tighter bound; filter again with it.
            kth = np.partition(values, self.depth - 1, axis=axis).take(self.depth - 1, axis=axis)
            bound = self.bound[local] = np.minimum(bound, kth)
            hits = np.flatnonzero(values <= np.expand_dims(bound, axis))
        if len(hits) > _DENSE_SHARE * values.size:  # still many (deep lists): merge whole rows
            ids = np.arange(gallery_start, gallery_start + values.shape[axis], dtype=np.uint64)
            packed = _pack(values, np.expand_dims(ids, 1 - axis))
            self._merge(local, packed.T if transposed else packed)
            return
        major, minor = np.divmod(hits, values.shape[1])
        if transposed:  # group the hits by query (column), keeping gallery order
            order = np.argsort(minor.astype(np.uint16) if len(local) <= 2**16 else minor, kind="stable")
            hits, q, g = hits[order], minor[order], major[order]
        else:
            q, g = major, minor
        candidates = values.reshape(-1)[hits]
        self._append(local[q], _pack(candidates, g.astype(np.uint64) + np.uint64(gallery_start)))

    def push_pairs(self, queries, gallery_ids, keys):
        """Offer `keys[c]` as key of query `queries[c]` (ascending), gallery item `gallery_ids[c]`."""
        queries = queries - self.first_query
        keep = keys <= self.bound[queries]
        self._append(queries[keep], _pack(keys[keep], gallery_ids[keep]))

    def _append(self, q, packed):
        """Add `packed[c]` to the list of query `q[c]` (`q` sorted, ascending)."""
        if len(q) == 0:
            return
        first = np.flatnonzero(np.diff(q, prepend=-1))
        rows = q[first]
        counts = np.diff(first, append=len(q))
        rank = np.arange(len(q)) - np.repeat(first, counts)
        fill = self.fill[rows]
        overflow = fill + counts > self.width
        fits = ~np.repeat(overflow, counts)
        target = q[fits]
        self.packed[target, self.fill[target] + rank[fits]] = packed[fits]
        self.fill[rows[~overflow]] += counts[~overflow]
        if overflow.any():
            over = rows[overflow]
            extra = np.full((len(over), counts[overflow].max()), _EMPTY, np.uint64)
            which = np.repeat(np.arange(len(over)), counts[overflow])
            extra[which, rank[~fits]] = packed[~fits]
            self._merge(over, extra)

    def _merge(self, queries, packed):
        """Cut `queries`' lists (an index array) plus the candidates
        `packed` (one row per query) back to their `depth` best."""
        both = np.concatenate([self.packed[queries], packed], axis=1)
        both.partition(self.depth - 1, axis=1)
        self.packed[queries, :self.depth] = both[:, :self.depth]
        self.packed[queries, self.depth:] = _EMPTY
        self.fill[queries] = self.depth
        self.bound[queries] = _bound_of(both[:, self.depth - 1])

    def result(self, start, stop):
        """`(gallery ids, keys)` of queries `start:stop`, closest first, ties by lower id."""
        best = np.sort(self.packed[start - self.first_query:stop - self.first_query], axis=1)[:, :self.depth]
        if np.any(best == _EMPTY):
            raise ValueError("fewer gallery items than the requested depth were offered.")
        ids = (best & _LOW32).astype(np.int64)
        return ids, _unsortable((best >> _SHIFT).astype(np.uint32))


def default_slack(depth):
    return int(min(max(depth, 64), 256))
