"""Campaign ``where`` expressions: one DuckDB boolean expression over contact columns (SPEC §4).

An expression is checked before it runs: DuckDB parses ``SELECT 1 FROM <source>
WHERE (<expression>)``; the parse tree must be that statement and nothing else
(so ``x) UNION SELECT …`` or a second statement cannot slip in), the
expression may hold no subquery, every column it names must be a contact
column or a built-in, every function it calls must be one of :data:`FUNCTIONS`
(deterministic scalar functions of DuckDB's core: no ``sleep_ms``, no settings,
no extension that would have to be loaded), and its type must be BOOLEAN.
Expressions run only on connections whose external access is disabled (see
``db.lock_down``).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator
from typing import Any

import duckdb

from dmops.errors import ConfigError

SOURCE = "_dm_where_source"  # the relation an expression is checked against

# Operators (DuckDB parses them as functions) and the functions an expression may call.
OPERATORS = frozenset(
    ["+", "-", "*", "/", "//", "%", "^", "**", "||", "~~", "!~~", "~~*", "!~~*", "~~~", "!~~~", "@>", "<@", "&&"]
)
FUNCTIONS = OPERATORS | frozenset(
    [
        "lower",
        "upper",
        "lcase",
        "ucase",
        "trim",
        "ltrim",
        "rtrim",
        "length",
        "len",
        "strlen",
        "char_length",
        "length_grapheme",
        "substr",
        "substring",
        "left",
        "right",
        "starts_with",
        "ends_with",
        "prefix",
        "suffix",
        "contains",
        "instr",
        "strpos",
        "position",
        "replace",
        "split_part",
        "concat",
        "concat_ws",
        "reverse",
        "regexp_matches",
        "regexp_full_match",
        "regexp_replace",
        "regexp_extract",
        "nfc_normalize",
        "strip_accents",
        "format",
        "printf",
        "md5",
        "hash",
        "levenshtein",
        "abs",
        "round",
        "floor",
        "ceil",
        "ceiling",
        "greatest",
        "least",
        "sign",
        "sqrt",
        "pow",
        "power",
        "mod",
        "trunc",
        "ln",
        "log",
        "log10",
        "log2",
        "exp",
        "isnan",
        "isinf",
        "isfinite",
        "even",
        "coalesce",
        "ifnull",
        "nullif",
        "date_diff",
        "datediff",
        "date_sub",
        "datesub",
        "date_part",
        "datepart",
        "date_trunc",
        "datetrunc",
        "date_add",
        "year",
        "month",
        "day",
        "dayofmonth",
        "dayofweek",
        "isodow",
        "dayofyear",
        "week",
        "weekofyear",
        "yearweek",
        "quarter",
        "hour",
        "minute",
        "second",
        "epoch",
        "epoch_ms",
        "make_date",
        "make_time",
        "make_timestamp",
        "strftime",
        "strptime",
        "try_strptime",
        "age",
        "last_day",
        "monthname",
        "dayname",
        "to_days",
        "to_months",
        "to_years",
        "to_hours",
        "to_minutes",
        "to_seconds",
        "to_weeks",
        "list_contains",
        "list_has",
        "array_contains",
        "list_has_any",
        "list_has_all",
        "array_length",
        "list_extract",
        "list_element",
        "string_split",
        "str_split",
        "list_value",
        "array_value",
        "typeof",
    ]
)


def _parse(con: duckdb.DuckDBPyConnection, expression: str) -> dict[str, Any]:
    row = con.execute(
        "SELECT json_serialize_sql($sql)", {"sql": f"SELECT 1 FROM {SOURCE} WHERE ({expression})"}
    ).fetchone()
    assert row is not None
    parsed: dict[str, Any] = json.loads(row[0])
    return parsed


def _strip_locations(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_locations(v) for k, v in node.items() if not k.startswith("query_location")}
    if isinstance(node, list):
        return [_strip_locations(v) for v in node]
    return node


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "class" in node:
            yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def referenced_columns(con: duckdb.DuckDBPyConnection, expression: str) -> list[str]:
    """Column names the expression reads, in order of first use (after the structure check)."""
    tree = _checked_tree(con, expression)
    names: list[str] = []
    for node in _walk(tree):
        if node.get("class") == "COLUMN_REF":
            name = node["column_names"][-1]
            if name not in names:
                names.append(name)
    return names


def _checked_tree(con: duckdb.DuckDBPyConnection, expression: str) -> dict[str, Any]:
    if not expression.strip():
        raise ConfigError("the expression is empty", hint="write a condition such as tier = 'gold'")
    parsed = _parse(con, expression)
    if parsed.get("error"):
        detail = parsed.get("error_message", "cannot parse it")
        raise ConfigError(
            f"not a valid expression: {detail}",
            hint="write one SQL boolean condition, e.g. tier IN ('gold','silver') AND orders > 2",
        )
    reference = _parse(con, "TRUE")
    statements = parsed.get("statements", [])
    if len(statements) != 1:
        raise ConfigError("the expression must be a single condition, not statements")
    node = dict(statements[0]["node"])
    expected = dict(reference["statements"][0]["node"])
    where = node.pop("where_clause", None)
    expected.pop("where_clause", None)
    if _strip_locations(node) != _strip_locations(expected) or where is None:
        raise ConfigError(
            "the expression must be a single condition over contact columns",
            hint="no UNION, ORDER BY, LIMIT or other clauses",
        )
    for inner in _walk(where):
        if "SUBQUERY" in str(inner.get("class", "")) or "SUBQUERY" in str(inner.get("type", "")):
            raise ConfigError(
                "subqueries are not allowed in an expression",
                hint="use contact columns only; campaign expressions cannot read other tables or files",
            )
        if inner.get("class") == "FUNCTION":
            _check_function(inner)
    checked: dict[str, Any] = where
    return checked


def functions_called(con: duckdb.DuckDBPyConnection, expression: str) -> set[str]:
    """The functions (operators included) ``expression`` calls, lower-cased."""
    return {
        str(node.get("function_name", "")).lower()
        for node in _walk(_checked_tree(con, expression))
        if node.get("class") == "FUNCTION"
    }


def _check_function(node: dict[str, Any]) -> None:
    name = str(node.get("function_name", "")).lower()
    if node.get("schema") or node.get("catalog"):
        raise ConfigError(
            f"the function '{name}' is called with a schema or catalog",
            hint=f"write {name}(…) without a prefix",
        )
    if name not in FUNCTIONS:
        close = difflib.get_close_matches(name, sorted(FUNCTIONS - OPERATORS), n=1, cutoff=0.8)
        raise ConfigError(
            f"the function '{name}' is not allowed in an expression",
            hint=(f"did you mean '{close[0]}'? " if close else "")
            + "expressions may call DuckDB's string, number, date and list functions (see the README)",
        )


def check_expression(con: duckdb.DuckDBPyConnection, expression: str, columns: Iterable[str]) -> None:
    """Raise ConfigError (no file attached) unless ``expression`` is a valid boolean over ``columns``.

    ``con`` must hold a relation named ``SOURCE`` with exactly those columns.
    """
    known = {c.lower(): c for c in columns}
    for name in referenced_columns(con, expression):
        if name.lower() not in known:
            close = difflib.get_close_matches(name.lower(), list(known), n=1)
            raise ConfigError(
                f"unknown column '{name}' in expression",
                hint=f"did you mean '{known[close[0]]}'?" if close else "use a column of the contacts file",
            )
    try:
        described = con.execute(f"DESCRIBE SELECT ({expression}) AS v FROM {SOURCE}").fetchall()
    except duckdb.Error as exc:
        message = str(exc).splitlines()[0]
        raise ConfigError(f"the expression does not fit the contact columns: {message}") from None
    kind = described[0][1]
    if kind != "BOOLEAN":
        raise ConfigError(
            f"the expression is {kind}, not a true/false condition",
            hint="compare it with something, e.g. orders > 0",
        )


def create_source(con: duckdb.DuckDBPyConnection, at_local: str | None = None, local_date: str | None = None) -> None:
    """The relation expressions are checked and run against: contacts plus ``run_at``/``run_date``."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dm_run AS SELECT CAST($at AS TIMESTAMP) AS run_at, CAST($date AS DATE) AS run_date",
        {"at": at_local or "1970-01-01 00:00:00", "date": local_date or "1970-01-01"},
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {SOURCE} AS "
        "SELECT COLUMNS(lambda c: NOT starts_with(c, '_dm')) FROM contacts CROSS JOIN _dm_run"
    )
