"""The set work's SQL for each engine (SPEC §13): DuckDB, embedded, and Apache Spark.

dmops's SQL is written once, in DuckDB's dialect. :func:`to_engine` turns it into another engine's with
SQLGlot, after replacing the few idioms SQLGlot cannot carry over with what that engine spells them as;
each such gap is one function here, tested on both engines (``tests/test_dialect.py``).

Filled so far:

- the hash split of SPEC §4, :func:`hash15_sql`: the first 15 hex digits of an MD5 as an integer;
- a naive local time read in a time zone, :func:`local_to_utc_sql`, by SPEC §6's rule (a time in a DST
  gap moves forward by the gap, an ambiguous one takes its first occurrence): Spark's ``to_utc_timestamp``
  does that; DuckDB's ``timezone()`` takes an ambiguous time's second occurrence, which the length of the
  overlap it is in moves back (:func:`overlaps`, found by a join on the local date).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Literal
from zoneinfo import ZoneInfo

import duckdb

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


OVERLAPS = "_dm_overlaps"  # (d, local_from, local_to, shift): the overlaps of one zone, per local date


@cache
def overlaps(zone: str, first_year: int = 1970, last_year: int = 2100) -> tuple[tuple[datetime, datetime, int], ...]:
    """The local wall-clock windows ``[from, to)`` that ``zone`` shows twice (a DST overlap), with the
    length of each in seconds: a local time inside one first occurs that many seconds before its second."""
    tz = ZoneInfo(zone)
    found: list[tuple[datetime, datetime, int]] = []
    day = datetime(first_year, 1, 1, tzinfo=UTC)
    end = datetime(last_year + 1, 1, 1, tzinfo=UTC)
    before = day.astimezone(tz).utcoffset()
    while day < end:
        after = (day + timedelta(days=1)).astimezone(tz).utcoffset()
        if before is not None and after is not None and after < before:  # the clock went back that day
            low, high = 0, 86_400  # seconds into the day: the offset is `before` at low, `after` at high
            while high - low > 1:
                middle = (low + high) // 2
                if (day + timedelta(seconds=middle)).astimezone(tz).utcoffset() == before:
                    low = middle
                else:
                    high = middle
            change = day + timedelta(seconds=high)
            found.append(
                (
                    (change + after).replace(tzinfo=None),
                    (change + before).replace(tzinfo=None),
                    int((before - after).total_seconds()),
                )
            )
        before = after
        day += timedelta(days=1)
    return tuple(found)


def overlaps_table(con: duckdb.DuckDBPyConnection, zone: str) -> None:
    """Create :data:`OVERLAPS` for ``zone`` on a DuckDB connection: one row per local date an overlap
    touches, so that a row finds its overlap by an equality join on its date."""
    rows = []
    for start, stop, shift in overlaps(zone):
        day = start.date()
        while datetime.combine(day, datetime.min.time()) < stop:
            rows.append((day, start, stop, shift))
            day += timedelta(days=1)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {OVERLAPS} (d DATE, local_from TIMESTAMP, local_to TIMESTAMP, shift BIGINT)"
    )
    if rows:
        con.executemany(f"INSERT INTO {OVERLAPS} VALUES (?, ?, ?, ?)", rows)


def overlap_join_sql(local: str, alias: str = "o") -> str:
    """SQL: the LEFT JOIN that finds, in :data:`OVERLAPS`, the overlap the naive local time ``local`` is in."""
    return (
        f"LEFT JOIN {OVERLAPS} {alias} ON {alias}.d = CAST({local} AS DATE)"
        f" AND {local} >= {alias}.local_from AND {local} < {alias}.local_to"
    )


def local_to_utc_sql(local: str, zone: str, engine: Engine = "duckdb", overlap: str = "o") -> str:
    """SQL: the UTC instant (a naive TIMESTAMP) of the naive local time ``local`` in the zone ``zone`` (SQL
    expressions), by SPEC §6's rule: a time in a DST gap moves forward by the gap, an ambiguous one takes
    its first occurrence. On DuckDB the query joins :func:`overlap_join_sql` as ``overlap``: timezone()
    gives an ambiguous time's second occurrence, which the overlap's length moves back to the first."""
    if engine == "spark":
        return f"to_utc_timestamp({local}, {zone})"
    if engine == "duckdb":
        return f"((timezone({zone}, {local}) AT TIME ZONE 'UTC') - to_seconds(coalesce({overlap}.shift, 0)))"
    raise ValueError(f"unknown engine {engine!r}")
