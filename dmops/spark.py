"""dmops's SQL run on Apache Spark (SPEC §13): the statements DuckDB runs, carried over by SQLGlot.

The set work is written once, in DuckDB's dialect (the named queries of :mod:`dmops.sql` and the SQL
built per campaign). :class:`SparkRunner` runs such a statement on a SparkSession, in UTC: SQLGlot
parses it as DuckDB's and writes it as Spark's, with the idioms of :func:`dmops.dialect.spark_idioms`
rewritten, and

- a ``$name`` input is written in as a literal of its value (a naive datetime as a ``TIMESTAMP_NTZ``: dmops's
  instants are naive UTC on both engines);
- ``CREATE [OR REPLACE] TEMP TABLE t AS …`` computes the query once and keeps it as the temporary view
  ``t`` (checkpointed, so that every later statement reads the result instead of computing it again), and
  ``DROP TABLE``/``DROP VIEW`` drops such a view.

PySpark is optional (``pip install 'dmops[spark]'``); nothing here imports it at module level.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import sqlglot
from sqlglot import exp

from dmops.db import quote_ident, quote_literal
from dmops.dialect import spark_idioms
from dmops.errors import ConfigError

if TYPE_CHECKING:
    from dmops.workspace import SparkEngine, Workspace


def _literal(value: Any) -> exp.Expr:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError("dmops passes instants as naive UTC datetimes")
        return exp.cast(
            exp.Literal.string(value.isoformat(sep=" ")), exp.DataType.build("TIMESTAMP_NTZ", dialect="spark")
        )
    if isinstance(value, date):
        return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.build("DATE"))
    if isinstance(value, list | tuple):
        return exp.Array(expressions=[_literal(v) for v in value])
    return exp.convert(value)


def to_spark(statement: exp.Expr, params: dict[str, Any]) -> str:
    """One parsed DuckDB statement, its ``$name`` inputs written in, as Spark SQL."""

    def inputs(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Placeholder) and node.name:
            if node.name not in params:
                raise KeyError(f"no value for ${node.name}")
            return _literal(params[node.name])
        return node

    return spark_idioms(statement.transform(inputs)).sql(dialect="spark")


class SparkRunner:
    """Runs DuckDB-dialect statements on ``session`` (a ``pyspark.sql.SparkSession``), and hands rows between
    DuckDB and Spark through Parquet files in ``folder`` (a folder every executor reads)."""

    def __init__(self, session: Any, folder: Path) -> None:
        self.session = session
        self.folder = folder
        session.conf.set("spark.sql.session.timeZone", "UTC")  # naive instants are UTC (epoch_us)

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        """Run every statement of ``sql``; the DataFrame of the last (None for a table it created or dropped)."""
        result = None
        for statement in sqlglot.parse(sql, read="duckdb"):
            if statement is not None:
                result = self._one(statement, params or {})
        return result

    def fetchall(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        frame = self.execute(sql, params)
        return [tuple(row) for row in frame.collect()]

    def _one(self, statement: exp.Expr, params: dict[str, Any]) -> Any:
        if isinstance(statement, exp.Create) and statement.kind == "TABLE" and statement.expression is not None:
            frame = self.session.sql(to_spark(statement.expression, params)).localCheckpoint()
            frame.createOrReplaceTempView(statement.this.name)
            return None
        if isinstance(statement, exp.Drop) and statement.kind in ("TABLE", "VIEW"):
            self.session.catalog.dropTempView(statement.this.name)
            return None
        return self.session.sql(to_spark(statement, params))

    def share(self, con: duckdb.DuckDBPyConnection, name: str, sql: str) -> None:
        """Hand the rows of ``sql`` (DuckDB) to Spark as the temporary view ``name``."""
        path = self.folder / f"in-{name}.parquet"  # Spark skips files whose names start with _ or .
        con.execute(f"COPY ({sql}) TO {quote_literal(str(path))} (FORMAT parquet)")
        self.session.read.parquet(str(path)).createOrReplaceTempView(name)

    def share_file(self, con: duckdb.DuckDBPyConnection, name: str, sql: str, path: Path) -> None:
        """Hand the rows of ``sql`` (DuckDB), which are columns of the Parquet file ``path``, to Spark as the
        temporary view ``name``, read from ``path`` in place. Spark is told the columns and their types (those
        of an empty copy of ``sql``): it reads only those, and never works out the types of the file's other
        columns, some of which it may not read (an INTERVAL)."""
        probe = self.folder / f"in-{name}-columns.parquet"
        con.execute(f"COPY ({sql} LIMIT 0) TO {quote_literal(str(probe))} (FORMAT parquet)")
        schema = self.session.read.parquet(str(probe)).schema
        self.session.read.schema(schema).parquet(str(path)).createOrReplaceTempView(name)

    def take(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        """Bring Spark's view ``name`` back into DuckDB as the temporary table ``name``."""
        path = self.folder / f"out-{name}"
        self.session.table(name).write.mode("overwrite").parquet(str(path))
        glob = quote_literal(str(path / "*.parquet"))
        con.execute(f"CREATE OR REPLACE TEMP TABLE {quote_ident(name)} AS SELECT * FROM read_parquet({glob})")


