"""Crash-safe writing of outbox runs (SPEC §7).

Layout: ``<outbox_dir>/<campaign>/<occurrence>/<run>/messages.jsonl`` and
``manifest.json``. A run is built in a hidden folder ``.<run>.tmp``; when
both files are written and synced, the folder is renamed to ``<run>`` and the
parent folder synced. So a delivery system that lists the occurrence folder
sees a run only when it is complete, and every manifest it reads is true.
Run names are ``run-0001``, ``run-0002``, … per occurrence.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmops.durable import fsync_dir, refuse_links
from dmops.errors import IOFailure, OutputError
from dmops.interrupts import committed

MESSAGES = "messages.jsonl"
MANIFEST = "manifest.json"
_RUN = re.compile(r"^run-(\d{4,})\Z")
_TMP = re.compile(r"^\.run-(\d{4,})\.tmp\Z")
# A run ``dmops gc`` deleted: renamed out of view, emptied, and kept as an empty folder so that its number
# is never given to a later run (the ledger still records a run by that name).
_GONE = re.compile(r"^\.run-(\d{4,})\.gone\Z")


def message_id(campaign_id: str, occurrence: str, contact_id: str) -> str:
    """Deterministic id of a message: the first 32 hex digits of sha256(campaign US occurrence US contact)."""
    return hashlib.sha256(f"{campaign_id}\x1f{occurrence}\x1f{contact_id}".encode()).hexdigest()[:32]


def message_id_sql(campaign_id: str, occurrence: str, contact_id: str) -> str:
    """:func:`message_id` as a DuckDB expression over three SQL expressions (the one other spelling of it)."""
    return f"substr(sha256({campaign_id} || chr(31) || {occurrence} || chr(31) || {contact_id}), 1, 32)"


def encode(message: dict[str, Any]) -> bytes:
    """One message as its outbox line: compact JSON, UTF-8, newline-terminated."""
    return (json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def occurrence_dir(outbox_dir: Path, campaign_id: str, occurrence: str) -> Path:
    return outbox_dir / campaign_id / occurrence


def occurrence_folders(outbox_dir: Path) -> Iterator[Path]:
    """Every occurrence folder (``<campaign>/<occurrence>``) of the outbox, in order; links are not followed."""
    if not outbox_dir.is_dir():
        return
    for campaign in sorted(p for p in outbox_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        yield from sorted(p for p in campaign.iterdir() if p.is_dir() and not p.is_symlink())


def complete_runs(folder: Path) -> list[Path]:
    """The complete run folders of an occurrence, in order."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and _RUN.match(p.name)), key=lambda p: p.name)


def remove_incomplete(folder: Path) -> None:
    """Delete hidden run folders a killed run left behind (never visible to a consumer)."""
    if folder.is_dir():
        for path in folder.iterdir():
            if _TMP.match(path.name):
                shutil.rmtree(path, ignore_errors=True)


def retire(run: Path) -> None:
    """Delete a complete run: renamed out of view first (atomic), then emptied; the empty hidden folder
    keeps its number taken. A kill between the two leaves a hidden folder :func:`purge_retired` empties."""
    gone = run.with_name(f".{run.name}.gone")
    os.rename(run, gone)
    fsync_dir(run.parent)
    purge_retired(run.parent)


