"""One send at a time per workspace, and the emergency stop (SPEC §7).

The run lock is an OS file lock (``flock``) on ``<state_dir>/send.lock``: it
dies with its process, so a lock left by a killed run never blocks the next.
The file holds the holder's pid, for the message a second run prints.

The emergency stop is a ``STOP`` file in the workspace root.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from dmops.durable import refuse_links, write_atomic
from dmops.errors import IOFailure, OutputError, TemporaryFailure
from dmops.workspace import Workspace

LOCK_FILE = "send.lock"
DELIVER_LOCK_FILE = "deliver.lock"  # one dmops deliver at a time; a send may run beside it
STOP_FILE = "STOP"


class RunLock:
    """``with RunLock(state_dir):`` — or TemporaryFailure (75) naming the pid that holds it."""

    def __init__(self, state_dir: Path, name: str = LOCK_FILE, what: str = "dmops send") -> None:
        self.path = state_dir / name
        self.what = what
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            refuse_links(self.path, self.path.parent.parent)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise OutputError(f"cannot create the run lock: {exc.strerror}", file=self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise TemporaryFailure(
                f"another {self.what} is running in this workspace (pid {holder})",
                file=self.path,
                hint="wait for it to finish; a lock left by a killed process is released automatically",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self.fd = fd
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def stop_file(ws: Workspace) -> Path:
    return ws.root / STOP_FILE


def stop_reason(ws: Workspace) -> str | None:
    """The reason written in the STOP file ("" when none was given), or None when there is no STOP."""
    path = stop_file(ws)
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IOFailure(f"cannot read the STOP file: {exc.strerror}", file=path) from None


def check_stop(ws: Workspace) -> None:
    """TemporaryFailure (75) when an emergency stop is in force."""
    reason = stop_reason(ws)
    if reason is not None:
        raise TemporaryFailure(
            "sending is stopped" + (f": {reason}" if reason else ""),
            file=stop_file(ws),
            hint="`dmops resume` removes the STOP file",
        )


def request_stop(ws: Workspace, reason: str) -> Path:
    """Write the STOP file (atomically); its path."""
    path = stop_file(ws)
    try:
        write_atomic(path, reason.strip() + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write the STOP file: {exc.strerror}", file=path) from None
    return path


def resume(ws: Workspace) -> bool:
    """Remove the STOP file; whether there was one."""
    try:
        stop_file(ws).unlink()
    except FileNotFoundError:
        return False
    return True
