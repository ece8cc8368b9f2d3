"""Exact k-nearest-neighbour search in chunks: the engine under the retrieval metrics
and `keras_dml.index.Index`.

Every distance is turned into a *key* that is smaller for closer pairs and comes out of
one float32 matrix multiply of augmented rows, `[x, v_x, 1] . [-y, 1, v_y]`:

- `"euclidean"`, `"squared_euclidean"`: `key = ||x - y||^2 / 2` with `v = ||.||^2 / 2`;
- `"cosine"`: the same on L2-normalised rows, so `key = 1 - cos(x, y)`;
- `"dot"`: `key = -x . y` (`v = 0`).

Each query keeps a running list of its best `depth` candidates, packed as one uint64 per
candidate, `(order-preserving bits of the float32 key) << 32 | gallery index`, so one
`np.partition` selects by key and breaks ties by the lower gallery index, exactly as a
stable sort of the full distance matrix would. A block's values are compared with each
query's current bound (its `depth`-th best key so far); only values at or below it
enter the list, so after the first block almost nothing is copied or sorted.

When the queries are the gallery (`gallery=None`), the key matrix is symmetric: each
block `(i, j)` with `i < j` is computed once and serves the queries of block `i` (its
rows) and those of block `j` (its columns), which halves the arithmetic. Blocks are
computed in parallel by worker threads; the result does not depend on their order.
On CPUs with bfloat16 matrix units, blocks are first screened in bfloat16 and only the
pairs that can enter a list are recomputed in float32 (`KeyBlocks`,
`keras_dml.evaluation.screen`).

Example:

>>> import numpy as np
>>> from keras_dml.evaluation.knn import nearest_neighbors
>>> x = np.array([[0.0], [1.0], [3.0]], "float32")
>>> ids, dist = nearest_neighbors(x, k=2)
>>> ids.tolist(), dist.tolist()
([[1, 2], [0, 2], [1, 0]], [[1.0, 3.0], [1.0, 2.0], [2.0, 3.0]])
"""
import os
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from keras_dml import distances
from keras_dml.evaluation import screen as screen_module

SUPPORTED_DISTANCES = ("euclidean", "squared_euclidean", "cosine", "dot")
_EMPTY = np.uint64(np.iinfo(np.uint64).max)
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)
# When a block's share of values under the queries' bounds exceeds this, the bounds are
# first tightened with the block's own order statistics, and if that is not enough the
# block's rows are merged whole instead of value by value.
_DENSE_SHARE = 0.125
# The symmetric schedule keeps every query's list alive at once; above this many bytes
# of lists it falls back to query chunks that each scan the whole gallery.
_LIST_BUDGET_BYTES = 640 * 2**20
# A block's keys are narrowed to the queries with hits when fewer than 1 in this many have any.
_FEW_QUERIES = 4
# Screening pays off when few pairs pass it: lists short next to the gallery, rows wide
# enough for the bfloat16 multiply to dominate. Above this many pairs of one query
# passing in a block, a float32 multiply of its row is cheaper than one dot per pair.
_SCREEN_DEPTH_RATIO = 128
_SCREEN_MIN_DIM = 64
_PAIRS_PER_QUERY = 12
# Each query's first blocks are computed exactly: its bound is still loose, so most of
# their pairs would pass the screen anyway.
_EXACT_FIRST_BLOCKS = 1
# Screening stops paying when more than this share of its queries need float32 rows; the
# share is a running average (weight of the newest block) re-measured every few blocks.
_MAX_DENSE_SHARE = 0.15
_SHARE_WEIGHT = 0.2
_PROBE_EVERY = 32


def check_distance(distance):
    """`distance` validated against `keras_dml.distances` and this module's support."""
    distances.get(distance)
    if distance not in SUPPORTED_DISTANCES:
        raise ValueError(
            f"distance={distance!r} is not supported for search; expected one of "
            f"{list(SUPPORTED_DISTANCES)}."
        )
    return distance