def purge_retired(folder: Path) -> None:
    """Empty the retired runs of an occurrence folder (what a killed :func:`retire` left)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if _GONE.match(path.name) and path.is_dir() and not path.is_symlink():
            for inside in path.iterdir():
                if inside.is_dir() and not inside.is_symlink():
                    shutil.rmtree(inside)
                else:
                    inside.unlink()
            fsync_dir(path)


def _next_run(folder: Path) -> str:
    numbers = [0]
    if folder.is_dir():
        for path in folder.iterdir():
            match = _RUN.match(path.name) or _TMP.match(path.name) or _GONE.match(path.name)
            if match:
                numbers.append(int(match.group(1)))
    return f"run-{max(numbers) + 1:04d}"


@dataclass
class RunWriter:
    """Writes one run: append messages, then :meth:`finish` makes it visible, or :meth:`abort` drops it.

    Hashing and writing happen on one background thread, in order, so they overlap with rendering;
    a write error surfaces at the next :meth:`write_lines` or at :meth:`finish`.
    """

    folder: Path  # the occurrence folder
    name: str
    tmp: Path
    count: int = 0
    _handle: Any = None
    _digest: Any = None
    _thread: ThreadPoolExecutor | None = None
    _pending: deque[Future[None]] = field(default_factory=deque)

    @property
    def sha256(self) -> str:
        return str(self._digest.hexdigest())

    @classmethod
    def start(cls, folder: Path, root: Path) -> RunWriter:
        """A new hidden run folder under ``folder``; no folder between ``root`` and it may be a link."""
        refuse_links(folder, root)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            name = _next_run(folder)
            tmp = folder / f".{name}.tmp"
            tmp.mkdir()
        except OSError as exc:
            raise OutputError(f"cannot create the outbox folder: {exc.strerror}", file=folder) from None
        writer = cls(folder=folder, name=name, tmp=tmp)
        writer._handle = (tmp / MESSAGES).open("wb")
        writer._digest = hashlib.sha256()
        writer._thread = ThreadPoolExecutor(1, thread_name_prefix="dmops-outbox")
        return writer

    def _append(self, lines: bytes) -> None:
        self._digest.update(lines)
        try:
            self._handle.write(lines)
        except OSError as exc:
            raise IOFailure(f"cannot write the outbox: {exc.strerror}", file=self.tmp / MESSAGES) from None

    def _wait(self, keep: int) -> None:
        while len(self._pending) > keep:
            self._pending.popleft().result()

    def write_lines(self, lines: bytes, count: int) -> None:
        """Append ``count`` encoded messages (see :func:`encode`)."""
        assert self._thread is not None
        self._wait(1)  # at most two blocks in flight
        self._pending.append(self._thread.submit(self._append, lines))
        self.count += count

    def _stop_thread(self) -> None:
        try:
            self._wait(0)
        finally:
            if self._thread is not None:
                self._thread.shutdown(wait=True, cancel_futures=True)
                self._thread = None

    def finish(self, manifest: dict[str, Any]) -> Path:
        """Sync, write the manifest, and rename the run into view; the visible run folder."""
        self._stop_thread()
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            body = {
                **manifest,
                "run": self.name,
                "file": MESSAGES,
                "count": self.count,
                "sha256": self._digest.hexdigest(),
            }
            write_manifest(self.tmp / MANIFEST, body)
            fsync_dir(self.tmp)
            final = self.folder / self.name
            committed()  # visible now, recorded next: a Ctrl-C no longer stops this send
            os.rename(self.tmp, final)
            fsync_dir(self.folder)
        except OSError as exc:
            raise IOFailure(f"cannot finish the outbox run: {exc.strerror}", file=self.tmp) from None
        return final

    def abort(self) -> None:
        """Drop the run: nothing of it becomes visible."""
        try:
            with contextlib.suppress(Exception):  # the error that made us abort is already on its way
                self._stop_thread()
            self._handle.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def write_manifest(path: Path, body: dict[str, Any]) -> None:
    """Write a run's manifest (sorted, indented JSON and a newline) to ``path`` and sync it."""
    with path.open("w", encoding="utf-8") as handle:
        json.dump(body, handle, ensure_ascii=False, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_run(run: Path) -> Iterator[dict[str, Any]]:
    """The messages of a complete run, after checking them against its manifest (count and sha256); the
    file is read once."""
    manifest = manifest_of(run)
    try:
        data = (run / MESSAGES).read_bytes()
    except OSError as exc:
        raise IOFailure(f"cannot read outbox run ({type(exc).__name__})", file=run) from None
    _check(run, manifest, hashlib.sha256(data).hexdigest(), data.count(b"\n"))
    for line in data.splitlines():
        yield json.loads(line)


CHUNK = 1 << 22  # how much of a messages file is read at a time when only its digest is needed


def verified_messages(run: Path) -> Path:
    """The messages file of a complete run, after checking it (read in chunks) against the manifest's count
    and sha256; IOFailure when it was changed."""
    manifest = manifest_of(run)
    digest = hashlib.sha256()
    lines = 0
    try:
        with (run / MESSAGES).open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                lines += chunk.count(b"\n")
    except OSError as exc:
        raise IOFailure(f"cannot read outbox run ({type(exc).__name__})", file=run) from None
    _check(run, manifest, digest.hexdigest(), lines)
    return run / MESSAGES


def _check(run: Path, manifest: dict[str, Any], sha256: str, lines: int) -> None:
    if sha256 != manifest["sha256"] or lines != manifest["count"]:
        raise IOFailure(
            "outbox run does not match its manifest", file=run, hint="the file was changed after dmops wrote it"
        )


def manifest_of(run: Path) -> dict[str, Any]:
    """A run's manifest, checked to be one dmops wrote (an object with a count and a sha256)."""
    try:
        manifest = json.loads((run / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IOFailure(f"cannot read outbox run ({type(exc).__name__})", file=run) from None
    if (
        not isinstance(manifest, dict)
        or not isinstance(manifest.get("count"), int)
        or not isinstance(manifest.get("sha256"), str)
    ):
        raise IOFailure(
            "outbox run has no valid manifest", file=run, hint="the manifest was changed after dmops wrote it"
        )
    return manifest
