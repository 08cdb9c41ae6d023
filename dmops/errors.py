"""The DmopsError family and the exit codes of SPEC §10."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any


class ExitCode(IntEnum):
    """Process exit codes (SPEC §10), named after their sysexits.h meaning."""

    OK = 0
    FAILURE = 1  # goal missed / generic failure
    USAGE = 2  # malformed option or argument
    DATAERR = 65  # bad input data
    NOINPUT = 66  # missing input file
    CANTCREAT = 73  # cannot create output
    IOERR = 74  # I/O error
    TEMPFAIL = 75  # temporary failure: locked, stopped
    CONFIG = 78  # bad configuration


@dataclass(frozen=True)
class Location:
    """Where a problem is: a file, and optionally a line and a dotted key."""

    file: Path | None = None
    line: int | None = None
    key: str | None = None

    def shown_file(self, root: Path | None = None) -> str | None:
        """The file as a user should read it: relative to ``root`` when it lies inside."""
        if self.file is None:
            return None
        if root is not None:
            try:
                # the folder is resolved, not the file itself: a link is shown where it is, not where it points
                return str((self.file.parent.resolve() / self.file.name).relative_to(root.resolve()))
            except ValueError:
                pass
        return str(self.file)

    def render(self, root: Path | None = None) -> str:
        parts: list[str] = []
        shown = self.shown_file(root)
        if shown is not None:
            parts.append(shown + (f":{self.line}" if self.line else ""))
        elif self.line:
            parts.append(f"line {self.line}")
        if self.key:
            parts.append(f"key '{self.key}'")
        return ", ".join(parts)


class DmopsError(Exception):
    """Base of every error dmops reports to a user."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = Location(Path(file) if file is not None else None, line, key)
        self.hint = hint

    def __str__(self) -> str:
        return self.render()

    def __reduce__(self) -> tuple[Any, ...]:  # survives a trip through a worker process
        location = self.location
        return (_rebuild, (type(self), self.message, location.file, location.line, location.key, self.hint))

    def render(self, root: Path | None = None) -> str:
        where = self.location.render(root)
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


def _rebuild(
    kind: type[DmopsError], message: str, file: Path | None, line: int | None, key: str | None, hint: str | None
) -> DmopsError:
    error = kind.__new__(kind)
    DmopsError.__init__(error, message, file=file, line=line, key=key, hint=hint)
    return error


class UsageError(DmopsError):
    """A malformed option or argument."""

    exit_code = ExitCode.USAGE


class DataError(DmopsError):
    """Input data that cannot be used as it is."""

    exit_code = ExitCode.DATAERR


class MissingInputError(DmopsError):
    """An input file that does not exist or cannot be read."""

    exit_code = ExitCode.NOINPUT


class OutputError(DmopsError):
    """An output that cannot be created."""

    exit_code = ExitCode.CANTCREAT


class IOFailure(DmopsError):
    """An I/O error while reading or writing."""

    exit_code = ExitCode.IOERR


class TemporaryFailure(DmopsError):
    """A condition that a later retry may clear: a lock held, a stop requested."""

    exit_code = ExitCode.TEMPFAIL


class ConfigError(DmopsError):
    """A workspace or campaign file that is not valid configuration."""

    exit_code = ExitCode.CONFIG


class ProblemsFound(DmopsError):
    """Several problems at once, as collected by a validation pass."""

    def __init__(self, problems: list[DmopsError]) -> None:
        first = problems[0]
        super().__init__(f"{len(problems)} problem(s) found; first: {first}")
        self.problems = problems
        self.exit_code = first.exit_code
