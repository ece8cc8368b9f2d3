"""A nearest-neighbour index over embeddings, for lookup and serving.

`Index` stores embeddings with optional labels and ids and answers `search(queries, k)`
with the ids of the `k` closest items and their distances. The default search is exact
(`keras_dml.search.ExactSearch`, the engine of the retrieval metrics: it equals a float64
brute force, ties going to the earlier added item); `backend="faiss"` uses faiss (flat or
IVF) when it is installed. `calibrate` picks a distance threshold on labelled data and
`match` then answers "same item or not". Any scorer, such as a trained PDDM unit, can
re-rank the top results (`search(..., rerank=scorer)`). `save` is atomic and `load`
checks every field and array it reads.

Example:

>>> import numpy as np
>>> from keras_dml.search import Index
>>> index = Index()
>>> index.add(np.eye(3, dtype="float32"), labels=np.array([7, 8, 9]))
>>> ids, dist = index.search(np.array([[0.9, 0.1, 0.0]], "float32"), k=2)
>>> ids.tolist(), index.lookup(ids).tolist()
([[0, 1]], [[7, 8]])
"""
import json
import os
import re
import tempfile
import uuid
import zipfile

import numpy as np

from keras_dml import checks
from keras_dml.search import inputs
from keras_dml.search.exact import ExactSearch
from keras_dml.search.keys import Frame
from keras_dml.search.rerank import rerank as rerank_candidates

