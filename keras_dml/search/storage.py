"""How an `Index` lives on disk: atomic saves that delete only what they recorded, checked loads.

A saved index is a directory holding `index.json` (the settings, and the name of the
arrays file) and `arrays-<hex>.npz` (embeddings, ids, optional labels). Other files in
the directory are never touched. A save, in order:

1. removes what earlier saves that were killed left behind: each of them left its
   record, `.keras_dml-save-<hex>.tmp`, no longer locked by a live process (`flock`),
   and perhaps the arrays file `arrays-<hex>.npz` of the same `<hex>`;
2. writes the new settings to its own record (locked, flushed to disk), naming the new
   arrays file `arrays-<hex>.npz` and the arrays files it replaces;
3. writes the arrays file (flushed);
4. renames the record to `index.json` (atomic: the directory holds the previous index
   or the new one, never neither);
5. removes the arrays files the previous `index.json` named (its own, and the ones it
   replaced, in case a kill stopped its save before this step).

A directory whose `index.json` is not a saved index is refused, and so is a path that is a
file. Where `fcntl` is missing (Windows), step 1 is skipped: a killed save's files stay.

`read` checks every field and array against what `write` could have written, and reads
each array's header before its data, so a tampered file is a `ValueError` naming the
field, never a huge allocation.

Example:

>>> import os, tempfile
>>> import numpy as np
>>> from keras_dml.search import storage
>>> folder = tempfile.mkdtemp()
>>> config = {"distance": "euclidean", "backend": "exact", "faiss_index": "flat", "nlist": 100,
...           "nprobe": 8, "chunk_size": 1024, "threshold": None, "size": 2, "dim": 1}
>>> storage.write(folder, config, {"embeddings": np.zeros((2, 1), "float32"), "ids": np.arange(2)})
>>> sorted(storage.read(folder)[1])
['embeddings', 'ids']
>>> len(os.listdir(folder))
2
"""
import json
import os
import re
import uuid
import zipfile
import zlib

import numpy as np

from keras_dml import checks
from keras_dml.search import inputs

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so no clean-up of killed saves
    fcntl = None

FORMAT_VERSION = 2
CONFIG_FILE = "index.json"
BACKENDS = ("exact", "faiss", "auto")
FAISS_INDEXES = ("flat", "ivf")
_ARRAYS_PATTERN = re.compile(r"arrays(-[0-9a-f]{32})?\.npz")  # format version 1 wrote "arrays.npz"
_RECORD = re.compile(r"\.keras_dml-save-([0-9a-f]{32})\.tmp")
# Temporary files of keras_dml before records existed: the arrays file's own name inside.
_OLD_TEMPORARY = re.compile(r"\.arrays-[0-9a-f]{32}\.npz\.[a-z0-9_]{8}\.tmp")
_INT_FIELDS = ("nlist", "nprobe", "chunk_size", "size", "dim")
_FIELDS = ("format_version", "arrays_file", "replaces", "distance", "backend", "faiss_index", *_INT_FIELDS,
           "threshold")
_LARGEST_INT = 2**40  # far beyond any real setting; keeps tampered sizes from allocating
_ARRAY_KINDS = {"embeddings": "f", "ids": "iuUS", "labels": "biuUS"}


def check_threshold(threshold):
    """`threshold` as a Python float, or None; a ValueError unless it is None or a finite
    real number (a NumPy scalar is fine, a bool or a string is not)."""
    if threshold is None:
        return None
    if isinstance(threshold, bool | np.bool_) or not isinstance(threshold, int | float | np.integer | np.floating):
        raise ValueError(f"threshold must be None or a finite number; got threshold={threshold!r}.")
    try:
        value = float(threshold)
    except OverflowError:  # an int beyond float64
        value = float("inf")
    if not np.isfinite(value):
        raise ValueError(f"threshold must be None or a finite number; got threshold={threshold!r}.")
    return value


