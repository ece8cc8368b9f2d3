"""keras_dml.index.Index: exact search against brute force, persistence, thresholds, re-ranking."""
import json
import os

import numpy as np
import pytest

from keras_dml import index as index_module
from keras_dml.index import Index


def integer_rows(n, dim, high, seed):
    return np.random.default_rng(seed).integers(-high, high + 1, size=(n, dim)).astype("float32")


def brute_force(queries, gallery, k):
    d = ((queries[:, None, :].astype(np.float64) - gallery[None]) ** 2).sum(-1)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.sqrt(np.take_along_axis(d, order, 1))


@pytest.mark.parametrize("chunk_size", [4, 1024])
def test_exact_search_equals_brute_force(chunk_size):
    gallery, queries = integer_rows(90, 5, 2, 0), integer_rows(25, 5, 2, 1)  # many exact ties
    index = Index(chunk_size=chunk_size)
    index.add(gallery[:50])
    index.add(gallery[50:])  # ids continue 50, 51, ...
    ids, dist = index.search(queries, k=12)
    order, expected = brute_force(queries, gallery, 12)
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_allclose(dist, expected, rtol=1e-6)


def test_ids_labels_and_lookup():
    gallery = integer_rows(30, 4, 3, 2)
    ids = np.array([f"item{i:02d}" for i in range(30)])
    labels = np.arange(30) % 7
    index = Index()
    index.add(gallery, labels=labels, ids=ids)
    found, _ = index.search(gallery[:5] + 0.1, k=3)
    order, _ = brute_force(gallery[:5] + 0.1, gallery, 3)
    np.testing.assert_array_equal(found, ids[order])
    np.testing.assert_array_equal(index.lookup(found), labels[order])
    with pytest.raises(ValueError, match="unique"):
        index.add(gallery[:1], labels=[0], ids=["item03"])
    with pytest.raises(ValueError, match="not in the index"):
        index.lookup(["nope"])


def test_save_load_round_trip(tmp_path):
    gallery = integer_rows(40, 6, 4, 3)
    index = Index(distance="cosine", chunk_size=16)
    index.add(gallery + 0.5, labels=np.arange(40) % 5)
    index.threshold = 0.75
    index.save(tmp_path / "idx")
    loaded = Index.load(tmp_path / "idx")
    queries = integer_rows(7, 6, 4, 4)
    for got, want in zip(loaded.search(queries, k=9), index.search(queries, k=9)):
        np.testing.assert_array_equal(got, want)
    assert (loaded.distance, loaded.chunk_size, loaded.threshold) == ("cosine", 16, 0.75)
    np.testing.assert_array_equal(loaded.labels, index.labels)
    np.testing.assert_array_equal(loaded.match(queries)[1], index.match(queries)[1])


def test_load_rejects_missing_files_and_other_versions(tmp_path):
    index = Index()
    index.add(integer_rows(5, 2, 1, 5))
    index.save(tmp_path / "idx")
    config_path = tmp_path / "idx" / "index.json"
    config = json.loads(config_path.read_text())
    os.remove(tmp_path / "idx" / config["arrays_file"])
    with pytest.raises(ValueError, match=f"{config['arrays_file']} is missing"):
        Index.load(tmp_path / "idx")
    config["format_version"] = index_module.FORMAT_VERSION + 1
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="format version"):
        Index.load(tmp_path / "idx")
    with pytest.raises(ValueError, match="index.json is missing"):
        Index.load(tmp_path / "nothing")


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        Index().search(np.zeros((1, 3)), k=1)
    with pytest.raises(ValueError, match="distance"):
        Index(distance="manhattan")
    with pytest.raises(ValueError, match="backend"):
        Index(backend="annoy")
    index = Index()
    index.add(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="dimension 2"):
        index.search(np.zeros((1, 2)), k=1)
    with pytest.raises(ValueError, match="dimension 2"):
        index.add(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="k must be"):
        index.search(np.zeros((1, 3)), k=5)
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full((1, 3), np.nan), k=1)
    with pytest.raises(ValueError, match="labels"):
        index.calibrate(np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="calibrate"):
        index.match(np.zeros((1, 3)))


def clustered(n_per_class, classes, seed, spread=0.3):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    centres = 10.0 * np.eye(classes, 8)
    return (centres[labels] + spread * rng.normal(size=(len(labels), 8))).astype("float32"), labels


