"""A nearest-neighbour index over embeddings, for lookup and serving.

`Index` stores embeddings with optional labels and ids and answers `search(queries, k)`
with the ids of the `k` closest items and their distances. The default search is exact
(chunked matrix multiply + running top-k, the same code as the retrieval metrics, so
ties go to the earlier added item); `backend="faiss"` uses faiss (flat or IVF) when it
is installed. `calibrate` picks a distance threshold on labelled data and `match` then
answers "same item or not". Any scorer, such as a trained PDDM unit, can re-rank the
top results (`search(..., rerank=scorer)`).

Example:

>>> import numpy as np
>>> from keras_dml.index import Index
>>> index = Index()
>>> index.add(np.eye(3, dtype="float32"), labels=np.array([7, 8, 9]))
>>> ids, dist = index.search(np.array([[0.9, 0.1, 0.0]], "float32"), k=2)
>>> ids.tolist(), index.lookup(ids).tolist()
([[0, 1]], [[7, 8]])
"""
import json
import os

import numpy as np

from keras_dml.evaluation import knn
from keras_dml.evaluation.rerank import rerank as rerank_candidates

FORMAT_VERSION = 1
_CONFIG_FILE = "index.json"
_ARRAYS_FILE = "arrays.npz"


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
            are similarities (larger is closer).
        backend: `"exact"` (default), `"faiss"` (needs `faiss-cpu` or `faiss-gpu`), or
            `"auto"` (faiss when importable, else exact).
        faiss_index: `"flat"` (exact, faiss's own tie order) or `"ivf"` (approximate).
        nlist, nprobe: IVF cells and cells visited per query.
        chunk_size: rows per block of the exact search.
    """

    def __init__(self, distance="euclidean", backend="exact", faiss_index="flat", nlist=100,
                 nprobe=8, chunk_size=1024):
        self.distance = knn.check_distance(distance)
        if backend not in ("exact", "faiss", "auto"):
            raise ValueError(f"backend must be 'exact', 'faiss' or 'auto'; got {backend!r}.")
        if faiss_index not in ("flat", "ivf"):
            raise ValueError(f"faiss_index must be 'flat' or 'ivf'; got {faiss_index!r}.")
        if backend == "faiss" and _faiss() is None:
            raise ValueError("backend='faiss' needs the faiss package (pip install faiss-cpu).")
        self.backend = backend
        self.faiss_index = faiss_index
        self.nlist = int(nlist)
        self.nprobe = int(nprobe)
        self.chunk_size = int(chunk_size)
        self.threshold = None
        self.embeddings = None  # prepared rows (L2-normalised for "cosine")
        self.ids = np.zeros(0, np.int64)
        self.labels = None
        self._faiss_index = None

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
        given for every call or for none.
        """
        x = knn.prepare(knn.check_embeddings(embeddings), self.distance)
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(f"embeddings have dimension {x.shape[1]} but the index holds {self.dim}.")
        if ids is None:
            if self.ids.dtype.kind not in "iu":
                raise ValueError("this index has non-integer ids; pass ids= explicitly.")
            ids = np.arange(len(self), len(self) + len(x), dtype=np.int64)
        ids = knn.check_column(ids, len(x), "ids")
        all_ids = np.concatenate([self.ids, ids]) if len(self) else ids
        if len(np.unique(all_ids)) != len(all_ids):
            raise ValueError("ids must be unique across the index.")
        if (labels is None) != (self.labels is None) and len(self):
            raise ValueError("labels must be given for every add() or for none.")
        if labels is not None:
            labels = knn.check_column(labels, len(x), "labels")
            self.labels = np.concatenate([self.labels, labels]) if len(self) else labels
        self.embeddings = np.concatenate([self.embeddings, x]) if len(self) else x
        self.ids = all_ids
        self._faiss_index = None

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
        queries = self._check_queries(queries, k)
        if rerank is None:
            positions, values = self._nearest(queries, k)
            return self.ids[positions], values
        depth = min(len(self), 4 * k) if rerank_depth is None else int(rerank_depth)
        if not k <= depth <= len(self):
            raise ValueError(f"rerank_depth must be in [k={k}, {len(self)}]; got {depth}.")
        positions, _ = self._nearest(queries, depth)
        ids, scores = [], []
        for start in range(0, len(queries), self.chunk_size):  # bounded (rows, depth, D) pairs
            rows = slice(start, start + self.chunk_size)
            chunk_ids, chunk_scores = rerank_candidates(
                rerank, queries[rows], self.embeddings[positions[rows]], self.ids[positions[rows]]
            )
            ids.append(chunk_ids[:, :k])
            scores.append(chunk_scores[:, :k])
        return np.concatenate(ids), np.concatenate(scores)

    def _check_queries(self, queries, k):
        if not len(self):
            raise ValueError("the index is empty; add() embeddings first.")
        queries = knn.prepare(knn.check_embeddings(queries, "queries"), self.distance)
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {queries.shape[1]} but the index holds {self.dim}.")
        if int(k) != k or not 1 <= k <= len(self):
            raise ValueError(f"k must be an integer in [1, {len(self)}] (the index size); got {k!r}.")
        return queries

    def _nearest(self, queries, k):
        """`(positions, values)` of the `k` nearest stored rows of prepared queries."""
        if self.uses_faiss:
            return self._faiss_search(queries, k)
        chunks = knn.neighbor_chunks(queries, self.embeddings, k, self.distance, self.chunk_size)
        positions, keys = knn.collect(chunks, len(queries), k)
        return positions, knn.keys_to_values(keys, self.distance)

    def _faiss_search(self, queries, k):
        faiss = _faiss()
        if self._faiss_index is None:
            inner = self.distance in ("cosine", "dot")
            metric = faiss.METRIC_INNER_PRODUCT if inner else faiss.METRIC_L2
            layout = "Flat" if self.faiss_index == "flat" else f"IVF{min(self.nlist, len(self))},Flat"
            index = faiss.index_factory(self.dim, layout, metric)
            if self.faiss_index == "ivf":
                index.train(self.embeddings)
                index.nprobe = self.nprobe
            index.add(self.embeddings)
            self._faiss_index = index
        values, positions = self._faiss_index.search(queries, k)
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
        queries = self._check_queries(embeddings, 1)
        labels = knn.check_column(labels, len(queries), "labels")
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
        """Write the index to `directory` (created if needed): `index.json` + `arrays.npz`."""
        if not len(self):
            raise ValueError("the index is empty; nothing to save.")
        os.makedirs(directory, exist_ok=True)
        config = {"format_version": FORMAT_VERSION, "distance": self.distance,
                  "backend": self.backend, "faiss_index": self.faiss_index, "nlist": self.nlist,
                  "nprobe": self.nprobe, "chunk_size": self.chunk_size, "threshold": self.threshold,
                  "size": len(self), "dim": self.dim}
        arrays = {"embeddings": self.embeddings, "ids": self.ids}
        if self.labels is not None:
            arrays["labels"] = self.labels
        np.savez(os.path.join(directory, _ARRAYS_FILE), **arrays)
        with open(os.path.join(directory, _CONFIG_FILE), "w") as f:
            json.dump(config, f, indent=2)

    @classmethod
    def load(cls, directory):
        """An index saved by `save`; a missing file or another format version is a ValueError.

        A faiss index is rebuilt from the stored embeddings; where faiss is not installed
        the loaded index searches exactly instead.
        """
        paths = {name: os.path.join(directory, name) for name in (_CONFIG_FILE, _ARRAYS_FILE)}
        for name, path in paths.items():
            if not os.path.isfile(path):
                raise ValueError(f"{directory!r} is not a saved Index: {name} is missing.")
        with open(paths[_CONFIG_FILE]) as f:
            config = json.load(f)
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{directory!r} holds an index of format version {config.get('format_version')!r}; "
                f"this keras_dml reads version {FORMAT_VERSION}."
            )
        backend = config["backend"] if config["backend"] != "faiss" or _faiss() else "exact"
        index = cls(config["distance"], backend, config["faiss_index"], config["nlist"],
                    config["nprobe"], config["chunk_size"])
        with np.load(paths[_ARRAYS_FILE], allow_pickle=False) as arrays:
            index.embeddings = arrays["embeddings"]
            index.ids = arrays["ids"]
            index.labels = arrays["labels"] if "labels" in arrays else None
        if index.embeddings.shape != (config["size"], config["dim"]) or len(index.ids) != config["size"]:
            raise ValueError(f"{directory!r}: {_ARRAYS_FILE} does not match {_CONFIG_FILE}.")
        index.threshold = config["threshold"]
        return index

