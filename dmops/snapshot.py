"""The checked contacts snapshot: the result of reading and checking the contacts file, kept for the next
command (SPEC §3 checks, paid once per change of the file).

After ``dmops validate`` or ``dmops send`` has read a contacts file and every check passed, the
``contacts`` table (every column, typed, with the normalised addresses, zones and consent flags) is
written to ``<state_dir>/snapshots/contacts-<key>.parquet`` and a small ``.json`` beside it (the headers,
the column types, the encoding read). The key is a SHA-256 of the file's bytes and of everything that
shapes the table: the ``contacts:`` mapping, the consent columns and their yes-values, the phone region,
and the versions of dmops, DuckDB, phonenumbers, email-validator and the time zone data. A command whose
key matches reads the snapshot instead of the file; any other key is a miss, so a snapshot is never
stale. ``plan``, ``lint`` and ``report`` read a snapshot but never write one (they write nothing). Both
files are written aside and renamed into place, the ``.json`` last: a command killed while writing leaves
no snapshot that a later command would use. Only the newest snapshot is kept, once no command reads an older one.

A command reads the snapshot in place: ``contacts`` is then a view of the Parquet file (the columns it
keeps), not a copy — a copy of 10M contacts costs seconds and gigabytes. The command holds a shared lock on
the file until it ends (:func:`release`), and :func:`save` removes an older snapshot only when it can lock it exclusively: a
newer snapshot written meanwhile never pulls the file from under a command still reading it (the next
``validate`` or ``send`` removes it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb

from dmops import __version__
from dmops.db import quote_ident, quote_literal
from dmops.durable import free_staging_path, process_alive, publish, refuse_links, write_atomic
from dmops.errors import DmopsError
from dmops.timeutil import accepted_timezones
from dmops.workspace import Workspace

FORMAT = "1"
FOLDER = "snapshots"
_LIBRARIES = ("duckdb", "phonenumbers", "email-validator", "tzdata")
_MODULES = ("contacts.py", "addresses.py", "tabular.py", "snapshot.py", "workspace.py")


@dataclass(frozen=True)
class Snapshot:
    """What a snapshot remembers besides the table."""

    headers: list[str]  # every header of the file, mapped names in place
    types: dict[str, str]  # column -> DuckDB type, in file order
    encoding: str | None
    detected: bool
    file: Path | None = None  # the Parquet file ``contacts`` reads in place (not saved)

    def saved(self) -> dict[str, Any]:
        return {"headers": self.headers, "types": self.types, "encoding": self.encoding, "detected": self.detected}


_READING: list[int] = []  # descriptors of the snapshots this command reads, each with a shared lock


def _versions() -> dict[str, str]:
    found = {"dmops": __version__, "format": FORMAT}
    for name in _LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = ""
    return found


@cache
def _code() -> str:
    """A digest of the modules that read and check contacts: a change to them is a change of the result,
    with or without a new version number."""
    digest = hashlib.sha256()
    for name in _MODULES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()


def stamp(ws: Workspace) -> tuple[int, int] | None:
    """The contacts file's size and modification time: :func:`save` writes only when they did not change
    while the file was read (else the key, hashed before, would name other content)."""
    try:
        found = ws.contacts_path.stat()
    except OSError:
        return None
    return found.st_size, found.st_mtime_ns


def key(ws: Workspace) -> str | None:
    """The snapshot key of the workspace's contacts file as it is now, or None when it cannot be read (the
    full read then says why)."""
    config = ws.config
    settings: dict[str, Any] = {
        "source": config.contacts_source.model_dump(),
        "consent": {ch: [config.consent_column(ch), list(config.consent_true_values(ch))] for ch in config.consent},
        "phone_region": config.phone_region,
        "versions": _versions(),
        "zones": sorted(accepted_timezones()),  # the system's zone data may differ from the tzdata wheel's
        "code": _code(),
    }
    try:
        with ws.contacts_path.open("rb") as handle:
            settings["file"] = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None
    return hashlib.sha256(json.dumps(settings, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def drop_all(ws: Workspace) -> int:
    """Delete every snapshot (``dmops forget``: they copy the contact list); how many files there were. A
    command still reading one (plan, lint, report and validate take no run lock) finishes first."""
    folder = ws.state_dir / FOLDER
    if not folder.is_dir():
        return 0
    release()  # this command's own hold (forget may have read the contacts): waiting on it would never end
    held = []
    try:
        for table in folder.glob("contacts-*.parquet"):
            with contextlib.suppress(OSError):
                fd = os.open(table, os.O_RDONLY | os.O_NOFOLLOW)
                held.append(fd)
                fcntl.flock(fd, fcntl.LOCK_EX)  # waits for its readers
        count = sum(1 for p in folder.iterdir() if p.is_file())
        shutil.rmtree(folder)
    finally:
        for fd in held:
            os.close(fd)
    return count


IN_PLACE = "_dm_contacts_in_place"  # a one-row table naming the snapshot file the ``contacts`` view reads


def _paths(ws: Workspace, snapshot_key: str) -> tuple[Path, Path]:
    folder = ws.state_dir / FOLDER
    return folder / f"contacts-{snapshot_key}.parquet", folder / f"contacts-{snapshot_key}.json"


def load(
    con: duckdb.DuckDBPyConnection,
    ws: Workspace,
    snapshot_key: str,
    keep: Callable[[dict[str, str]], list[str]] | None = None,
) -> Snapshot | None:
    """Create ``contacts`` on ``con`` from the snapshot for ``snapshot_key``; None when there is none.
    ``keep(types)``: the columns to read (the rest stay in the file: Parquet reads only what is asked)."""
    table, meta = _paths(ws, snapshot_key)
    try:
        refuse_links(meta, ws.root)
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if info.get("key") != snapshot_key or not table.is_file() or table.is_symlink():
        return None
    columns = "*" if keep is None else ", ".join(quote_ident(name) for name in keep(info["types"]))
    try:
        fd = os.open(table, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # held until the command ends (release): save() leaves the file alone
        if table.stat().st_ino != os.fstat(fd).st_ino:
            raise OSError("replaced while it was opened")
        con.execute(  # a view: Parquet reads the columns each query asks for; the path is a literal (no
            # parameters in a view), the lock keeps the file there
            f"CREATE OR REPLACE TEMP VIEW contacts AS SELECT {columns} FROM read_parquet({quote_literal(str(table))})"
        )
        con.execute("SELECT count(*) FROM contacts").fetchall()  # the footer is read and checked
        con.execute(  # which file the view reads (dmops.contacts.read_in_place)
            f"CREATE OR REPLACE TEMP TABLE {IN_PLACE} AS SELECT CAST($file AS VARCHAR) AS file", {"file": str(table)}
        )
    except duckdb.InterruptException:
        os.close(fd)
        raise  # Ctrl-C: the command ends, as anywhere else
    except (duckdb.Error, OSError):
        os.close(fd)
        with contextlib.suppress(duckdb.Error):
            con.execute(f"DROP VIEW IF EXISTS contacts; DROP TABLE IF EXISTS {IN_PLACE}")
        return None  # unreadable: the full read takes over and writes a new one
    _READING.append(fd)
    return Snapshot(info["headers"], info["types"], info["encoding"], info["detected"], file=table)


def release() -> None:
    """Let go of the snapshots this process read (the end of a command: its connections are closed)."""
    while _READING:
        os.close(_READING.pop())


def save(con: duckdb.DuckDBPyConnection, ws: Workspace, snapshot_key: str, snapshot: Snapshot) -> None:
    """Write ``contacts`` as the snapshot for ``snapshot_key`` and remove older ones. A failure to write
    is not an error (the next command reads the file again)."""
    table, meta = _paths(ws, snapshot_key)
    folder = table.parent
    try:
        refuse_links(folder, ws.root)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in folder.glob(".contacts-*.tmp"):  # left by a killed command: a copy of the contacts
            if not _alive(stale):
                stale.unlink(missing_ok=True)
        staging = free_staging_path(table)
        try:
            con.execute("COPY contacts TO $p (FORMAT parquet)", {"p": str(staging)})
            os.chmod(staging, 0o600)
            publish(staging, table, result=False)  # a cache: a Ctrl-C still ends the command
        finally:
            staging.unlink(missing_ok=True)
        info = {"key": snapshot_key, **snapshot.saved()}
        write_atomic(meta, json.dumps(info, ensure_ascii=False), result=False)
    except duckdb.InterruptException:
        raise  # Ctrl-C: the command ends, as anywhere else
    except (OSError, duckdb.Error, DmopsError):  # a staging file in the way included
        return
    prune(ws, snapshot_key)


def prune(ws: Workspace, snapshot_key: str) -> None:
    """Remove every snapshot but the one for ``snapshot_key``, except those a running command reads."""
    table, meta = _paths(ws, snapshot_key)
    folder = table.parent
    for old in folder.glob("contacts-*.parquet"):
        if old.name != table.name and _unlink_unread(old):
            old.with_suffix(".json").unlink(missing_ok=True)
    for old in folder.glob("contacts-*.json"):  # one whose table was removed before it
        if old.name != meta.name and not old.with_suffix(".parquet").exists():
            old.unlink(missing_ok=True)


def _unlink_unread(path: Path) -> bool:
    """Remove the snapshot ``path`` unless a command holds it (:func:`load`); whether it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # read by a running command: a later save removes it
            return False
        # a reader waiting for its lock then finds the name gone: it reads the contacts file instead
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def _alive(staging: Path) -> bool:
    """Whether the process that names ``staging`` (``.<name>.<pid>.tmp``) still runs."""
    try:
        pid = int(staging.name.rsplit(".", 2)[-2])
    except ValueError:
        return False
    return process_alive(pid) and pid != os.getpid()  # our own pid: a file a killed process with it left