def test_calibrate_and_match_separate_known_from_unknown_items():
    gallery, labels = clustered(10, 4, seed=6)
    index = Index()
    index.add(gallery, labels=labels)
    known, known_labels = clustered(5, 4, seed=7)
    unknown = known + np.float32(5.0)  # far from every stored item, nearest label arbitrary
    threshold = index.calibrate(np.concatenate([known, unknown]), np.concatenate([known_labels, known_labels + 99]))
    assert index.calibration["precision"] == 1.0 and index.calibration["recall"] == 1.0
    ids, is_match = index.match(known)
    assert is_match.all()
    np.testing.assert_array_equal(index.lookup(ids), known_labels)
    assert not index.match(unknown)[1].any()
    assert index.search(known, k=1)[1].max() <= threshold < index.search(unknown, k=1)[1].min()
    # a precision target accepts as many as it can while keeping that precision
    # wrong labels on farther queries: precision 1.0 stops before them, 0.5 takes all
    queries = np.concatenate([known[:10], known[10:] + np.float32(2.0)])
    mixed = np.concatenate([known_labels[:10], known_labels[10:] + 1])
    strict = index.calibrate(queries, mixed, target=1.0)
    assert index.calibration == {"threshold": strict, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert index.match(queries)[1].tolist() == [True] * 10 + [False] * 10
    index.calibrate(queries, mixed, target=0.5)
    assert index.calibration["precision"] == 0.5 and index.match(queries)[1].all()
    with pytest.raises(ValueError, match="target"):
        index.calibrate(queries, mixed, target=2.0)


def test_rerank_with_a_callable_scorer():
    gallery, queries = integer_rows(60, 4, 5, 8), integer_rows(9, 4, 5, 9)
    index = Index()
    index.add(gallery)

    def l1_similarity(a, b):  # any callable (..., D), (..., D) -> (...), higher = more similar
        return -np.abs(a - b).sum(-1)

    ids, scores = index.search(queries, k=5, rerank=l1_similarity, rerank_depth=60)
    l1 = np.abs(queries[:, None, :] - gallery[None]).sum(-1)
    by_distance, _ = brute_force(queries, gallery, 60)  # equal scores keep this order
    by_score = np.argsort(np.take_along_axis(l1, by_distance, 1), axis=1, kind="stable")
    order = np.take_along_axis(by_distance, by_score, 1)[:, :5]
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_allclose(scores, -np.take_along_axis(l1, order, 1))
    # with the default depth only the 4k nearest by distance are re-ordered
    default_ids, _ = index.search(queries, k=5, rerank=l1_similarity)
    nearest_20, _ = index.search(queries, k=20)
    assert all(set(row) <= set(pool) for row, pool in zip(default_ids, nearest_20))
    with pytest.raises(ValueError, match="shape"):
        index.search(queries, k=2, rerank=lambda a, b: a.sum(-1)[:, :1])


def test_faiss_flat_agrees_with_exact():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(10)
    gallery, queries = rng.normal(size=(500, 16)).astype("float32"), rng.normal(size=(20, 16)).astype("float32")
    for distance in ("euclidean", "cosine"):
        exact, fast = Index(distance), Index(distance, backend="faiss")
        exact.add(gallery)
        fast.add(gallery)
        (ids, values), (fast_ids, fast_values) = exact.search(queries, 10), fast.search(queries, 10)
        np.testing.assert_array_equal(fast_ids, ids)
        np.testing.assert_allclose(fast_values, values, rtol=1e-4, atol=1e-5)


def test_rerank_with_a_pddm_unit():
    layers = pytest.importorskip("keras_dml.layers")  # the PDDM issue adds the unit
    if not hasattr(layers, "PDDM"):
        pytest.skip("keras_dml.layers.PDDM is not in this tree yet")
    rng = np.random.default_rng(11)
    gallery, queries = rng.normal(size=(40, 8)).astype("float32"), rng.normal(size=(6, 8)).astype("float32")
    index = Index()
    index.add(gallery)
    pddm = layers.PDDM(hidden_dim=4)
    ids, scores = index.search(queries, k=3, rerank=pddm, rerank_depth=10)
    expected = np.asarray(pddm(np.repeat(queries[:, None, :], 3, axis=1), gallery[ids]))
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_search_equals_float64_brute_force_on_random_data_with_ties():
    rng = np.random.default_rng(12)
    gallery = rng.normal(size=(400, 10)).astype("float32")
    gallery[200:] = gallery[rng.choice(200, size=200)]  # every later row repeats an earlier one
    queries = np.concatenate([gallery[:30], rng.normal(size=(30, 10)).astype("float32")])
    index = Index(chunk_size=64)
    index.add(gallery)
    ids, dist = index.search(queries, k=20)
    order, expected = brute_force(queries, gallery, 20)
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_allclose(dist, expected, rtol=1e-6)


def test_a_zero_query_has_cosine_similarity_zero():
    index = Index(distance="cosine")
    index.add(np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]], "float32"))
    ids, values = index.search(np.zeros((1, 2), "float32"), k=3)
    assert ids.tolist() == [[0, 1, 2]] and values.tolist() == [[0.0, 0.0, 0.0]]
    ids, values = index.search(np.array([[0.0, 5.0]], "float32"), k=3)
    assert ids.tolist() == [[1, 0, 2]] and values.tolist() == [[1.0, 0.0, 0.0]]


