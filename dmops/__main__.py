"""``python -m dmops`` and the ``dmops`` console script.

While Python loads the command-line module (DuckDB and friends), a Ctrl-C is only noted, and
acted on once loading is done: an interrupt inside a C extension's initialisation aborts the
process instead of raising. It then ends with the same one line as one during a command.

What a Ctrl-C does once loaded is :mod:`dmops.interrupts`'s. A command that ends
interrupted exits 130 with :func:`os._exit` once its output is flushed: CPython would otherwise
end some interrupted runs by re-raising SIGINT on itself (exit status -2, not 130).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

INTERRUPTED = 130  # 128 + SIGINT (SPEC §10)


def _leave_interrupted() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(INTERRUPTED)


def run() -> None:
    noted: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    from dmops import interrupts
    from dmops.cli import main

    interrupts.install()
    try:
        if noted:
            raise KeyboardInterrupt
        main()
    except KeyboardInterrupt:  # while loading, or outside any command: nothing was started
        sys.stderr.write("interrupted: nothing was written\n")
        _leave_interrupted()
    except SystemExit as done:
        if done.code == INTERRUPTED:  # the command said what it had written
            _leave_interrupted()
        raise
    finally:  # the command has finished and said so: a Ctrl-C while Python shuts down changes nothing
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    run()
