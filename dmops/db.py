"""DuckDB connections as dmops uses them."""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import duckdb

DEFAULT_MEMORY_LIMIT = "4GB"


class Queries(Protocol):
    """What code that only reads query results needs of a connection: ``execute(sql, params)``, whose result
    has ``description`` and ``fetchall()``. A DuckDB connection is one; so is :class:`dmops.spark.SparkQueries`."""

    def execute(self, query: str, parameters: dict[str, Any] | None = None, /) -> Any: ...


# No connection installs or loads an extension on its own: that would reach the network and write
# under $HOME (~/.duckdb/extensions) because a workspace file happened to name a function.
NO_EXTENSIONS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


@cache
def spill_directory() -> str:
    """Where an in-memory connection spills what does not fit in memory (contact rows: personal data).
    DuckDB's default is ``.tmp`` in the working directory, wherever the user happens to be; this is a folder
    of the system's temporary directory that only this user can enter — ``dmops-<uid>``, or, when that name
    is taken by anything else (another user's folder, a link), a new private folder."""
    shared = Path(tempfile.gettempdir()) / f"dmops-{os.getuid()}"
    try:
        shared.mkdir(mode=0o700, exist_ok=True)
        info = shared.lstat()
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700:
            return str(shared)
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="dmops-")  # 0700


def connect(database: str = ":memory:", *, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    """An in-process DuckDB connection with an explicit memory limit, no extension autoloading, and (in
    memory) its spill files in :func:`spill_directory`."""
    con = duckdb.connect(database, config=dict(NO_EXTENSIONS))
    if database == ":memory:":
        con.execute("SET temp_directory = $d", {"d": spill_directory()})
    con.execute(f"SET memory_limit = '{memory_limit}'")  # a setting, not data: no parameter binding for SET
    con.execute("SET preserve_insertion_order = true")
    return con


def lock_down(
    con: duckdb.DuckDBPyConnection, *, allowed_paths: Sequence[str] = (), allowed_directories: Sequence[str] = ()
) -> None:
    """Forbid any further file or network access but to the given outputs; no setting can undo it.

    Campaign expressions run only after this.
    """
    if allowed_paths:
        con.execute("SET allowed_paths = $p", {"p": list(allowed_paths)})
    if allowed_directories:
        con.execute("SET allowed_directories = $d", {"d": [d.rstrip("/") + "/" for d in allowed_directories]})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def quote_literal(text: str) -> str:
    """``text`` as a SQL string literal: the one way dmops pastes text into SQL it generates."""
    return "'" + text.replace("'", "''") + "'"


def quote_list(values: Iterable[str]) -> str:
    """A parenthesised list of SQL string literals, for ``x IN (…)`` over constants."""
    return "(" + ", ".join(quote_literal(v) for v in values) + ")"


def quote_ident(name: str) -> str:
    """A SQL identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def bound(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """The named parameters ``sql`` uses (DuckDB refuses unused ones)."""
    return {name: value for name, value in params.items() if re.search(rf"\${re.escape(name)}\b", sql)}


def execute_script(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> None:
    """Run a named query of several statements (each ending with ``;`` at a line's end), each with the
    parameters it uses: DuckDB binds parameters in one statement at a time."""
    for statement in re.split(r";[ \t]*\n", sql):
        if statement.strip() and not all(
            line.strip().startswith("--") or not line.strip() for line in statement.splitlines()
        ):
            con.execute(statement, bound(statement, params))
