"""Atomic export: write everything into a hidden staging sibling of the target, then move it into place.

A failure at any point removes the staging directory, so the target stays as it was.
"""
import os
import shutil
import uuid
from pathlib import Path


def write_atomically(directory, overwrite, write):
    """Run `write(staging)` in a new sibling of `directory`, then move the staging directory into place.

    Any failure removes the staging directory, so `directory` stays as it was.
    """
    target = Path(directory)
    _check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex}.partial"
    staging.mkdir()
    try:
        result = write(staging)
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _check_target(target, overwrite):
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory.")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty; pass overwrite=True to replace it.")


def _move_into_place(staging, target):
    """Rename `staging` to `target`, putting an existing `target` aside until the rename succeeded."""
    if not target.exists():
        os.rename(staging, target)
        return
    old = staging.with_name(staging.name + "-old")
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old)
