"""Files that appear whole or not at all: write aside, fsync, rename into place, fsync the folder.

A reader never sees a partial file, and after a power loss the file is either the old one or the
complete new one: the data is synced before the rename, and the folder after it, so the rename
itself survives too.
"""

from __future__ import annotations

import os
from pathlib import Path

from dmops.interrupts import committed


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (a rename into it, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def staging_path(path: Path) -> Path:
    """Where ``path`` is written before :func:`publish` renames it into place (hidden, per process)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def publish(staging: Path, final: Path) -> None:
    """Sync the finished ``staging`` file, rename it to ``final`` and sync the folder (OSError on failure).

    From the rename on, a Ctrl-C no longer stops the command (:func:`dmops.interrupts.committed`)."""
    fsync_file(staging)
    committed()
    os.replace(staging, final)
    fsync_dir(final.parent)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically; the staging file is removed on failure."""
    staging = staging_path(path)
    try:
        staging.write_text(text, encoding="utf-8")
        publish(staging, path)
    except BaseException:  # an OSError, or Ctrl-C: no staging file is left behind either way
        staging.unlink(missing_ok=True)
        raise
