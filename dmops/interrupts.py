"""Ctrl-C in the ``dmops`` process: the first one interrupts; once a result is being committed, the command finishes.

:func:`install` (called by the ``dmops`` entry point) makes the first SIGINT raise KeyboardInterrupt
(DuckDB turns it into an interrupted query) and ignores later ones, so they cannot break the
clean-up the first one started. :func:`committed` is called just before the step that makes a
command's result durable and visible (the outbox run's rename, the ledger's COMMIT, the rename of
an ``--out`` file): from there a Ctrl-C is ignored and the command finishes, so what it says it
wrote is what it wrote. A program that uses dmops as a library keeps its own SIGINT handling: both
functions change nothing unless :func:`install` ran.

A Ctrl-C that arrives while Python's import machinery runs one of its callbacks (a module lock's
weak-reference callback, say) cannot interrupt there: Python reports an exception raised in such a
callback as "ignored" and carries on. That interrupt is delivered again a moment later, in whatever
code runs next.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

_REDELIVER_AFTER = 0.005  # seconds


def _in_import_machinery(frame: FrameType | None) -> bool:
    return frame is not None and frame.f_code.co_filename.startswith("<frozen importlib")


def _redeliver() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def _first_interrupts(signum: int, frame: FrameType | None) -> None:
    if _in_import_machinery(frame):
        timer = threading.Timer(_REDELIVER_AFTER, _redeliver)
        timer.daemon = True
        timer.start()
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def install() -> None:
    signal.signal(signal.SIGINT, _first_interrupts)


def committed() -> None:
    """The result is being made durable: a Ctrl-C from here on is ignored (a pending one is dropped)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is _first_interrupts:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
