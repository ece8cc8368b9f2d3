"""Atomic export: write into a hidden staging folder, then swap it into the target; never delete what it did not write.

    parent/
        NAME/                          the target: absent, empty, or a previous export
        .NAME.<random>.partial/        staging, while an export runs
            owner.json                 who writes it: host, process id, start time
            export/                    the new export, swapped with NAME when complete

Rules:

- The target must be absent, empty, or hold only a previous export (its model card and
  artefacts, `model_card.read_card`). Anything else is refused with a `ValueError`, even
  with `overwrite=True`: export never deletes files it did not write, such as a training
  run's checkpoints (the target is then the run directory or one above it).
- The new export replaces the target in one `renameat2(RENAME_EXCHANGE)` call on Linux,
  so the target holds the old or the new export at every instant, even under SIGKILL.
  Where that call is missing, two renames are used, and a kill between them leaves the
  previous export in the staging folder, which the next export moves back.
- A staging folder left by a killed export (its owner process is gone) is removed by the
  next export to the same target.
- A SIGINT always aborts (`interrupts`), also when it was swallowed where it landed.
"""
import ctypes
import errno
import glob
import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path

from keras_dml import checks
from keras_dml.export import interrupts, model_card
from keras_dml.export.layout import ARTEFACT_NAMES

OWNER_FILE = "owner.json"
CONTENT_DIR = "export"
PREVIOUS_DIR = "previous"  # the replaced export, kept only by the two-rename fallback


class ExportExistsError(checks.ArgumentError, FileExistsError):
    """The target holds a previous export, and `overwrite` was not given."""


def write_atomically(directory, overwrite, write):
    """Run `write(folder)` in a new staging folder, then swap that folder into `directory`.

    Any failure or interrupt removes the staging folder, so `directory` stays as it was.
    Returns what `write` returned.
    """
    target = Path(directory).absolute()
    if target.parent.is_dir():
        remove_stale_staging(target)
    check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex}.partial"
    staging.mkdir()
    try:
        (staging / OWNER_FILE).write_text(json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}))
        content = staging / CONTENT_DIR
        content.mkdir()
        with interrupts.remembered_interrupts() as check_interrupt:
            result = write(content)
            check_interrupt()
            check_target(target, overwrite)  # the target may have changed during a long export
            _swap_into_place(content, target, staging / PREVIOUS_DIR)
            check_interrupt()
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after a swap it holds the previous export
    return result


def check_target(target, overwrite):
    """Refuse a target that is a file, holds anything but a previous export, or (without overwrite) is one."""
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory.")
    if not target.is_dir():
        return
    names = sorted(p.name for p in target.iterdir())
    if not names:
        return
    if model_card.read_card(target) is None or not set(names) <= set(ARTEFACT_NAMES):
        raise checks.ArgumentError("directory", f"directory={str(target)!r} holds files an export did not write ({names[:6]}); export "
                         "never replaces them, not even with overwrite=True: choose a new or empty directory.")
    if not overwrite:
        raise ExportExistsError("directory", f"{target} holds a previous export", {"overwrite": True})


def remove_stale_staging(target):
    """Remove the staging folders of `target` whose export was killed (owner process gone, on this host)."""
    for staging in target.parent.glob(f".{glob.escape(target.name)}.*.partial"):
        try:
            owner = json.loads((staging / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or its owner has not written the marker yet
        if owner.get("host") != socket.gethostname() or _running(owner.get("pid")):
            continue
        previous = staging / PREVIOUS_DIR
        if previous.is_dir() and not target.exists():
            os.rename(previous, target)  # killed between the fallback's two renames: restore the previous export
        shutil.rmtree(staging, ignore_errors=True)


def _running(pid):
    if not isinstance(pid, int) or pid == os.getpid():
        return True  # an export of this very process (another thread) may still be writing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _swap_into_place(content, target, previous):
    """Make `content` the target; an existing target ends up at `content` (or at `previous` in the fallback)."""
    if not target.exists():
        os.rename(content, target)
        return
    try:
        _exchange(content, target)
    except OSError as error:
        if error.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise
        os.rename(target, previous)
        try:
            os.rename(content, target)
        except BaseException:
            os.rename(previous, target)
            raise


def _exchange(a, b):
    """Swap two paths in one step: Linux `renameat2(..., RENAME_EXCHANGE)`; OSError(ENOSYS) where it is missing."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_current_directory, rename_exchange = -100, 2
    if renameat2(at_current_directory, os.fsencode(a), at_current_directory, os.fsencode(b), rename_exchange):
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a), None, str(b))