def check_embeddings(x, name="embeddings"):
    """`x` as a C-contiguous float32 `(n, D)` array of finite values, or a ValueError."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, dim); got shape {x.shape}.")
    # bfloat16 (ml_dtypes, from mixed-precision models) is real but not an np.number.
    if (not np.issubdtype(x.dtype, np.number) and x.dtype.name != "bfloat16") or np.iscomplexobj(x):
        raise ValueError(f"{name} must hold real numbers; got dtype {x.dtype}.")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf values.")
    return x


def check_column(values, n, name, rows_name="embeddings"):
    """`values` (labels or ids) as a 1-D integer or string array of length `n`."""
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"{name} must have shape (n,) or (n, 1); got shape {values.shape}.")
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but {rows_name} has {n} rows.")
    if values.dtype.kind not in "biuUS":
        raise ValueError(f"{name} must be integers or strings; got dtype {values.dtype}.")
    return values


def prepare(x, distance):
    """Rows as searched: L2-normalised for `"cosine"`, unchanged otherwise."""
    if distance != "cosine":
        return x
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    return x / np.maximum(norms, np.float32(1e-12))[:, None]


def augment(x, distance, side):
    """`[x, v, 1]` (side `"left"`) or `[-x, 1, v]` (side `"right"`), float32."""
    out = np.empty((len(x), x.shape[1] + 2), np.float32)
    half_sq_norm = 0.0 if distance == "dot" else 0.5 * np.einsum("ij,ij->i", x, x)
    if side == "left":
        out[:, :-2] = x
        out[:, -2], out[:, -1] = half_sq_norm, 1.0
    else:
        np.negative(x, out=out[:, :-2])
        out[:, -2], out[:, -1] = 1.0, half_sq_norm
    return out


def keys_to_values(keys, distance):
    """The named pairwise function's values (see `keras_dml.distances`) from keys."""
    keys = np.asarray(keys, np.float32)
    if distance == "euclidean":
        return np.sqrt(np.maximum(2.0 * keys, 0.0))
    if distance == "squared_euclidean":
        return np.maximum(2.0 * keys, 0.0)
    if distance == "cosine":
        return 1.0 - keys
    return -keys


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
        self.width = self.depth + _default_slack(self.depth)
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
        if len(near) * _FEW_QUERIES < len(local):
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


def _default_slack(depth):
    return int(min(max(depth, 64), 256))