def test_a_scorer_returning_nan_is_a_clear_error():
    index = Index()
    index.add(integer_rows(20, 3, 2, 13))
    with pytest.raises(ValueError, match="NaN or inf scores"):
        index.search(integer_rows(2, 3, 2, 14), k=2, rerank=lambda a, b: np.full(a.shape[:-1], np.nan))


def test_k_and_rerank_depth_must_be_whole_numbers():
    index = Index()
    index.add(integer_rows(20, 3, 2, 15))
    for bad in (True, 2.5, "3"):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            index.search(integer_rows(1, 3, 2, 16), k=bad)
    with pytest.raises(ValueError, match="rerank_depth"):
        index.search(integer_rows(1, 3, 2, 16), k=3, rerank=lambda a, b: -abs(a - b).sum(-1), rerank_depth=2)
    with pytest.raises(ValueError, match="dim >= 1"):
        index.add(np.zeros((10, 0)))


def saved(tmp_path, distance="euclidean", labels=True):
    index = Index(distance=distance)
    index.add(integer_rows(6, 3, 2, 17) + 0.5, labels=np.arange(6) % 2 if labels else None)
    index.threshold = 1.5
    index.save(tmp_path / "idx")
    config_path = tmp_path / "idx" / "index.json"
    return index, config_path, json.loads(config_path.read_text())


@pytest.mark.parametrize("field, value, message", [
    ("distance", "manhattan", "distance"),
    ("backend", "annoy", "backend"),
    ("faiss_index", "hnsw", "faiss_index"),
    ("nlist", 2.5, "nlist"),
    ("nprobe", True, "nprobe"),
    ("chunk_size", 0, "chunk_size"),
    ("chunk_size", "64", "chunk_size"),
    ("threshold", "high", "threshold"),
    ("threshold", float("nan"), "threshold"),
    ("size", 7, "shape"),
    ("dim", 2, "shape"),
    ("arrays_file", "../elsewhere.npz", "arrays_file"),
    ("arrays_file", ["arrays.npz"], "arrays_file"),
    ("distance", ["euclidean"], "distance"),  # a list where a string belongs
    ("backend", ["exact"], "backend"),
    ("faiss_index", {"flat": 1}, "faiss_index"),
    ("threshold", 10**400, "threshold"),  # beyond float64
    ("threshold", [0.5], "threshold"),
    ("size", 10**400, "size"),
    ("dim", 2**50, "dim"),
    ("replaces", ["../../thesis.tex"], "replaces"),
    ("replaces", "arrays.npz", "replaces"),
    ("format_version", "2", "format version"),
    ("extra_field", 1, "unknown field"),
])
def test_load_checks_every_field(tmp_path, field, value, message):
    _, config_path, config = saved(tmp_path)
    config[field] = value
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        Index.load(tmp_path / "idx")


def test_load_refuses_a_config_that_is_not_a_json_object(tmp_path):
    _, config_path, config = saved(tmp_path)
    del config["dim"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="missing field"):
        Index.load(tmp_path / "idx")
    for text in ("{not json", "[1, 2]", "\xff"):
        config_path.write_bytes(text.encode("latin-1"))
        with pytest.raises(ValueError, match="index.json"):
            Index.load(tmp_path / "idx")


