"""``python -m dmops`` and the ``dmops`` console script.

The command-line module is imported here, inside the interruption guard, so a Ctrl-C while
Python is still loading DuckDB and friends ends with the same one line as one during a command.
"""

from __future__ import annotations

import signal
import sys


def run() -> None:
    try:
        from dmops.cli import main

        main()
    except KeyboardInterrupt:  # while loading, or outside any command: nothing was started
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stderr.write("interrupted: nothing was written\n")
        sys.exit(130)
    finally:  # the command has finished and said so: a Ctrl-C while Python shuts down changes nothing
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    run()