def _available_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _spans(n, size):
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def neighbor_chunks(queries, gallery=None, depth=1, distance="euclidean", chunk_size=1024,
                    threads=None, screen="auto"):
    """Yield `(start, stop, ids, keys)` for query chunks, in the order they finish.

    `ids[i]` are the `depth` nearest gallery rows of query `start + i`, closest first
    (ties by lower index); `keys` are their keys (see the module docstring). With
    `gallery=None` the gallery is `queries` and each query leaves itself out. Inputs are
    float32 arrays already checked and prepared (`check_embeddings`, `prepare`).

    Blocks are computed by `threads` worker threads (default: one per CPU core, plus one
    when screening), each with single-threaded BLAS while the generator runs, so no core
    waits on another's share of a matrix multiply and the selection work runs in
    parallel too.

    `screen`: `"auto"` (default) screens blocks with a bfloat16 multiply
    (`keras_dml.evaluation.screen`) where the CPU has bfloat16 units and the lists are
    short next to the gallery; `True` screens wherever it is safe; `False` never does.
    Screening changes no result beyond float32 rounding (see `KeyBlocks`).
    """
    symmetric = gallery is None
    gallery_size = len(queries) - 1 if symmetric else len(gallery)
    if not 1 <= depth <= gallery_size:
        raise ValueError(f"depth must be in [1, {gallery_size}] (the gallery size); got {depth}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size}.")
    if gallery_size >= 2**32:
        raise ValueError(f"the gallery holds {gallery_size} items; packed keys allow fewer than 2**32.")
    if screen not in ("auto", True, False):
        raise ValueError(f"screen must be 'auto', True or False; got {screen!r}.")
    if screen == "auto":
        screen = depth * _SCREEN_DEPTH_RATIO <= gallery_size and queries.shape[1] >= _SCREEN_MIN_DIM
    blocks = KeyBlocks(queries, gallery, distance, screen)
    # A thread waiting on TensorFlow's bfloat16 multiply leaves its core to TensorFlow's
    # own threads, so screening keeps one more worker busy.
    threads = max(1, int(threads or _available_cores() + (blocks.screen is not None)))
    width = depth + _default_slack(depth)
    pool = ThreadPoolExecutor(threads)
    try:
        with threadpool_limits(1, user_api="blas"):
            if symmetric and len(queries) * width * 8 <= _LIST_BUDGET_BYTES:
                yield from _symmetric_chunks(pool, blocks, depth, chunk_size)
            else:
                query_chunk = max(1, min(chunk_size, _LIST_BUDGET_BYTES // (width * 8 * (threads + 1))))
                yield from _query_chunks(pool, threads, blocks, depth, chunk_size, query_chunk)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class KeyBlocks:
    """Key blocks between query rows and gallery rows, and what each offers the search.

    Unscreened, every block is one float32 matrix multiply. Screened, a block is first
    computed in bfloat16 (`keras_dml.evaluation.screen`); only the pairs within the
    screen's error margin of their query's current bound can enter its list. Their
    float32 keys are recomputed pair by pair, or, for queries where many pass (their
    first blocks), by a float32 multiply of those queries' rows. A pair's float32 key
    from a multiply and from a single dot product can differ in the last bit, so with
    screening, gallery items whose keys are that close may swap places between runs.
    """

    def __init__(self, queries, gallery, distance, screen=False):
        self.symmetric = gallery is None
        self.queries, self.distance = queries, distance
        self.right = augment(queries if self.symmetric else gallery, distance, "right")
        self.size = len(self.right)
        self.dense_share, self.blocks_offered = 0.0, 0  # running share of screened queries with many passing pairs
        self.screen = None
        if screen and screen_module.supported() and screen_module.screenable(queries) and (
                self.symmetric or screen_module.screenable(gallery)):
            self.screen = screen_module.BFloat16Screen(augment(queries, distance, "left"), self.right)

    def offers(self, rows, cols, row_bound, col_bound=None, screen=True):
        """The candidates block `rows x cols` (slices) offers its row queries and, when
        `col_bound` is given (the symmetric schedule), its column queries, as two lists
        of functions that each offer some of them to a `RunningTopK`. `screen=False`
        computes it exactly even with a screen. A query never meets itself."""
        if self.screen is not None and screen and self._worth_screening():
            approx = self.screen.keys(rows, cols)
            self._exclude_self(approx, rows, cols)
            sides = [self._screen_side(approx, row_bound + self.screen.margin(rows, cols), rows, cols)]
            if col_bound is not None:
                threshold = col_bound + self.screen.margin(rows, cols, transposed=True)
                sides.append(self._screen_side(approx.T, threshold, cols, rows))
            dense_share = sum(len(dense) for dense, _ in sides) / (len(approx) + len(approx.T) * (len(sides) - 1))
            self.dense_share += _SHARE_WEIGHT * (dense_share - self.dense_share)  # racy, and only a hint
            if dense_share <= 0.5:  # else one multiply of the whole block is cheaper
                return (self._side_offers(*sides[0], cols),
                        self._side_offers(*sides[1], rows) if len(sides) > 1 else [])
        block = self._exact(rows, cols)
        col_offers = [] if col_bound is None else [lambda topk: topk.push(_ids(cols), block, rows.start, True)]
        return [lambda topk: topk.push(_ids(rows), block, cols.start)], col_offers

    def _worth_screening(self):
        """Screening pays while few queries need their float32 rows (their neighbours are
        spread over many blocks); every `_PROBE_EVERY`-th block is screened regardless,
        to notice when bounds have tightened."""
        self.blocks_offered += 1
        return self.dense_share <= _MAX_DENSE_SHARE or self.blocks_offered % _PROBE_EVERY == 0

    @staticmethod
    def _screen_side(approx, threshold, queries, gallery):
        """`(dense, (query ids, gallery ids))` of one side of a screened block, `approx`
        read query by query: the queries with more than `_PAIRS_PER_QUERY` pairs within
        their threshold, and the passing pairs of the others, grouped by query."""
        near = np.flatnonzero(approx.min(axis=1) <= threshold)
        if len(near) * _FEW_QUERIES < len(approx):
            approx, threshold = approx[near], threshold[near]
        else:
            near = np.arange(len(approx))
        passed = approx <= threshold[:, None]
        many = passed.sum(axis=1) > _PAIRS_PER_QUERY
        q, g = np.nonzero(passed[~many])
        return near[many] + queries.start, (near[~many][q] + queries.start, g + gallery.start)

    def _side_offers(self, dense, pairs, gallery):
        """Offers of one side of a screened block: a float32 multiply of the `dense`
        queries' rows against the `gallery` slice, one dot per pair for the `pairs`."""
        offers = []
        if len(dense):
            block = self._exact(dense, gallery)
            offers.append(lambda topk: topk.push(dense, block, gallery.start))
        query_ids, gallery_ids = pairs
        if len(query_ids):
            keys = self._pair_keys(query_ids, gallery_ids)
            offers.append(lambda topk: topk.push_pairs(query_ids, gallery_ids, keys))
        return offers

    def _exact(self, rows, cols):
        """Float32 keys of query rows `rows` against gallery rows `cols` (slices or
        ascending index arrays)."""
        block = augment(self.queries[rows], self.distance, "left") @ self.right[cols].T
        self._exclude_self(block, rows, cols)
        return block

    def _pair_keys(self, query_ids, gallery_ids):
        left = augment(self.queries[query_ids], self.distance, "left")
        return np.einsum("ij,ij->i", left, self.right[gallery_ids])

    def _exclude_self(self, block, rows, cols):
        """Set the keys of queries against themselves to +inf."""
        if not self.symmetric:
            return
        row_ids, col_ids = _ids(rows), _ids(cols)
        position = np.minimum(np.searchsorted(col_ids, row_ids), len(col_ids) - 1)
        found = col_ids[position] == row_ids
        block[np.flatnonzero(found), position[found]] = np.inf


def _ids(selection):
    """The row numbers a slice or an index array selects."""
    if isinstance(selection, slice):
        return np.arange(selection.start, selection.stop)
    return selection


def _query_chunks(pool, threads, blocks, depth, chunk_size, query_chunk):
    """Each task scans the whole gallery for one chunk of queries."""
    gallery_spans = _spans(blocks.size, chunk_size)

    def search(start, stop):
        topk = RunningTopK(stop - start, depth, first_query=start)
        for number, (g0, g1) in enumerate(gallery_spans):
            screen = number >= _EXACT_FIRST_BLOCKS
            for apply in blocks.offers(slice(start, stop), slice(g0, g1), topk.bound, screen=screen)[0]:
                apply(topk)
        return (start, stop, *topk.result(start, stop))

    pending = deque()
    for start, stop in _spans(len(blocks.queries), query_chunk):  # a few chunks in flight at a time
        pending.append(pool.submit(search, start, stop))
        if len(pending) > threads:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _symmetric_chunks(pool, blocks, depth, chunk_size):
    """Each task computes one block `(i, j)`, `i <= j`, and offers it to the queries of
    block `i` (rows) and, when `i < j`, of block `j` (columns), under each one's lock."""
    spans = [slice(start, stop) for start, stop in _spans(blocks.size, chunk_size)]
    topk = RunningTopK(blocks.size, depth)
    locks = [threading.Lock() for _ in spans]
    blocks_left = [len(spans)] * len(spans)  # every query block meets each block once
    count_lock = threading.Lock()
    finished = queue.SimpleQueue()

    def offer(i, offers):
        with locks[i]:
            for apply in offers:
                apply(topk)
        with count_lock:
            blocks_left[i] -= 1
            if not blocks_left[i]:
                finished.put(i)

    def compute(i, j):
        try:
            rows, cols = spans[i], spans[j]
            # Bounds are read without the locks: they only ever decrease, so a stale one is
            # merely less selective.
            col_bound = topk.bound[cols] if i != j else None
            screen = j - i >= _EXACT_FIRST_BLOCKS  # each query has met about twice as many
            row_offers, col_offers = blocks.offers(rows, cols, topk.bound[rows], col_bound, screen)
            offer(i, row_offers)
            if i != j:
                offer(j, col_offers)
        except BaseException as error:  # hand it to the consumer instead of hanging it
            finished.put(error)

    # Diagonal blocks first, so every query's first block is one of its row blocks, then
    # the blocks next to them, and so on outwards: datasets stored class by class have
    # most neighbours nearby, which tightens bounds early.
    for offset in range(len(spans)):
        for i in range(len(spans) - offset):
            pool.submit(compute, i, i + offset)
    for _ in spans:
        i = finished.get()
        if isinstance(i, BaseException):
            raise i
        yield (spans[i].start, spans[i].stop, *topk.result(spans[i].start, spans[i].stop))


def nearest_neighbors(queries, gallery=None, k=1, distance="euclidean", chunk_size=1024, threads=None,
                      screen="auto"):
    """Exact `k` nearest gallery rows of every query: `(ids (n, k), values (n, k))`.

    `values` are the named function's values (`keras_dml.distances.get(distance)`),
    so larger means closer for `"cosine"` and `"dot"`. With `gallery=None` each row of
    `queries` searches the others (itself left out). Neither `chunk_size` nor `threads`
    changes the result; `screen` is passed to `neighbor_chunks`.
    """
    distance = check_distance(distance)
    queries = prepare(check_embeddings(queries, "queries"), distance)
    if gallery is not None:
        gallery = prepare(check_embeddings(gallery, "gallery"), distance)
        if gallery.shape[1] != queries.shape[1]:
            raise ValueError(
                f"queries have dimension {queries.shape[1]} but gallery has {gallery.shape[1]}."
            )
    chunks = neighbor_chunks(queries, gallery, k, distance, chunk_size, threads, screen)
    ids, keys = collect(chunks, len(queries), k)
    return ids, keys_to_values(keys, distance)


def collect(chunks, num_queries, depth):
    """`(ids, keys)` of all queries from `neighbor_chunks`' chunks, in query order."""
    ids = np.empty((num_queries, depth), np.int64)
    keys = np.empty((num_queries, depth), np.float32)
    for start, stop, chunk_ids, chunk_keys in chunks:
        ids[start:stop], keys[start:stop] = chunk_ids, chunk_keys
    return ids, keys