@pytest.mark.parametrize("arrays, message", [
    (dict(ids=np.array([0, 1, 2, 3, 4, 4])), "ids must be unique"),
    (dict(ids=np.arange(6.0)), "ids must be"),
    (dict(ids=np.arange(6).reshape(6, 1)), "ids must be"),
    (dict(labels=np.arange(5)), "labels must be"),
    (dict(embeddings=np.full((6, 3), np.nan, "float32")), "NaN"),
    (dict(embeddings=np.zeros((6, 3), "float16")), "float32 or float64"),
    (dict(embeddings=np.zeros((3, 6), "float32")), "shape"),
    (dict(ids=np.array([b"a", 1, None], dtype=object)[[0, 1, 2, 0, 1, 2]]), "ids must be"),
    (dict(labels=np.ones(6, "complex64")), "labels must be"),
    (dict(extra=np.zeros(2)), "must hold"),
])
def test_load_checks_every_array(tmp_path, arrays, message):
    index, config_path, config = saved(tmp_path)
    stored = {"embeddings": index.embeddings, "ids": index.ids, "labels": index.labels, **arrays}
    np.savez(tmp_path / "idx" / config["arrays_file"], **stored, allow_pickle=True)
    with pytest.raises(ValueError, match=message):
        Index.load(tmp_path / "idx")


def test_load_refuses_duplicate_json_keys(tmp_path):
    _, config_path, config = saved(tmp_path)
    text = json.dumps(config)
    config_path.write_text(text[:-1] + ', "threshold": 99.0}')
    with pytest.raises(ValueError, match=r"\['threshold'\] appear more than once"):
        Index.load(tmp_path / "idx")


def write_member(path, name, data):
    """Replace the zip member `name` of an npz file by raw `data`."""
    import zipfile

    with zipfile.ZipFile(path) as old:
        members = {info.filename: old.read(info) for info in old.infolist()}
    members[name] = data
    with zipfile.ZipFile(path, "w") as new:
        for member, content in members.items():
            new.writestr(member, content)


def npy_header(shape, dtype="<f4"):
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (117 - len(header)) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


@pytest.mark.parametrize("data, size, message", [
    (b"not an array at all", None, "embeddings is not an array"),
    (b"", None, "embeddings is not an array"),
    (npy_header((600000000000, 3)), None, "shape"),  # header and index.json disagree
    (npy_header((600000000000, 3)), 600000000000, "bytes of data"),  # both lie: nothing allocated
    (npy_header((6, 3), "|O"), None, "float32 or float64"),
    (npy_header((6, 3)) + b"\0" * 8, None, "bytes of data"),
])
def test_load_reads_array_headers_before_data(tmp_path, data, size, message):
    _, config_path, config = saved(tmp_path)
    write_member(tmp_path / "idx" / config["arrays_file"], "embeddings.npy", data)
    if size is not None:
        config["size"] = size
        config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        Index.load(tmp_path / "idx")


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 not a zip", None])
def test_load_refuses_a_damaged_arrays_file(tmp_path, damage):
    _, _, config = saved(tmp_path)
    path = tmp_path / "idx" / config["arrays_file"]
    path.write_bytes(path.read_bytes()[:200] if damage is None else damage)  # None: truncated
    with pytest.raises(ValueError, match="not a readable arrays file"):
        Index.load(tmp_path / "idx")


def test_format_version_1_still_loads(tmp_path):
    index, config_path, config = saved(tmp_path)
    os.rename(tmp_path / "idx" / config.pop("arrays_file"), tmp_path / "idx" / "arrays.npz")
    config_path.write_text(json.dumps({**config, "format_version": 1}))
    loaded = Index.load(tmp_path / "idx")
    np.testing.assert_array_equal(loaded.embeddings, index.embeddings)
    index.save(tmp_path / "idx")  # re-saving replaces the version 1 arrays file
    assert sorted(os.listdir(tmp_path / "idx")) == sorted(["index.json", json.loads(config_path.read_text())
                                                          ["arrays_file"]])


