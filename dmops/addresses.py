"""Email, phone and DM-handle normalisation (SPEC §3, §5).

One function per kind decides for a single value; :func:`normalise_values`
applies it to the distinct values of a column inside DuckDB, so each value is
checked once however many contacts share it.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import phonenumbers
from email_validator import EmailNotValidError, validate_email


def normalise_email(raw: str) -> str | None:
    """The address as dmops sends to it, or None if its syntax is invalid.

    Spaces and tabs around it are trimmed (SPEC §3); a CR or LF anywhere makes it
    invalid (it could inject mail headers). Syntax is email-validator's in strict
    mode, without DNS: no display names, quoted local parts or domain literals.
    """
    text = raw.strip(" \t")
    if not text:
        return None
    try:
        validate_email(text, check_deliverability=False, strict=True)
    except EmailNotValidError:
        return None
    return text


def normalise_phone(raw: str, region: str | None) -> str | None:
    """The number in E.164, or None if it is not a valid number (no ``+`` needs ``region``)."""
    text = raw.strip(" \t")
    if not text or (not text.startswith("+") and region is None):
        return None
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def address_kind(raw: str, region: str | None) -> str:
    """How a suppression address is matched: ``email`` (has @), ``phone`` (parses as one), else ``dm``."""
    if "@" in raw:
        return "email"
    return "phone" if normalise_phone(raw, region) is not None else "dm"


def normalise_values(
    con: duckdb.DuckDBPyConnection, table: str, values_sql: str, check: Callable[[str], str | None]
) -> None:
    """Create temp table ``table(raw, norm)`` for the distinct non-null values of ``values_sql``.

    ``values_sql`` is a trusted query returning one VARCHAR column.
    """
    values = [
        row[0] for row in con.execute(f"SELECT DISTINCT v FROM ({values_sql}) t(v) WHERE v IS NOT NULL").fetchall()
    ]
    normalised = [check(value) for value in values]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT unnest($1::VARCHAR[]) AS raw, unnest($2::VARCHAR[]) AS norm",
        [values, normalised],
    )
