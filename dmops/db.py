"""DuckDB connections as dmops uses them."""

from __future__ import annotations

import duckdb

DEFAULT_MEMORY_LIMIT = "4GB"


def connect(database: str = ":memory:", *, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    """An in-process DuckDB connection with an explicit memory limit."""
    con = duckdb.connect(database)
    con.execute(f"SET memory_limit = '{memory_limit}'")  # a setting, not data: no parameter binding for SET
    con.execute("SET preserve_insertion_order = true")
    return con


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Forbid any further file or network access (campaign expressions run after this)."""
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def quote_ident(name: str) -> str:
    """A SQL identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'
