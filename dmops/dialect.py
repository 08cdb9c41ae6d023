"""The set work's SQL for each engine (SPEC §13): DuckDB, embedded, and Apache Spark.

dmops's SQL is written once, in DuckDB's dialect. :func:`to_engine` turns it into another engine's with
SQLGlot, after replacing the few idioms SQLGlot cannot carry over with what that engine spells them as;
each such gap is one function here, tested on both engines (``tests/test_dialect.py``).

Filled so far:

- the hash split of SPEC §4, :func:`hash15_sql`: the first 15 hex digits of an MD5 as an integer (its
  DuckDB spelling is rewritten for Spark by :func:`spark_idioms`, with ``strftime`` and ``epoch_us``);
- a naive local time read in a time zone, :func:`local_to_utc_sql`, by SPEC §6's rule (a time in a DST
  gap moves forward by the gap, an ambiguous one takes its first occurrence): Spark's ``to_utc_timestamp``
  does that; DuckDB's ``timezone()`` takes an ambiguous time's second occurrence, which the length of the
  overlap it is in moves back (:func:`overlaps`, found by a join on the local date).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

import duckdb

if TYPE_CHECKING:
    from sqlglot.expressions import Expr

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
    """``sql`` (DuckDB's dialect) in ``engine``'s dialect: SQLGlot's transpilation, after
    :func:`spark_idioms` on each statement."""
    if engine == "duckdb":
        return sql
    import sqlglot

    return ";\n".join(spark_idioms(tree).sql(dialect="spark") for tree in sqlglot.parse(sql, read="duckdb") if tree)


# strftime's directives (as dmops uses them) -> Java DateTimeFormatter letters
_PATTERN = {"Y": "yyyy", "m": "MM", "d": "dd", "H": "HH", "M": "mm", "S": "ss", "f": "SSSSSS"}


def java_pattern(strftime: str) -> str:
    """A ``strftime`` pattern as a Spark ``date_format`` pattern: directives translated, every other
    character quoted where Java would read it as pattern syntax (``'%Y-%m-%dT%H:%M:%SZ'`` ->
    ``yyyy-MM-dd'T'HH:mm:ss'Z'``)."""
    out: list[str] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            text = "".join(literal)
            plain = not any(c.isalpha() or c in "'[]{}#" for c in text)
            out.append(text if plain else "'" + text.replace("'", "''") + "'")
            literal.clear()

    i = 0
    while i < len(strftime):
        char = strftime[i]
        if char == "%" and i + 1 < len(strftime):
            directive = strftime[i + 1]
            if directive == "%":
                literal.append("%")
            elif directive in _PATTERN:
                flush()
                out.append(_PATTERN[directive])
            else:
                raise ValueError(f"strftime directive %{directive} has no Spark equivalent here")
            i += 2
            continue
        literal.append(char)
        i += 1
    flush()
    return "".join(out)


def spark_idioms(tree: Expr) -> Expr:
    """A parsed DuckDB statement with the idioms SQLGlot does not carry to Spark rewritten:

    - ``strftime(t, '…')`` -> ``date_format(t, …)`` with :func:`java_pattern` (SQLGlot leaves ``T``
      and ``Z`` bare, which Java reads as pattern letters);
    - the hash split's ``CAST('0x' || hex AS UBIGINT)`` (:func:`hash15_sql`) -> ``CAST(conv(hex, 16, 10)
      AS BIGINT)``: Spark has no unsigned type and no hex literal in a cast;
    - ``epoch_us(t)`` -> ``unix_micros(CAST(t AS TIMESTAMP))``: dmops's instants are naive UTC, and a Spark
      session that runs dmops's SQL keeps its time zone at UTC;
    - ``timezone('UTC', t)`` (a naive UTC time as an instant) -> ``CAST(t AS TIMESTAMP)``, for the same reason;
      SQLGlot writes the ``… AT TIME ZONE zone`` that reads such an instant as a local time as
      ``from_utc_timestamp``.
    """
    from sqlglot import exp

    def rewrite(node: Expr) -> Expr:
        if isinstance(node, exp.TimeToStr):
            pattern = node.args["format"]
            if not isinstance(pattern, exp.Literal):
                raise ValueError("strftime takes a constant pattern on Spark")
            return exp.Anonymous(
                this="date_format", expressions=[node.this, exp.Literal.string(java_pattern(pattern.this))]
            )
        if (
            isinstance(node, exp.Cast)
            and node.to.is_type(exp.DataType.Type.UBIGINT)
            and isinstance(node.this, exp.DPipe)
            and isinstance(node.this.this, exp.Literal)
            and node.this.this.this == "0x"
        ):
            digits = node.this.expression
            conv = exp.Anonymous(this="conv", expressions=[digits, exp.Literal.number(16), exp.Literal.number(10)])
            return exp.cast(conv, exp.DataType.build("BIGINT"))
        if (
            isinstance(node, exp.Anonymous)
            and str(node.this).lower() == "timezone"
            and len(node.expressions) == 2
            and isinstance(node.expressions[0], exp.Literal)
            and node.expressions[0].this == "UTC"
        ):
            return exp.cast(node.expressions[1], exp.DataType.build("TIMESTAMP"))
        if isinstance(node, exp.Anonymous) and str(node.this).lower() == "epoch_us":
            (moment,) = node.expressions
            return exp.Anonymous(this="unix_micros", expressions=[exp.cast(moment, exp.DataType.build("TIMESTAMP"))])
        return node

    return tree.transform(rewrite)


# The functions (and operators, which DuckDB parses as functions) a campaign expression may call when it runs
# on Spark: each gives the same answer on both engines over strings with spaces, accents and CJK, negative
# numbers, zero, NULLs and leap days (tests/test_dialect.py). Others are refused there, some because they
# differ without an error: hash() (64-bit on DuckDB, Murmur3 32-bit on Spark), dayofweek() (Sunday is 0 on
# DuckDB, 1 on Spark), regular expressions (RE2 and Java read some patterns differently); week() is missing.
SPARK_SAME_FUNCTIONS = frozenset(
    {
        *("lower", "upper", "trim", "ltrim", "rtrim", "length", "substr", "substring", "left", "right"),
        *("starts_with", "ends_with", "contains", "replace", "instr", "strpos", "reverse", "split_part"),
        *("concat_ws", "levenshtein", "md5", "list_contains"),
        *("||", "~~", "!~~", "+", "-", "*", "/", "%"),
        *("abs", "greatest", "least", "coalesce", "ifnull", "nullif", "floor", "ceil", "round", "mod", "sign"),
        *("power", "sqrt"),
        *("year", "month", "day", "quarter", "dayofyear", "hour", "minute", "date_part", "date_diff", "datediff"),
        *("date_trunc", "last_day"),
    }
)


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