def write(directory, config, arrays):
    """Save `arrays` and `config` (the settings, without file names) to `directory`
    atomically, following the module docstring."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"directory={directory!r} is a file; save the index to a directory.")
    previous = _previous_files(directory)
    os.makedirs(directory, exist_ok=True)
    _remove_killed_saves(directory, keep=previous[:1])
    token, record = _new_record(directory)
    arrays_file = f"arrays-{token}.npz"
    config = {"format_version": FORMAT_VERSION, "arrays_file": arrays_file, "replaces": previous, **config}
    committed = False
    try:
        with os.fdopen(os.dup(record), "wb") as f:
            f.write(json.dumps(config, indent=2).encode())
            f.flush()
            os.fsync(f.fileno())
        _sync(directory)  # the record is on disk before the arrays file it names appears
        with open(os.path.join(directory, arrays_file), "xb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(_record_path(directory, token), os.path.join(directory, CONFIG_FILE))
        committed = True
        for name in previous:
            _remove(os.path.join(directory, name))
        _sync(directory)
    except BaseException:
        if not committed:  # an error we can see: take back our own files
            _remove(os.path.join(directory, arrays_file))
            _remove(_record_path(directory, token))
        raise
    finally:
        os.close(record)


def _record_path(directory, token):
    return os.path.join(directory, f".keras_dml-save-{token}.tmp")


def _new_record(directory):
    """`(token, fd)`: a new record file, created and locked by this process."""
    while True:
        token = uuid.uuid4().hex
        fd = os.open(_record_path(directory, token), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        if fcntl is None:
            return token, fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:  # not removed by another save's clean-up before we locked it
            return token, fd
        os.close(fd)


def _previous_files(directory):
    """The arrays files the current `index.json` of `directory` names (its own first, then
    those it replaced); [] without one. A ValueError when `index.json` is not a saved index."""
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        return []
    try:
        config = _parse_config(path)
        names = [config.get("arrays_file", "arrays.npz")] + list(config.get("replaces") or [])
        if config.get("format_version") not in (1, FORMAT_VERSION) or not all(
                isinstance(name, str) and _ARRAYS_PATTERN.fullmatch(name) for name in names):
            raise ValueError("it names no arrays file of an index")
    except (ValueError, AttributeError, TypeError) as error:
        raise ValueError(f"directory={directory!r} holds an {CONFIG_FILE} that is not a saved Index ({error}); "
                         f"refusing to replace it. Save to another directory.") from None
    return list(dict.fromkeys(names))


def _remove_killed_saves(directory, keep):
    """Remove the records of killed saves (unlocked) with the arrays files they name
    (unless `keep` holds them), and keras_dml's older temporary arrays files."""
    if fcntl is None:
        return
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if _OLD_TEMPORARY.fullmatch(name):
            _remove(path)
        match = _RECORD.fullmatch(name)
        if not match:
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a save in progress
            arrays_file = f"arrays-{match.group(1)}.npz"
            if arrays_file not in keep:
                _remove(os.path.join(directory, arrays_file))
            _remove(path)
        finally:
            os.close(fd)


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _sync(directory):
    if hasattr(os, "O_DIRECTORY"):
        folder = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def read(directory):
    """`(config, arrays)` of the index saved in `directory`, every field and array checked."""
    config = _read_config(os.fspath(directory))
    return config, _read_arrays(os.path.join(directory, config["arrays_file"]), config)


def _unique_keys(pairs):
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"field(s) {repeated} appear more than once")
    return dict(pairs)


def _parse_config(path):
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    config = json.loads(text, object_pairs_hook=_unique_keys)
    if not isinstance(config, dict):
        raise ValueError(f"it must hold a JSON object; got {type(config).__name__}")
    return config


def _read_config(directory):
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"{directory!r} is not a saved Index: {CONFIG_FILE} is missing.")
    try:
        config = _parse_config(path)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{CONFIG_FILE} is not a valid index file: {error}.") from None
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in (1, FORMAT_VERSION):
        raise ValueError(f"{directory!r} holds an index of format version {version!r}; this keras_dml "
                         f"reads versions 1 and {FORMAT_VERSION}.")
    if version == 1:
        config.setdefault("arrays_file", "arrays.npz")
    config.setdefault("replaces", [])
    missing = [name for name in _FIELDS if name not in config]
    unknown = sorted(set(config) - set(_FIELDS))
    if missing or unknown:
        raise ValueError(f"{CONFIG_FILE}: " + (f"missing field(s) {missing}" if missing else "")
                         + ("; " if missing and unknown else "") + (f"unknown field(s) {unknown}" if unknown else "")
                         + ".")
    try:
        _check_fields(config)
    except ValueError as error:
        raise ValueError(f"{CONFIG_FILE}: {error}") from None
    if not os.path.isfile(os.path.join(directory, config["arrays_file"])):
        raise ValueError(f"{directory!r} is not a saved Index: {config['arrays_file']} is missing.")
    return config