def test_save_is_atomic_under_a_kill_at_any_moment(tmp_path):
    """A child process re-saves over an existing index in a loop and is killed (SIGKILL)
    after a random delay; the directory must always load as one of the two indexes."""
    import signal
    import time

    rng = np.random.default_rng(18)
    old, new = Index(), Index()
    old.add(rng.normal(size=(20000, 16)).astype("float32"))  # ~1.3 MB: saves take a while
    new.add(rng.normal(size=(20000, 16)).astype("float32"), ids=np.arange(20000) + 10**6)
    old.save(tmp_path / "idx")
    for attempt in range(12):
        pid = os.fork()
        if pid == 0:  # the child: no TensorFlow, only numpy and files
            try:
                while True:
                    new.save(tmp_path / "idx")
                    old.save(tmp_path / "idx")
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        loaded = Index.load(tmp_path / "idx")
        expected = old if loaded.ids[0] == 0 else new
        np.testing.assert_array_equal(loaded.embeddings, expected.embeddings)
        np.testing.assert_array_equal(loaded.ids, expected.ids)
    new.save(tmp_path / "idx")  # what killed saves left (records, arrays files) goes with the next save
    assert sorted(os.listdir(tmp_path / "idx")) == sorted(
        ["index.json", json.loads((tmp_path / "idx" / "index.json").read_text())["arrays_file"]])


def test_save_deletes_only_the_files_it_recorded(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    users = {"arrays.npz": b"my arrays", f"arrays-{'0' * 32}.npz": b"a look-alike",
             ".index.json.abcd1234.tmp": b"another tool's temporary file", "notes.txt": b"x"}
    for name, content in users.items():
        (folder / name).write_bytes(content)
    index = Index()
    index.add(integer_rows(6, 3, 2, 19))
    index.save(folder)
    first = json.loads((folder / "index.json").read_text())["arrays_file"]
    index.save(folder)  # replaces the index: its own previous arrays file goes, nothing else
    second = json.loads((folder / "index.json").read_text())["arrays_file"]
    assert sorted(os.listdir(folder)) == sorted([*users, "index.json", second]) and first != second
    for name, content in users.items():
        assert (folder / name).read_bytes() == content


def test_save_refuses_a_file_and_a_foreign_index_json(tmp_path):
    index = Index()
    index.add(integer_rows(6, 3, 2, 20))
    (tmp_path / "a_file").write_text("mine")
    with pytest.raises(ValueError, match="directory=.* is a file"):
        index.save(tmp_path / "a_file")
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "index.json").write_text('{"pages": ["home"]}')
    with pytest.raises(ValueError, match="not a saved Index .*; refusing to replace it"):
        index.save(tmp_path / "web")
    assert os.listdir(tmp_path / "web") == ["index.json"]
    assert (tmp_path / "web" / "index.json").read_text() == '{"pages": ["home"]}'


def test_a_killed_saves_leftovers_go_but_a_live_saves_stay(tmp_path):
    """What a save killed between writing its arrays file and renaming its record looks
    like, and a save still running in another process (its record locked)."""
    import fcntl

    index = Index()
    index.add(integer_rows(6, 3, 2, 21))
    index.save(tmp_path / "idx")
    dead, live = "1" * 32, "2" * 32
    for token in (dead, live):
        (tmp_path / "idx" / f".keras_dml-save-{token}.tmp").write_text("{")
        (tmp_path / "idx" / f"arrays-{token}.npz").write_bytes(b"partial")
    (tmp_path / "idx" / f".arrays-{'3' * 32}.npz.abcd_123.tmp").write_bytes(b"an older version's")
    with open(tmp_path / "idx" / f".keras_dml-save-{live}.tmp") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # flock locks are per open file: this one stands for another process
        index.save(tmp_path / "idx")
    current = json.loads((tmp_path / "idx" / "index.json").read_text())["arrays_file"]
    assert sorted(os.listdir(tmp_path / "idx")) == sorted(
        ["index.json", current, f".keras_dml-save-{live}.tmp", f"arrays-{live}.npz"])
    index.save(tmp_path / "idx")  # no longer locked: now it is a killed save's
    assert sorted(os.listdir(tmp_path / "idx")) == sorted(
        ["index.json", json.loads((tmp_path / "idx" / "index.json").read_text())["arrays_file"]])


def test_threshold_is_checked_when_set():
    index = Index()
    index.threshold = np.float32(0.5)
    assert index.threshold == 0.5 and type(index.threshold) is float
    for bad in ("0.5", True, float("nan"), np.inf, [0.5], 10**400):
        with pytest.raises(ValueError, match="threshold must be None or a finite number"):
            index.threshold = bad
    assert index.threshold == 0.5


def test_numpy_threshold_saves_and_loads(tmp_path):
    index = Index()
    index.add(integer_rows(6, 3, 2, 22))
    index.threshold = np.float32(0.5)
    index.save(tmp_path / "idx")
    assert Index.load(tmp_path / "idx").threshold == 0.5
    assert len(os.listdir(tmp_path / "idx")) == 2