def session(engine: SparkEngine) -> Any:
    """The SparkSession of ``engine: {kind: spark, master, conf}``: an existing one in this process is reused
    (its settings kept), else one is started. Its web UI is off unless ``conf`` turns it on; the session's
    time zone is UTC, as dmops's instants are."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(
            "engine: spark needs PySpark", key="engine", hint="pip install 'dmops[spark]' (and Java 17 or later)"
        ) from None
    builder = SparkSession.builder.master(engine.master).appName("dmops").config("spark.ui.enabled", "false")
    for key, value in engine.conf.items():
        builder = builder.config(key, str(value).lower() if isinstance(value, bool) else str(value))
    return builder.getOrCreate()


class Collected:
    """A Spark query's rows, collected to the driver, read as a DuckDB result is: ``description``, ``fetchall``,
    ``fetchone``, ``fetchmany``; a statement that made a table has none."""

    def __init__(self, frame: Any) -> None:
        from pyspark.sql.functions import col
        from pyspark.sql.types import TimestampType

        self._at = 0
        if frame is None:
            self.description: list[tuple[str]] = []
            self._rows: list[tuple[Any, ...]] = []
            return

        # PySpark gives a TIMESTAMP as a datetime in the Python process's local zone; as TIMESTAMP_NTZ it is
        # the time as Spark computed it (the session is in UTC), as DuckDB gives a naive TIMESTAMP.
        frame = frame.select(
            *[
                col(f"`{f.name}`").cast("timestamp_ntz")
                if isinstance(f.dataType, TimestampType)
                else col(f"`{f.name}`")
                for f in frame.schema.fields
            ]
        )
        self.description = [(name,) for name in frame.columns]
        self._rows = [tuple(row) for row in frame.collect()]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows = self._rows[self._at :]
        self._at = len(self._rows)
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self.fetchmany(1)
        return rows[0] if rows else None

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]:
        rows = self._rows[self._at : self._at + size]
        self._at += len(rows)
        return rows


class SparkQueries:
    """The queries of code written against a DuckDB connection (``con.execute(sql, params).fetchall()``), run on
    Spark by ``runner``; the small results come back to the driver."""

    def __init__(self, runner: SparkRunner) -> None:
        self.runner = runner

    def execute(self, query: str, parameters: dict[str, Any] | None = None) -> Collected:
        return Collected(self.runner.execute(query, parameters))


def runner_for(ws: Workspace, folder: Path | None) -> SparkRunner | None:
    """The runner of ``engine: spark`` (a session started or reused), handing rows over in ``folder`` (from
    :func:`dmops.durable.hand_over`); None with DuckDB."""
    engine = ws.config.spark
    if engine is None or folder is None:
        return None
    return SparkRunner(session(engine), folder)