def _check_fields(config):
    """Each field's value as `write` writes it, or a ValueError naming the field."""
    arrays_file, replaces = config["arrays_file"], config["replaces"]
    if not isinstance(arrays_file, str) or not _ARRAYS_PATTERN.fullmatch(arrays_file):
        raise ValueError(f"arrays_file must name an arrays file of the index; got arrays_file={arrays_file!r}.")
    if not isinstance(replaces, list) or not all(isinstance(n, str) and _ARRAYS_PATTERN.fullmatch(n)
                                                 for n in replaces):
        raise ValueError(f"replaces must be a list of arrays file names; got replaces={replaces!r}.")
    inputs.check_distance(config["distance"])
    for name, choices in (("backend", BACKENDS), ("faiss_index", FAISS_INDEXES)):
        if not isinstance(config[name], str):
            raise ValueError(f"{name} must be one of {list(choices)}; got {name}={config[name]!r}.")
        checks.one_of(config[name], name, choices)
    for name in _INT_FIELDS:
        value = config[name]
        # not 2.0, "2" or a 400-digit number: write writes ints of real sizes
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _LARGEST_INT:
            raise ValueError(f"{name} must be a positive integer up to 2**40; got {name}={value!r}.")
    if isinstance(config["threshold"], str):
        raise ValueError(f"threshold must be null or a finite number; got threshold={config['threshold']!r}.")
    check_threshold(config["threshold"])


def _read_arrays(path, config):
    """The arrays in `path`, each header checked against `config` before its data is read."""
    name = os.path.basename(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            fields = sorted(member[:-4] if member.endswith(".npy") else member for member in members)
            if not {"embeddings", "ids"} <= set(fields) <= set(_ARRAY_KINDS) or len(fields) != len(members) \
                    or not all(member.endswith(".npy") for member in members):
                raise ValueError(f"{name} must hold the arrays embeddings, ids and optionally labels; "
                                 f"got members {sorted(members)}.")
            arrays = {field: _read_member(archive, members[f"{field}.npy"], field, config, name)
                      for field in fields}
    except (OSError, EOFError, KeyError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error) \
            as error:
        raise ValueError(f"{name} is not a readable arrays file: {error}.") from None
    embeddings = arrays["embeddings"]
    inputs.check_embeddings(embeddings, f"{name}: embeddings")
    if len(np.unique(arrays["ids"])) != config["size"]:
        raise ValueError(f"{name}: ids must be unique.")
    return arrays


def _read_member(archive, info, field, config, name):
    """One array, its header checked (dtype kind, shape, and that the member holds exactly
    the bytes the header announces) before any data is allocated."""
    size, dim = config["size"], config["dim"]
    shape = (size, dim) if field == "embeddings" else (size,)
    wanted = {"embeddings": "float32 or float64", "ids": "integers or strings",
              "labels": "booleans, integers or strings"}[field]
    with archive.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            header_shape, fortran, dtype = read_header(f)
            offset = f.tell()
        except (ValueError, SyntaxError, TypeError) as error:
            raise ValueError(f"{name}: {field} is not an array ({error}).") from None
        kind_ok = dtype.kind in _ARRAY_KINDS[field] and not dtype.hasobject and (
            field != "embeddings" or dtype in (np.float32, np.float64))
        if not kind_ok or tuple(header_shape) != shape or fortran:
            raise ValueError(f"{name}: {field} must be {wanted} of shape {shape} as {CONFIG_FILE} says; "
                             f"got dtype {dtype} of shape {tuple(header_shape)}.")
        nbytes = size * (dim if field == "embeddings" else 1) * dtype.itemsize
        if info.file_size != offset + nbytes:
            raise ValueError(f"{name}: {field} holds {info.file_size - offset} bytes of data, not the "
                             f"{shape} x {dtype.itemsize} its header announces.")
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(f"{name}: {field} is truncated.")
    return np.frombuffer(bytearray(data), dtype).reshape(shape)