def test_integer_ids_keep_their_dtype_and_precision(tmp_path):
    index = Index()
    big = np.array([2**53, 2**53 + 1, 2**63 + 5], np.uint64)  # float64 would merge the first two
    index.add(integer_rows(3, 2, 2, 23), ids=big)
    index.add(integer_rows(2, 2, 2, 24), ids=np.array([7, 8], np.int64))  # fits uint64: accepted
    assert index.ids.dtype == np.uint64 and index.ids.tolist() == [2**53, 2**53 + 1, 2**63 + 5, 7, 8]
    with pytest.raises(ValueError, match=r"outside the uint64 range"):
        index.add(integer_rows(1, 2, 2, 25), ids=np.array([-1]))
    index.save(tmp_path / "idx")
    loaded = Index.load(tmp_path / "idx")
    assert loaded.ids.tolist() == index.ids.tolist() and len(loaded) == 5
    signed = Index()
    signed.add(integer_rows(1, 2, 2, 26), ids=np.array([-3]))
    with pytest.raises(ValueError, match=r"outside the int64 range"):
        signed.add(integer_rows(1, 2, 2, 27), ids=np.array([2**63], np.uint64))


@pytest.mark.parametrize("first, second, message", [
    (dict(labels=[0, 1]), dict(labels=["x", "y"]), "labels are strings but this index holds integers"),
    (dict(labels=["a", "b"]), dict(labels=[0, 1]), "labels are integers but this index holds strings"),
    (dict(labels=[True, False]), dict(labels=[0, 1]), "labels are integers but this index holds booleans"),
    (dict(ids=["a", "b"]), dict(ids=[5, 6]), "ids are integers but this index holds strings"),
    (dict(), dict(ids=["c", "d"]), "ids are strings but this index holds integers"),
])
def test_a_batch_of_another_kind_is_refused(first, second, message):
    index = Index()
    index.add(integer_rows(2, 2, 2, 28), **first)
    before = (index.embeddings.copy(), index.ids.copy())
    if "labels" in first:
        second.setdefault("labels", first["labels"])
    with pytest.raises(ValueError, match=message):
        index.add(integer_rows(2, 2, 2, 29), **second)
    np.testing.assert_array_equal(index.embeddings, before[0])  # nothing was stored
    np.testing.assert_array_equal(index.ids, before[1])


def test_float64_embeddings_are_stored_and_searched_in_float64(tmp_path):
    """Near 1e6, rows 0.001 apart would be one point in float32."""
    x = 1e6 + 0.001 * np.array([[0.0], [3.0], [1.0], [7.0], [2.0]]) * np.ones((1, 3))
    index = Index()
    index.add(x)
    ids, dist = index.search(x[:1] + 0.0004, k=5)
    assert ids.tolist() == [[0, 2, 4, 1, 3]] and dist.min() > 0
    np.testing.assert_allclose(dist[0], np.sqrt(3) * np.array([0.4, 0.6, 1.6, 2.6, 6.6]) * 1e-3, rtol=1e-6)
    index.add(np.full((1, 3), 5.0, "float32"))  # float32 rows are exact in float64
    index.save(tmp_path / "idx")
    loaded = Index.load(tmp_path / "idx")
    assert loaded.embeddings.dtype == np.float64
    np.testing.assert_array_equal(loaded.search(x[:1] + 0.0004, k=5)[0], ids)
    small = Index()
    small.add(np.zeros((2, 3), "float32"))
    small.add(np.ones((1, 3)))  # float64 values that float32 holds exactly: accepted
    with pytest.raises(ValueError, match="would lose precision"):
        small.add(x[1:2])  # 1e6 + 0.003
    assert small.embeddings.dtype == np.float32 and len(small) == 3


def test_cosine_ties_between_parallel_items_go_to_the_earlier_one():
    index = Index(distance="cosine")
    index.add(np.array([[1.0, 2.0, 0.0], [3.0, 6.0, 0.0], [0.0, 1.0, 0.0], [7.0, 14.0, 0.0]], "float32"))
    ids, values = index.search(np.array([[0.3, 0.6, 0.0], [0.1, 0.0, 0.1]], "float32"), k=4)
    assert ids[0].tolist() == [0, 1, 3, 2] and ids[1].tolist() == [0, 1, 3, 2]