FORMAT_VERSION = 2
_CONFIG_FILE = "index.json"
_ARRAYS_PATTERN = re.compile(r"arrays(-[0-9a-f]{32})?\.npz")  # format version 1 wrote "arrays.npz"
_BACKENDS = ("exact", "faiss", "auto")
_FAISS_INDEXES = ("flat", "ivf")
# How far a stored cosine row's norm may be from 1 (zero rows are allowed) when loaded.
_UNIT_NORM_TOLERANCE = 1e-4


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
        self.backend = checks.one_of(backend, "backend", _BACKENDS)
        self.faiss_index = checks.one_of(faiss_index, "faiss_index", _FAISS_INDEXES)
        if backend == "faiss" and _faiss() is None:
            raise ValueError("backend='faiss' needs the faiss package (pip install faiss-cpu).")
        self.nlist = checks.positive_int(nlist, "nlist")
        self.nprobe = checks.positive_int(nprobe, "nprobe")
        self.chunk_size = checks.positive_int(chunk_size, "chunk_size")
        self.threshold = None
        self.embeddings = None  # as added (L2-normalised for "cosine")
        self.ids = np.zeros(0, np.int64)
        self.labels = None
        self._searcher = None  # the stored rows in search form, built on the first search

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
        x = self._prepare(inputs.check_embeddings(embeddings))
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(f"embeddings have dimension {x.shape[1]} but the index holds {self.dim}.")
        if ids is None:
            if self.ids.dtype.kind not in "iu":
                raise ValueError("this index has non-integer ids; pass ids= explicitly.")
            ids = np.arange(len(self), len(self) + len(x), dtype=np.int64)
        ids = inputs.check_column(ids, len(x), "ids", kinds="iuUS")
        all_ids = np.concatenate([self.ids, ids]) if len(self) else ids
        if len(np.unique(all_ids)) != len(all_ids):
            raise ValueError("ids must be unique across the index.")
        if (labels is None) != (self.labels is None) and len(self):
            raise ValueError("labels must be given for every add() or for none.")
        if labels is not None:
            labels = inputs.check_column(labels, len(x), "labels")
            self.labels = np.concatenate([self.labels, labels]) if len(self) else labels
        self.embeddings = np.concatenate([self.embeddings, x]) if len(self) else x
        self.ids = all_ids
        self._searcher = None

    def _prepare(self, x):
        """Rows as stored and searched: L2-normalised (in float64) for `"cosine"`."""
        return Frame("cosine", x[:1]).rows(x) if self.distance == "cosine" and len(x) else x

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
            chunk_ids, chunk_scores = rerank_candidates(
                rerank, queries[rows], self.embeddings[positions[rows]], self.ids[positions[rows]]
            )
            ids.append(chunk_ids[:, :k])
            scores.append(chunk_scores[:, :k])
        return np.concatenate(ids), np.concatenate(scores)

    def _check_queries(self, queries, k):
        if not len(self):
            raise ValueError("the index is empty; add() embeddings first.")
        queries = self._prepare(inputs.check_embeddings(queries, "queries"))
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
            if self.faiss_index == "ivf":
                index.train(self.embeddings)
                index.nprobe = self.nprobe
            index.add(self.embeddings)
            self._searcher = index
        values, positions = self._searcher.search(queries, k)
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
        which names that file; each is written to a temporary file in `directory`,
        flushed to disk and renamed into place. A crash at any moment leaves the previous
        index or the new one loadable. Arrays files that `index.json` no longer names
        (the previous one, or one written before a crash) are then removed; no other file
        is touched.
        """
        if not len(self):
            raise ValueError("the index is empty; nothing to save.")
        os.makedirs(directory, exist_ok=True)
        arrays_file = f"arrays-{uuid.uuid4().hex}.npz"
        arrays = {"embeddings": self.embeddings, "ids": self.ids}
        if self.labels is not None:
            arrays["labels"] = self.labels
        _write_atomically(directory, arrays_file, lambda f: np.savez(f, **arrays))
        config = {"format_version": FORMAT_VERSION, "arrays_file": arrays_file, "distance": self.distance,
                  "backend": self.backend, "faiss_index": self.faiss_index, "nlist": self.nlist,
                  "nprobe": self.nprobe, "chunk_size": self.chunk_size, "threshold": self.threshold,
                  "size": len(self), "dim": self.dim}
        text = json.dumps(config, indent=2).encode()
        _write_atomically(directory, _CONFIG_FILE, lambda f: f.write(text))
        for name in os.listdir(directory):
            if name != arrays_file and _ARRAYS_PATTERN.fullmatch(name):
                os.remove(os.path.join(directory, name))

    @classmethod
    def load(cls, directory):
        """An index saved by `save`. Every field and array is checked: a missing or
        unreadable file, another format version, or a value `save` could not have written
        is a ValueError naming the file and field.

        A faiss index is rebuilt from the stored embeddings; where faiss is not installed
        the loaded index searches exactly instead.
        """
        config = _read_config(directory)
        backend = config["backend"] if config["backend"] != "faiss" or _faiss() else "exact"
        index = cls(config["distance"], backend, config["faiss_index"], config["nlist"],
                    config["nprobe"], config["chunk_size"])
        arrays = _read_arrays(os.path.join(directory, config["arrays_file"]), config)
        index.embeddings, index.ids, index.labels = arrays["embeddings"], arrays["ids"], arrays.get("labels")
        index.threshold = config["threshold"]
        return index


def _write_atomically(directory, name, write):
    """`write(file)` into a temporary file in `directory`, flushed and synced to disk, then
    renamed to `name` and the directory synced: `name` is old or new, never torn."""
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, os.path.join(directory, name))
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    if hasattr(os, "O_DIRECTORY"):
        folder = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _read_config(directory):
    """`index.json` of `directory`, every field checked (see `Index.save`)."""
    path = os.path.join(directory, _CONFIG_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"{str(directory)!r} is not a saved Index: {_CONFIG_FILE} is missing.")
    try:
        with open(path, "rb") as f:
            config = json.loads(f.read().decode("utf-8"))
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{_CONFIG_FILE} is not valid JSON: {error}.") from None
    if not isinstance(config, dict):
        raise ValueError(f"{_CONFIG_FILE} must hold a JSON object; got {type(config).__name__}.")
    version = config.get("format_version")
    if isinstance(version, bool) or version not in (1, FORMAT_VERSION):
        raise ValueError(f"{str(directory)!r} holds an index of format version {version!r}; this keras_dml "
                         f"reads versions 1 and {FORMAT_VERSION}.")
    if version == 1:
        config.setdefault("arrays_file", "arrays.npz")
    fields = ("arrays_file", "distance", "backend", "faiss_index", "nlist", "nprobe", "chunk_size",
              "threshold", "size", "dim")
    missing = [name for name in fields if name not in config]
    if missing:
        raise ValueError(f"{_CONFIG_FILE}: missing field(s) {missing}.")
    arrays_file = config["arrays_file"]
    if not isinstance(arrays_file, str) or not _ARRAYS_PATTERN.fullmatch(arrays_file):
        raise ValueError(f"{_CONFIG_FILE}: arrays_file must name an arrays file of the index; got {arrays_file!r}.")
    try:
        inputs.check_distance(config["distance"])
        checks.one_of(config["backend"], "backend", _BACKENDS)
        checks.one_of(config["faiss_index"], "faiss_index", _FAISS_INDEXES)
        for name in ("nlist", "nprobe", "chunk_size", "size", "dim"):
            if not isinstance(config[name], int):  # not 2.0 or "2": save writes ints
                raise ValueError(f"{name} must be a positive integer; got {name}={config[name]!r}.")
            checks.positive_int(config[name], name)
        threshold = config["threshold"]
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)
                                      or not np.isfinite(threshold)):
            raise ValueError(f"threshold must be null or a finite number; got threshold={threshold!r}.")
    except ValueError as error:
        raise ValueError(f"{_CONFIG_FILE}: {error}") from None
    if not os.path.isfile(os.path.join(directory, arrays_file)):
        raise ValueError(f"{str(directory)!r} is not a saved Index: {arrays_file} is missing.")
    return config


def _read_arrays(path, config):
    """The arrays in `path`, each checked against `config` (see `Index.save`)."""
    name = os.path.basename(path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"{name} is not a readable arrays file: {error}.") from None
    if not {"embeddings", "ids"} <= set(arrays) <= {"embeddings", "ids", "labels"}:
        raise ValueError(f"{name} must hold embeddings, ids and optionally labels; got {sorted(arrays)}.")
    size, dim = config["size"], config["dim"]
    embeddings = arrays["embeddings"]
    if embeddings.dtype != np.float32 or embeddings.shape != (size, dim):
        raise ValueError(f"{name}: embeddings must be float32 of shape ({size}, {dim}) as {_CONFIG_FILE} says; "
                         f"got {embeddings.dtype} of shape {embeddings.shape}.")
    inputs.check_embeddings(embeddings, f"{name}: embeddings")
    if config["distance"] == "cosine":
        norms = np.sqrt(np.einsum("ij,ij->i", embeddings, embeddings, dtype=np.float64))
        if np.any((np.abs(norms - 1.0) > _UNIT_NORM_TOLERANCE) & (norms > 0)):
            raise ValueError(f"{name}: embeddings of a cosine index must be L2-normalised rows (or zero rows).")
    for column in ("ids", "labels"):
        values = arrays.get(column)
        kinds = "iuUS" if column == "ids" else "biuUS"
        if values is not None and (values.ndim != 1 or len(values) != size or values.dtype.kind not in kinds):
            raise ValueError(f"{name}: {column} must be {size} integers or strings; "
                             f"got dtype {values.dtype} of shape {values.shape}.")
    if len(np.unique(arrays["ids"])) != size:
        raise ValueError(f"{name}: ids must be unique.")
    return arrays
