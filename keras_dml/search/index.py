"""A nearest-neighbour index over embeddings, for lookup and serving.

`Index` stores embeddings with optional labels and ids and answers `search(queries, k)`
with the ids of the `k` closest items and their distances. The default search is exact
(`keras_dml.search.ExactSearch`, the engine of the retrieval metrics: it equals a float64
brute force, ties going to the earlier added item); `backend="faiss"` uses faiss (flat or
IVF) when it is installed. `calibrate` picks a distance threshold on labelled data and
`match` then answers "same item or not". Any scorer, such as a trained PDDM unit, can
re-rank the top results (`search(..., rerank=scorer)`). `save` is atomic and deletes only
files it recorded, and `load` checks every field and array it reads
(`keras_dml.search.storage`).

Dtypes are decided by the first `add`: embeddings stay float32, or float64 when given as
float64 (searched in float64, nothing rounded); ids and labels keep their kind
(integers, strings, ...). A later batch that would change a kind or lose precision is
a ValueError saying so.

Example:

>>> import numpy as np
>>> from keras_dml.search import Index
>>> index = Index()
>>> index.add(np.eye(3, dtype="float32"), labels=np.array([7, 8, 9]))
>>> ids, dist = index.search(np.array([[0.9, 0.1, 0.0]], "float32"), k=2)
>>> ids.tolist(), index.lookup(ids).tolist()
([[0, 1]], [[7, 8]])
"""
import numpy as np

from keras_dml import checks
from keras_dml.search import inputs, storage
from keras_dml.search.exact import ExactSearch
from keras_dml.search.keys import unit_rows
from keras_dml.search.rerank import rerank as rerank_candidates
from keras_dml.search.storage import FORMAT_VERSION

__all__ = ["FORMAT_VERSION", "Index"]


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


