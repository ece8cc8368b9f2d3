"""Exact k-nearest-neighbour search: the one engine under the retrieval metrics
(`keras_dml.evaluation`) and the serving index (`keras_dml.search.Index`).

`ExactSearch(gallery, distance)` puts the gallery in its search frame once
(`keras_dml.search.keys`); `search(queries, k)` and `chunks(queries, k)` then answer
queries, and `queries=None` searches the gallery against itself, each row leaving itself
out. Results are *exact*: the order of the keys of the rows as given (float32 or
float64) in real arithmetic, ties going to the lower gallery index; that is a float64
brute force's order wherever float64 tells the keys apart.

How:

1. Keys of query x gallery blocks come out of float32 matrix multiplies, in blocks, into
   each query's running list of its best `k + 8` candidates (`keras_dml.search.topk`).
   When the queries are the gallery, the key matrix is symmetric: each block `(i, j)`,
   `i < j`, is computed once and serves the queries of both. Blocks run on worker
   threads; the result does not depend on their order.
2. On CPUs with bfloat16 matrix units, blocks are first screened in bfloat16 and only the
   pairs that can enter a list are recomputed in float32 (`KeyBlocks`,
   `keras_dml.search.screen`).
3. Certification against float64. With `e` the bound on a float32 key's error
   (`keys.Frame.error_bound`), a query's list is *complete* when its `(k + 8)`-th float32
   key exceeds its `k`-th by more than `2 e`: no gallery row outside it can be among the
   exact top `k`. Candidates whose consecutive float32 keys lie within `2 e` (near-ties,
   duplicates) form runs, re-sorted by keys recomputed in float64 from the rows as
   given, ties by index; runs are more than `2 e` apart, so their order is exact. The
   rare query whose list is not complete is searched again in float64 over the whole
   gallery. Candidates whose float64 keys lie within float64's own error of each other
   (duplicates, parallel vectors under cosine, a query far from a gallery of tiny
   spread) are ordered by exact integer keys (`keys.exact_order`). The values returned
   are computed in float64.

Example:

>>> import numpy as np
>>> from keras_dml.search import ExactSearch
>>> x = np.array([[0.0], [1.0], [3.0]], "float32")
>>> ids, dist = ExactSearch(x).search(None, k=2)
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

from keras_dml import checks
from keras_dml.search import inputs, keys as keys_module, screen as screen_module
from keras_dml.search.topk import FEW_QUERIES, RunningTopK, default_slack

# Candidates kept beyond k, whose float32 keys certify the top k (module docstring, 3).
EXTRA_DEPTH = 8
# The symmetric schedule keeps every query's list alive at once; above this many bytes
# of lists it falls back to query chunks that each scan the whole gallery.
_LIST_BUDGET_BYTES = 640 * 2**20
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
# Gallery rows per step of the float64 search of uncertified queries.
_FALLBACK_ROWS = 8192


class ExactSearch:
    """Exact nearest neighbours in a fixed gallery.

    Args:
        gallery: `(n, D)` embeddings (anything `numpy.asarray` takes; finite).
        distance: `"euclidean"` (default), `"squared_euclidean"`, `"cosine"` or `"dot"`.
        chunk_size: rows per block; results do not depend on it.
        threads: worker threads (default: one per CPU core, plus one when screening).
        screen: `"auto"` (default) screens blocks in bfloat16 where the CPU has bfloat16
            units, the queries are the gallery and the lists are short next to it;
            `True` wherever it is safe; `False` never. Results do not depend on it.
        name: the gallery's name in error messages.
    """

    def __init__(self, gallery, distance="euclidean", chunk_size=1024, threads=None, screen="auto",
                 name="gallery"):
        self.distance = inputs.check_distance(distance)
        self.gallery = inputs.check_embeddings(gallery, name)
        if not 1 <= len(self.gallery) < 2**32:
            raise ValueError(f"{name} must hold between 1 and 2**32 - 1 rows; got {len(self.gallery)}.")
        self.chunk_size = checks.positive_int(chunk_size, "chunk_size")
        self.threads = None if threads is None else checks.positive_int(threads, "threads")
        if screen not in ("auto", True, False):
            raise ValueError(f"screen must be 'auto', True or False; got {screen!r}.")
        self.screen, self.name = screen, name
        self.frame = keys_module.Frame(self.distance, self.gallery)
        self.rows = self.frame.rows(self.gallery, name, gallery=True)
        self.right = self.frame.right(self.rows)
        self._norms = None  # float64 norms of the gallery rows, for "dot" near-ties in float64

    def __len__(self):
        return len(self.gallery)

    def search(self, queries=None, k=1):
        """`(ids (m, k), values (m, k))`: the `k` nearest gallery rows of each query,
        closest first, and the named function's values (`keras_dml.distances.get`), so
        larger means closer for `"cosine"` and `"dot"`. `queries=None`: the gallery
        searches itself, each row leaving itself out."""
        k = inputs.check_k(k, len(self.gallery) - (queries is None))
        chunks = sorted(self.chunks(queries, k), key=lambda chunk: chunk[0])
        ids = [chunk[2] for chunk in chunks] or [np.zeros((0, k), np.int64)]
        values = [chunk[3] for chunk in chunks] or [np.zeros((0, k), np.float32)]
        return np.concatenate(ids), np.concatenate(values)

    def chunks(self, queries=None, k=1, values=True, labels=None, certify=True):
        """Yield `(start, stop, ids, values)` for chunks of queries, in the order they
        finish, with `search`'s results for queries `start:stop` (`values=False`: None
        instead of the values, which spares computing them). Memory stays bounded by
        the chunks: no queries x gallery matrix is ever held.

        `labels=(query_labels, gallery_labels)` (integer codes) certifies only what the
        retrieval metrics read: which of each query's `k` results share its label. Near-tied
        candidates that all share it, or all do not, then keep their float32 order (any
        order gives the same labels), which spares their float64 work. `certify=False`
        ranks by the float32 keys of the rows in the frame alone (ties by index), with no
        float64 work: pairs whose keys differ by less than float32 rounding may come in
        either order, and the order is invariant to scaling the data by powers of two.
        """
        symmetric = queries is None
        size = len(self.gallery) - symmetric
        k = inputs.check_k(k, size)
        if symmetric:
            given, rows, weights = self.gallery, self.rows, np.ones(len(self.gallery))
        else:
            given = inputs.check_embeddings(queries, "queries")
            inputs.check_same_dim(given, self.gallery, ("queries", self.name))
            rows, weights = self.frame.queries(given, "queries")
        if not len(given):
            return
        depth = min(size, k + EXTRA_DEPTH) if certify else k
        error = self.frame.error_bound(rows, self.rows, weights)
        screen = self.screen
        if screen == "auto":  # query x gallery: measured slower screened (docs/evaluation.md)
            screen = symmetric and depth * _SCREEN_DEPTH_RATIO <= size and rows.shape[1] >= _SCREEN_MIN_DIM
        left = self.frame.left(rows, own_term=symmetric, weights=None if symmetric else weights)
        blocks = KeyBlocks(left, self.right, symmetric, screen)
        for start, stop, ids, float32_keys in _neighbor_chunks(blocks, depth, self.chunk_size, self.threads):
            queries_here, margin = given[start:stop], 2.0 * error[start:stop]
            if not certify:
                margin = np.full(stop - start, -np.inf)  # the float32 order is final
            # Certified: nothing outside the list can enter the top k, and the float32
            # order of the top k is the exact one (no two of its keys within the margin).
            complete = np.full(stop - start, depth == size) | (
                float32_keys[:, depth - 1] - float32_keys[:, k - 1] > margin)
            flags = None if labels is None else labels[1][ids] == labels[0][start:stop, None]
            ids = self._order_near_ties(queries_here, ids, float32_keys, margin, flags)[:, :k]
            for i in np.flatnonzero(~complete):
                ids[i] = self._float64_search(queries_here[i], k, start + i if symmetric else -1)
            if values:
                exact = keys_module.exact_keys(self.distance, queries_here, self.gallery,
                                               np.repeat(np.arange(len(ids)), k), ids.reshape(-1))
                yield start, stop, ids, keys_module.values(self.distance, exact.reshape(ids.shape))
            else:
                yield start, stop, ids, None

    def _order_near_ties(self, queries, ids, float32_keys, margin, flags=None):
        """Each query's candidates `ids` (sorted by float32 key, then index) in exact
        order: runs of candidates whose consecutive float32 keys lie within `margin` of
        each other are re-sorted by float64 keys, and candidates float64 cannot tell
        apart by exact integer keys (`keys.exact_order`), ties by index. Runs are more
        than `margin` apart, so their order is already exact; only candidates in a run
        are recomputed. With `flags` (`chunks`' labels), only runs that mix both flags."""
        near = np.diff(float32_keys, axis=1) <= margin[:, None]
        if flags is not None:
            near = _mixed_runs(near, flags)
        some = np.flatnonzero(near.any(axis=1))  # only these queries' lists change
        if not len(some):
            return ids
        ids, near, queries = ids.copy(), near[some], queries[some]
        part = ids[some]
        in_run = np.zeros(part.shape, bool)
        in_run[:, 1:] |= near
        in_run[:, :-1] |= near
        run = np.cumsum(np.concatenate([np.ones((len(part), 1), bool), ~near], axis=1), axis=1)
        exact = np.zeros(part.shape)
        rows, cols = np.nonzero(in_run)
        exact[rows, cols] = keys_module.exact_keys(self.distance, queries, self.gallery, rows, part[rows, cols])
        order = np.lexsort((part, exact, run), axis=1)
        part, exact = np.take_along_axis(part, order, 1), np.take_along_axis(exact, order, 1)
        # Runs keep their places, so `near` still marks the pairs within one run.
        ties = near & (np.diff(exact, axis=1) <= self._float64_tolerance(queries, part, exact))
        for i in np.flatnonzero(ties.any(axis=1)):
            part[i] = self._exact_ties(queries[i], part[i], ties[i])
        ids[some] = part
        return ids

    def _float64_tolerance(self, queries, ids, exact):
        """`keys.float64_tolerance` of each pair of neighbouring candidates."""
        scale = np.maximum(np.abs(exact[:, 1:]), np.abs(exact[:, :-1]))
        query_norms = gallery_norms = None
        if self.distance == "dot":
            norms = self._gallery_norms()[ids]
            gallery_norms = np.maximum(norms[:, 1:], norms[:, :-1])
            query_norms = np.sqrt(np.einsum("ij,ij->i", queries, queries, dtype=np.float64))[:, None]
        return keys_module.float64_tolerance(self.distance, scale, self.gallery.shape[1], query_norms,
                                             gallery_norms)

    def _gallery_norms(self):
        if self._norms is None:
            self._norms = np.sqrt(np.einsum("ij,ij->i", self.gallery, self.gallery, dtype=np.float64))
        return self._norms

    def _exact_ties(self, query, ids, ties):
        """`ids` with each chain of `ties` (pairs float64 cannot order) in exact order."""
        ids = ids.copy()
        starts = np.flatnonzero(ties & ~np.concatenate([[False], ties[:-1]]))
        for start in starts:
            stop = start + 1
            while stop - 1 < len(ties) and ties[stop - 1]:
                stop += 1
            group = ids[start:stop]
            ids[start:stop] = keys_module.exact_order(self.distance, query, self.gallery[group], group)
        return ids

    def _float64_search(self, query, k, itself):
        """The `k` nearest gallery rows of one query by float64 keys over the whole
        gallery (and exact integer keys where float64 cannot tell them apart), ties by
        index, row `itself` left out (-1: none)."""
        exact = np.empty(len(self.gallery))
        for start in range(0, len(self.gallery), _FALLBACK_ROWS):
            rows = self.gallery[start:start + _FALLBACK_ROWS]
            exact[start:start + len(rows)] = keys_module.exact_keys(
                self.distance, query[None], rows, np.zeros(len(rows), np.int64), np.arange(len(rows)))
        if itself >= 0:
            exact[itself] = np.inf
        kth = np.partition(exact, k - 1)[k - 1]
        # Every row that may be among the exact top k: its float64 key is within the
        # tolerance of the k-th (for "dot", of the largest pair scale).
        query_norm = np.linalg.norm(query.astype(np.float64))
        reach = 2.0 * keys_module.float64_tolerance(self.distance, np.abs(kth), self.gallery.shape[1],
                                                    query_norm, self._gallery_norms().max())
        candidates = np.flatnonzero(exact <= kth + reach)
        ids = candidates[np.lexsort((candidates, exact[candidates]))]
        keys = exact[ids]
        ties = np.diff(keys) <= self._float64_tolerance(query[None], ids[None], keys[None])[0]
        return self._exact_ties(query, ids, ties)[:k] if ties.any() else ids[:k]


def _mixed_runs(near, flags):
    """`near` (pairs of neighbouring candidates in one run) kept only in runs whose
    candidates' `flags` are not all equal."""
    run = np.cumsum(np.concatenate([np.ones((len(near), 1), bool), ~near], axis=1), axis=1)
    mixed = np.zeros((len(near), near.shape[1] + 2), bool)
    rows, cols = np.nonzero(near & (flags[:, 1:] != flags[:, :-1]))
    mixed[rows, run[rows, cols]] = True
    return near & mixed[np.arange(len(near))[:, None], run[:, 1:]]


def nearest_neighbors(queries, gallery=None, k=1, distance="euclidean", chunk_size=1024, threads=None,
                      screen="auto"):
    """Exact `k` nearest gallery rows of every query: `(ids (n, k), values (n, k))`.

    `values` are the named function's values (`keras_dml.distances.get(distance)`), so
    larger means closer for `"cosine"` and `"dot"`. With `gallery=None` each row of
    `queries` searches the others (itself left out). See `ExactSearch`.
    """
    if gallery is None:
        return ExactSearch(queries, distance, chunk_size, threads, screen, name="queries").search(None, k)
    return ExactSearch(gallery, distance, chunk_size, threads, screen).search(queries, k)


def _available_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _spans(n, size):
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _neighbor_chunks(blocks, depth, chunk_size, threads):
    """Yield `(start, stop, ids, float32 keys)` of the `depth` best candidates of query
    chunks, in the order they finish (ties by lower index).

    Blocks are computed by `threads` worker threads (default: one per CPU core, plus one
    when screening), each with single-threaded BLAS while the generator runs, so no core
    waits on another's share of a matrix multiply and the selection work runs in
    parallel too.
    """
    # A thread waiting on TensorFlow's bfloat16 multiply leaves its core to TensorFlow's
    # own threads, so screening keeps one more worker busy.
    threads = threads or _available_cores() + (blocks.screen is not None)
    width = depth + default_slack(depth)
    pool = ThreadPoolExecutor(threads)
    try:
        with threadpool_limits(1, user_api="blas"):
            if blocks.symmetric and len(blocks.left) * width * 8 <= _LIST_BUDGET_BYTES:
                yield from _symmetric_chunks(pool, blocks, depth, chunk_size)
            else:
                query_chunk = max(1, min(chunk_size, _LIST_BUDGET_BYTES // (width * 8 * (threads + 1))))
                yield from _query_chunks(pool, threads, blocks, depth, chunk_size, query_chunk)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class KeyBlocks:
    """Key blocks between query rows and gallery rows, and what each offers the search.

    Unscreened, every block is one float32 matrix multiply. Screened, a block is first
    computed in bfloat16 (`keras_dml.search.screen`); only the pairs within the
    screen's error margin of their query's current bound can enter its list. Their
    float32 keys are recomputed pair by pair, or, for queries where many pass (their
    first blocks), by a float32 multiply of those queries' rows. A pair's float32 key
    from a multiply and from a single dot product can differ in the last bit, so with
    screening, gallery items whose keys are that close may swap places between runs.
    """

    def __init__(self, left, right, symmetric, screen=False):
        self.left, self.right, self.symmetric = left, right, symmetric
        self.size = len(right)
        self.dense_share, self.blocks_offered = 0.0, 0  # running share of screened queries with many passing pairs
        self.screen = None
        if screen and screen_module.supported() and screen_module.screenable(left) and (
                symmetric or screen_module.screenable(right)):
            self.screen = screen_module.BFloat16Screen(left, right)

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
        if len(near) * FEW_QUERIES < len(approx):
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
        block = self.left[rows] @ self.right[cols].T
        self._exclude_self(block, rows, cols)
        return block

    def _pair_keys(self, query_ids, gallery_ids):
        return np.einsum("ij,ij->i", self.left[query_ids], self.right[gallery_ids])

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
    for start, stop in _spans(len(blocks.left), query_chunk):  # a few chunks in flight at a time
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
