"""The set work's SQL for each engine (SPEC §13): DuckDB, embedded, and Apache Spark.

dmops's SQL is written once, in DuckDB's dialect. :func:`to_engine` turns it into another engine's with
SQLGlot, after replacing the few idioms SQLGlot cannot carry over with what that engine spells them as;
each such gap is one function here, tested on both engines (``tests/test_dialect.py``).

Filled so far:

- the hash split of SPEC §4, :func:`hash15_sql`: the first 15 hex digits of an MD5 as an integer.
"""

from __future__ import annotations

from typing import Literal

Engine = Literal["duckdb", "spark"]
ENGINES: tuple[Engine, ...] = ("duckdb", "spark")


def hash15_sql(key: str, engine: Engine = "duckdb") -> str:
    """SQL: ``int(first 15 hex digits of md5(key), 16)`` (SPEC §4) over the SQL expression ``key``. Fifteen
    hex digits are 60 bits: a signed BIGINT holds them on every engine."""
    digits = f"substr(md5({key}), 1, 15)"
    if engine == "duckdb":
        return f"CAST('0x' || {digits} AS UBIGINT)"
    if engine == "spark":
        return f"CAST(conv({digits}, 16, 10) AS BIGINT)"
    raise ValueError(f"unknown engine {engine!r}")


def to_engine(sql: str, engine: Engine) -> str:
    """``sql`` (DuckDB's dialect, no dmops idiom left in it) in ``engine``'s dialect."""
    if engine == "duckdb":
        return sql
    import sqlglot

    return ";\n".join(sqlglot.transpile(sql, read="duckdb", write=engine))
