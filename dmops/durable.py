"""Files that appear whole or not at all: write aside, fsync, rename into place, fsync the folder.

A reader never sees a partial file, and after a power loss the file is either the old one or the
complete new one: the data is synced before the rename, and the folder after it, so the rename
itself survives too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from dmops.errors import OutputError
from dmops.interrupts import committed


def refuse_links(path: Path, root: Path) -> None:
    """OutputError (73) when ``path``, or a folder between ``root`` and it, is a symbolic link.

    dmops never writes through a link: in a workspace someone else wrote, a link at the run lock,
    the ledger or an outbox folder would send its writes (personal data included) elsewhere.
    """
    current = path
    while True:
        if current.is_symlink():
            raise OutputError(
                "is a symbolic link; dmops does not write through links",
                file=current,
                hint="replace the link with a real file or folder inside the workspace",
            )
        if current == root or current.parent == current:
            return
        current = current.parent


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


def _in_the_way(staging: Path) -> OutputError:
    return OutputError("a file or link is in the way of the staging file", file=staging, hint="remove it and run again")


def free_staging_path(path: Path) -> Path:
    """:func:`staging_path`, refused (73) when something, a planted link included, is already there.

    For a writer that creates the staging file itself by name (DuckDB's COPY), which would follow a link.
    """
    staging = staging_path(path)
    if os.path.lexists(staging):
        raise _in_the_way(staging)
    return staging


def _open_staging(staging: Path) -> int:
    """A new staging file, created by this call (never an existing file, never through a link), owner-only."""
    try:
        return os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise _in_the_way(staging) from None


def _create_staging(path: Path) -> tuple[Path, int]:
    """The staging file of ``path``, created by this call, and its descriptor. Refused (73) when something is
    already there, which is left alone; removed again when a Ctrl-C arrives as it is created."""
    staging = free_staging_path(path)  # the name is this process's: anything there now was not made here
    try:
        return staging, _open_staging(staging)
    except OutputError:
        raise  # put there since the check: not this call's to remove
    except BaseException:  # Ctrl-C delivered as the open returned: the file may exist already
        staging.unlink(missing_ok=True)
        raise


def publish(staging: Path, final: Path, *, result: bool = True) -> None:
    """Sync the finished ``staging`` file, rename it to ``final`` and sync the folder (OSError on failure).

    ``result``: the file is the command's result, so from the rename on a Ctrl-C no longer stops the
    command (:func:`dmops.interrupts.committed`); a cache written on the way (the contacts snapshot) is not."""
    fsync_file(staging)
    if result:
        committed()
    os.replace(staging, final)
    fsync_dir(final.parent)


def write_atomic(path: Path, text: str | bytes, *, result: bool = True) -> None:
    """Replace ``path`` with ``text`` (UTF-8), or with bytes as they are, atomically; the staging file is
    removed on failure.

    The staging file is created new (never through a link that is already there), and the rename
    replaces a link at ``path`` itself rather than writing where it points.
    """
    staging, fd = _create_staging(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8") if isinstance(text, str) else text)
        publish(staging, path, result=result)
    except BaseException:  # an OSError, or Ctrl-C: no staging file is left behind either way
        staging.unlink(missing_ok=True)
        raise


def write_new(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Create ``path`` holding ``data``, whole or not at all, never replacing a file already there.

    The data is written aside and hard-linked into place, so a reader never sees part of it and a file
    another process created meanwhile wins (FileExistsError). ``sync``: the file and its folder are
    synced too, so the new file survives a power loss.
    """
    staging, fd = _create_staging(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        try:
            os.link(staging, path)
        except FileExistsError:  # name the file that is there, not the staging file
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        if sync:
            fsync_dir(path.parent)
    finally:
        staging.unlink(missing_ok=True)


def remove_stale_hand_overs(parent: Path) -> list[Path]:
    """Remove the hand-over folders in ``parent`` whose command's process is gone (killed); those removed."""
    removed = []
    for folder in sorted(parent.glob("*-*-*")) if parent.is_dir() else []:
        pid = folder.name.split("-")[-2]
        if pid.isdigit() and not process_alive(int(pid)) and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` runs (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's: alive
    return True


HAND_OVERS = "spark"  # under state_dir: where DuckDB and Spark's executors hand rows over


def hand_over_folder(state_dir: Path, command: str) -> Path:
    """A new private folder under ``state_dir/spark`` where DuckDB and Spark's executors hand rows over; the
    folders of killed commands (their process gone) are removed first: they hold contact data."""
    parent = state_dir / HAND_OVERS
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    remove_stale_hand_overs(parent)
    folder = parent / f"{command}-{os.getpid()}-{uuid.uuid4().hex}"
    folder.mkdir(mode=0o700)
    return folder


def remove_hand_over(folder: Path) -> None:
    """Remove a command's hand-over folder, and ``state_dir/spark`` when it was the last one there."""
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()


@contextlib.contextmanager
def hand_over(state_dir: Path, command: str, *, spark: bool) -> Iterator[Path | None]:
    """With ``spark``, a new hand-over folder for ``command``, removed when the block ends however it ends;
    else None."""
    if not spark:
        yield None
        return
    folder = hand_over_folder(state_dir, command)
    try:
        yield folder
    finally:
        remove_hand_over(folder)