class Index:
    """Exact (or faiss) nearest-neighbour search over stored embeddings.

    Args:
        distance: `"euclidean"` (default), `"squared_euclidean"`, `"cosine"` or `"dot"`.
            `search` returns this function's values: for `"cosine"` and `"dot"` they
            are similarities (larger is closer; a zero vector has cosine similarity 0).
        backend: `"exact"` (default), `"faiss"` (needs `faiss-cpu` or `faiss-gpu`), or
            `"auto"` (faiss when importable, else exact).
        faiss_index: `"flat"` (exact, faiss's own tie order) or `"ivf"` (approximate).
        nlist, nprobe: IVF cells and cells visited per query.
        chunk_size: rows per block of the exact search.
    """

    def __init__(self, distance="euclidean", backend="exact", faiss_index="flat", nlist=100,
                 nprobe=8, chunk_size=1024):
        self.distance = inputs.check_distance(distance)
        self.backend = checks.one_of(backend, "backend", storage.BACKENDS)
        self.faiss_index = checks.one_of(faiss_index, "faiss_index", storage.FAISS_INDEXES)
        if backend == "faiss" and _faiss() is None:
            raise ValueError("backend='faiss' needs the faiss package (pip install faiss-cpu).")
        self.nlist = checks.positive_int(nlist, "nlist")
        self.nprobe = checks.positive_int(nprobe, "nprobe")
        self.chunk_size = checks.positive_int(chunk_size, "chunk_size")
        self.threshold = None
        self.embeddings = None  # as added, in the dtype of the first add
        self.ids = np.zeros(0, np.int64)
        self.labels = None
        self._searcher = None  # the stored rows in search form, built on the first search

    @property
    def threshold(self):
        """The distance (or similarity) threshold of `match`: None or a float, checked when set."""
        return self._threshold

    @threshold.setter
    def threshold(self, value):
        self._threshold = storage.check_threshold(value)

    def __len__(self):
        return 0 if self.embeddings is None else len(self.embeddings)

    @property
    def dim(self):
        return None if self.embeddings is None else self.embeddings.shape[1]

    @property
    def uses_faiss(self):
        return self.backend == "faiss" or (self.backend == "auto" and _faiss() is not None)

    def add(self, embeddings, labels=None, ids=None):
        """Store `(n, D)` embeddings with optional labels and unique ids.

        Ids default to consecutive integers (0, 1, ... over all calls). Labels must be
        given for every call or for none. The first call decides the dtypes (module
        docstring); a batch that does not fit them is refused before anything is stored.
        """
        x = inputs.check_embeddings(embeddings)
        if len(self):
            if x.shape[1] != self.dim:
                raise ValueError(f"embeddings have dimension {x.shape[1]} but the index holds {self.dim}.")
            x = inputs.fit_embeddings(x, self.embeddings.dtype)
        if ids is None:
            if self.ids.dtype.kind not in "iu":
                raise ValueError("this index has non-integer ids; pass ids= explicitly.")
            ids = np.arange(len(self), len(self) + len(x), dtype=self.ids.dtype)
        ids = inputs.check_column(ids, len(x), "ids", kinds="iuUS")
        ids = inputs.fit_column(ids, self.ids.dtype, "ids") if len(self) else ids.astype(inputs.column_dtype(ids))
        all_ids = np.concatenate([self.ids, ids]) if len(self) else ids
        if len(np.unique(all_ids)) != len(all_ids):
            raise ValueError("ids must be unique across the index.")
        if (labels is None) != (self.labels is None) and len(self):
            raise ValueError("labels must be given for every add() or for none.")
        if labels is not None:
            labels = inputs.check_column(labels, len(x), "labels")
            if len(self):
                labels = np.concatenate([self.labels, inputs.fit_column(labels, self.labels.dtype, "labels")])
            else:
                labels = labels.astype(inputs.column_dtype(labels))
            self.labels = labels
        self.embeddings = np.concatenate([self.embeddings, x]) if len(self) else x
        self.ids = all_ids
        self._searcher = None

    def lookup(self, ids):
        """The labels of the items with these ids (any shape)."""
        if self.labels is None:
            raise ValueError("this index was built without labels.")
        return self.labels[self._positions(ids)]

    def _positions(self, ids):
        ids = np.asarray(ids)
        order = np.argsort(self.ids, kind="stable")
        where = np.searchsorted(self.ids, ids, sorter=order)
        positions = order[np.minimum(where, len(order) - 1)]
        if not np.all(self.ids[positions] == ids):
            raise ValueError("some ids are not in the index.")
        return positions

    def search(self, queries, k=1, rerank=None, rerank_depth=None):
        """Ids and distances of the `k` nearest stored items of each query, closest first.

        Args:
            queries: `(m, D)` embeddings.
            k: neighbours per query.
            rerank: optional scorer `rerank(a, b) -> scores` on `(m, c, D)` query and
                candidate embeddings, higher = more similar (for example a trained
                `keras_dml.layers.PDDM` unit). The nearest `rerank_depth` candidates
                (default `4 k`) are re-ordered by its score and the best `k` returned,
                with the scores in place of the distances.
            rerank_depth: candidates scored per query when re-ranking.

        Returns:
            `(ids (m, k), values (m, k))`.
        """
        queries, k = self._check_queries(queries, k)
        if rerank is None:
            positions, values = self._nearest(queries, k)
            return self.ids[positions], values
        if rerank_depth is None:
            depth = min(len(self), 4 * k)
        else:
            depth = inputs.check_k(rerank_depth, len(self), "rerank_depth")
        if depth < k:
            raise ValueError(f"rerank_depth must be at least k={k}; got rerank_depth={depth}.")
        positions, _ = self._nearest(queries, depth)
        ids, scores = [], []
        for start in range(0, len(queries), self.chunk_size):  # bounded (rows, depth, D) pairs
            rows = slice(start, start + self.chunk_size)
            candidates = self.embeddings[positions[rows]]
            if self.distance == "cosine":  # the scorer sees the rows the search compares
                candidates = unit_rows(candidates.reshape(-1, self.dim)).reshape(candidates.shape)
            chunk_ids, chunk_scores = rerank_candidates(rerank, queries[rows], candidates, self.ids[positions[rows]])
            ids.append(chunk_ids[:, :k])
            scores.append(chunk_scores[:, :k])
        return np.concatenate(ids), np.concatenate(scores)

    def _check_queries(self, queries, k):
        if not len(self):
            raise ValueError("the index is empty; add() embeddings first.")
        queries = inputs.check_embeddings(queries, "queries")
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {queries.shape[1]} but the index holds {self.dim}.")
        return queries, inputs.check_k(k, len(self))

    def _nearest(self, queries, k):
        """`(positions, values)` of the `k` nearest stored rows of prepared queries."""
        if self.uses_faiss:
            return self._faiss_search(queries, k)
        if self._searcher is None:
            self._searcher = ExactSearch(self.embeddings, self.distance, self.chunk_size)
        return self._searcher.search(queries, k)

    def _faiss_search(self, queries, k):
        faiss = _faiss()
        if self._searcher is None:  # built on the first search after an add
            inner = self.distance in ("cosine", "dot")
            metric = faiss.METRIC_INNER_PRODUCT if inner else faiss.METRIC_L2
            layout = "Flat" if self.faiss_index == "flat" else f"IVF{min(self.nlist, len(self))},Flat"
            index = faiss.index_factory(self.dim, layout, metric)
            rows = unit_rows(self.embeddings) if self.distance == "cosine" else self.embeddings
            rows = np.ascontiguousarray(rows, np.float32)  # faiss searches float32
            if self.faiss_index == "ivf":
                index.train(rows)
                index.nprobe = self.nprobe
            index.add(rows)
            self._searcher = index
        if self.distance == "cosine":
            queries = unit_rows(queries)
        values, positions = self._searcher.search(np.ascontiguousarray(queries, np.float32), k)
        if np.any(positions < 0):
            raise ValueError("faiss found fewer than k neighbours; raise nprobe or use faiss_index='flat'.")
        if self.distance == "euclidean":
            values = np.sqrt(np.maximum(values, 0.0))
        return positions.astype(np.int64), values.astype(np.float32)

    def calibrate(self, embeddings, labels, target="f1"):
        """Choose the distance threshold below which `match` calls a query the same item.

        Each labelled query is matched to its nearest stored item; the match is right
        when the labels agree. Over all thresholds `t` (accept when the distance is at
        most `t`, or the similarity at least `t`) this picks the one with the best F1
        (`target="f1"`) or the loosest one whose precision reaches `target` (a float).
        Use queries that are not themselves in the index.

        Returns the threshold (also stored as `self.threshold`; precision, recall and
        F1 there are in `self.calibration`).
        """
        if self.labels is None:
            raise ValueError("calibrate needs an index built with labels.")
        if target != "f1" and not (isinstance(target, float) and 0.0 < target <= 1.0):
            raise ValueError(f"target must be 'f1' or a precision in (0, 1]; got {target!r}.")
        queries, _ = self._check_queries(embeddings, 1)
        labels = inputs.check_column(labels, len(queries), "labels")
        positions, values = self._nearest(queries, 1)
        closeness = values[:, 0] if self.distance in ("cosine", "dot") else -values[:, 0]
        order = np.argsort(-closeness, kind="stable")
        right = (self.labels[positions[order, 0]] == labels[order])
        if not right.any():
            raise ValueError("no query's nearest item has its label; nothing to calibrate on.")
        accepted = np.arange(1, len(right) + 1)
        true_pos = np.cumsum(right)
        precision, recall = true_pos / accepted, true_pos / right.sum()
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        closeness = closeness[order]
        cut = np.append(closeness[:-1] != closeness[1:], True)  # never split equal distances
        if target == "f1":
            best = np.flatnonzero(cut)[np.argmax(f1[cut])]
        else:
            reached = np.flatnonzero(cut & (precision >= target))
            if not len(reached):
                raise ValueError(f"no threshold reaches precision {target}.")
            best = reached[-1]
        self.threshold = float(values[order[best], 0])
        self.calibration = {"threshold": self.threshold, "precision": float(precision[best]),
                            "recall": float(recall[best]), "f1": float(f1[best])}
        return self.threshold

    def match(self, queries):
        """`(ids, is_match)`: each query's nearest item and whether it is within the threshold."""
        if self.threshold is None:
            raise ValueError("match needs a threshold: call calibrate() first or set index.threshold.")
        ids, values = self.search(queries, k=1)
        similar = self.distance in ("cosine", "dot")
        is_match = values[:, 0] >= self.threshold if similar else values[:, 0] <= self.threshold
        return ids[:, 0], is_match

    def save(self, directory):
        """Write the index to `directory` (created if needed), atomically.

        The arrays go to a new `arrays-<random>.npz`, then the settings to `index.json`,
        which names that file (`keras_dml.search.storage`). A crash at any moment leaves
        the previous index or the new one loadable. Only files keras_dml recorded are
        removed: the arrays file the replaced `index.json` named, and what killed saves
        left behind. No other file is touched; a directory whose `index.json` is not a
        saved index is refused.
        """
        if not len(self):
            raise ValueError("the index is empty; nothing to save.")
        arrays = {"embeddings": self.embeddings, "ids": self.ids}
        if self.labels is not None:
            arrays["labels"] = self.labels
        config = {"distance": self.distance, "backend": self.backend, "faiss_index": self.faiss_index,
                  "nlist": self.nlist, "nprobe": self.nprobe, "chunk_size": self.chunk_size,
                  "threshold": self.threshold, "size": len(self), "dim": self.dim}
        storage.write(directory, config, arrays)

    @classmethod
    def load(cls, directory):
        """An index saved by `save`. Every field and array is checked: a missing or
        unreadable file, another format version, or a value `save` could not have written
        is a ValueError naming the file and field.

        A faiss index is rebuilt from the stored embeddings; where faiss is not installed
        the loaded index searches exactly instead.
        """
        config, arrays = storage.read(directory)
        backend = config["backend"] if config["backend"] != "faiss" or _faiss() else "exact"
        index = cls(config["distance"], backend, config["faiss_index"], config["nlist"],
                    config["nprobe"], config["chunk_size"])
        index.embeddings, index.ids, index.labels = arrays["embeddings"], arrays["ids"], arrays.get("labels")
        index.threshold = config["threshold"]
        return index
