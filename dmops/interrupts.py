"""Ctrl-C in the ``dmops`` process: the first one interrupts; once a result is being committed, the command finishes.

:func:`install` (called by the ``dmops`` entry point) makes the first SIGINT raise KeyboardInterrupt
(DuckDB turns it into an interrupted query) and ignores later ones, so they cannot break the
clean-up the first one started. :func:`committed` is called just before the step that makes a
command's result durable and visible (the outbox run's rename, the ledger's COMMIT, the rename of
an ``--out`` file): from there a Ctrl-C is ignored and the command finishes, so what it says it
wrote is what it wrote. A program that uses dmops as a library keeps its own SIGINT handling: both
functions change nothing unless :func:`install` ran.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


def _first_interrupts(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def install() -> None:
    signal.signal(signal.SIGINT, _first_interrupts)


def committed() -> None:
    """The result is being made durable: a Ctrl-C from here on is ignored (a pending one is dropped)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is _first_interrupts:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
