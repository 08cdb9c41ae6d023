"""Email, phone and DM-handle normalisation (SPEC §3, §5).

One function per kind decides for a single value: that is the reference
behaviour. For a whole column, :func:`email_table` and :func:`phone_table` build a
lookup table over its distinct values in DuckDB: the common, plain forms are
decided in SQL, every other value by the single-value function, so a million
contacts need no Python loop over the list and the result is the same as
calling the function on every value (tests hold the SQL to that).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import duckdb
import phonenumbers
from email_validator import EmailNotValidError, validate_email

from dmops.db import quote_literal


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


def _settle(con: duckdb.DuckDBPyConnection, table: str, check: Callable[[str], str | None]) -> None:
    """Decide in Python the rows of ``table(raw, norm, decided)`` the SQL fast path left open; drop ``decided``."""
    open_values = [row[0] for row in con.execute(f"SELECT raw FROM {table} WHERE NOT decided").fetchall()]
    if open_values:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _dm_settled AS"
            " SELECT unnest($1::VARCHAR[]) AS raw, unnest($2::VARCHAR[]) AS norm",
            [open_values, [check(value) for value in open_values]],
        )
        con.execute(f"UPDATE {table} SET norm = s.norm FROM _dm_settled s WHERE {table}.raw = s.raw")
        con.execute("DROP TABLE _dm_settled")
    con.execute(f"ALTER TABLE {table} DROP COLUMN decided")


# --- email: a SQL fast path for plain addresses -----------------------------------------------------------------
#
# An address made only of letters, digits and _ + - in dot-separated local atoms, at a domain of
# LDH labels (no "--", so no IDNA) under an alphabetic top-level domain that is not special-use,
# within the length limits, is accepted by email-validator (strict, no DNS) unchanged; a test checks
# that claim against the library. Anything else is decided by email-validator itself.
EMAIL_FAST = (
    r"[A-Za-z0-9_+-]{1,64}(\.[A-Za-z0-9_+-]+)*@"
    r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def _special_use_suffix() -> str:
    from email_validator import SPECIAL_USE_DOMAIN_NAMES

    return r"(^|[.@])(" + "|".join(re.escape(name) for name in SPECIAL_USE_DOMAIN_NAMES) + r")$"


def email_table(con: duckdb.DuckDBPyConnection, table: str, values_sql: str) -> None:
    """``table(raw, norm)`` for the distinct emails of ``values_sql``: the address, NULL when invalid."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        WITH v AS (SELECT DISTINCT v AS raw, trim(v, ' \t') AS t FROM ({values_sql}) s(v) WHERE v IS NOT NULL)
        SELECT raw, CASE WHEN fast THEN t END AS norm, fast OR t = '' OR NOT contains(t, '@') AS decided
        FROM (
            SELECT raw, t,
                   regexp_full_match(t, $fast) AND NOT contains(t, '--')
                   AND length(split_part(t, '@', 1)) <= 64 AND length(t) <= 254
                   AND NOT regexp_matches(lower(t), $special) AS fast
            FROM v
        )
        """,
        {"fast": EMAIL_FAST, "special": _special_use_suffix()},
    )
    _settle(con, table, normalise_email)


# --- phone: a SQL fast path from libphonenumber's own metadata --------------------------------------------------
#
# For a country calling code shared by no other region, a number written as +<cc><digits> (spaces and
# dashes allowed), or in the workspace region as bare national digits that start with neither the
# international prefix, the country code nor a national prefix, is valid exactly when its digits match
# the region's general pattern and one number type's pattern, each with its possible lengths: the
# check phonenumbers' is_valid_number makes. A national number that starts like a national prefix
# could be rewritten by phonenumbers, so it is left to phonenumbers, like every other form.

_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


def _desc_sql(desc: Any, nsn: str) -> str | None:
    if desc is None or not desc.national_number_pattern:
        return None
    test = f"regexp_full_match({nsn}, {quote_literal(desc.national_number_pattern)})"
    lengths = [n for n in desc.possible_length if n > 0]
    if lengths:
        test = f"(length({nsn}) IN ({', '.join(str(n) for n in lengths)}) AND {test})"
    return test


def _validity_sql(region: str, nsn: str) -> str:
    """SQL true exactly when phonenumbers finds a number type for national number ``nsn`` in ``region``;
    NULL when phonenumbers could first strip a national prefix (then it decides)."""
    metadata: Any = phonenumbers.PhoneMetadata.metadata_for_region(region)
    general = _desc_sql(metadata.general_desc, nsn)
    types = [t for t in (_desc_sql(getattr(metadata, name, None), nsn) for name in _TYPES) if t]
    valid = f"({general} AND ({' OR '.join(types)}))" if general and types else "false"
    npfp = metadata.national_prefix_for_parsing
    if npfp:
        return f"CASE WHEN regexp_matches({nsn}, {quote_literal('^(?:' + npfp + ')')}) THEN NULL ELSE {valid} END"
    return valid


@lru_cache(maxsize=1)
def _single_region_codes() -> dict[str, str]:
    """Country calling code -> region, for codes that belong to one geographic region."""
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

    return {
        str(cc): regions[0]
        for cc, regions in COUNTRY_CODE_TO_REGION_CODE.items()
        if len(regions) == 1 and regions[0] != "001"
    }


def phone_table(con: duckdb.DuckDBPyConnection, table: str, values_sql: str, region: str | None) -> None:
    """``table(raw, norm)`` for the distinct phones of ``values_sql``: E.164, NULL when invalid."""
    codes = _single_region_codes()
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _dm_phone_in AS
        SELECT raw, replace(replace(trim(raw, ' \t'), ' ', ''), '-', '') AS d
        FROM (SELECT DISTINCT v AS raw FROM ({values_sql}) s(v) WHERE v IS NOT NULL)
        """
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dm_cc AS SELECT unnest($1::VARCHAR[]) AS cc",
        [list(codes)],
    )
    # +<cc><nsn>: country codes are prefix-free, so at most one of the three lookups finds one
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _dm_phone_split AS
        SELECT p.raw, coalesce(c1.cc, c2.cc, c3.cc) AS cc,
               substr(p.digits, length(coalesce(c1.cc, c2.cc, c3.cc)) + 1) AS nsn
        FROM (SELECT raw, substr(d, 2) AS digits FROM _dm_phone_in WHERE regexp_full_match(d, '[+][1-9][0-9]{5,14}')) p
        LEFT JOIN _dm_cc c1 ON c1.cc = substr(p.digits, 1, 1)
        LEFT JOIN _dm_cc c2 ON c2.cc = substr(p.digits, 1, 2)
        LEFT JOIN _dm_cc c3 ON c3.cc = substr(p.digits, 1, 3)
        """
    )
    home: Any = phonenumbers.PhoneMetadata.metadata_for_region(region) if region else None
    if home is not None and codes.get(str(home.country_code)) == region:
        idd = (
            f"regexp_matches(d, {quote_literal('^(?:' + home.international_prefix + ')')})"
            if home.international_prefix
            else "false"
        )
        con.execute(
            f"""
            INSERT INTO _dm_phone_split
            SELECT raw, $cc, d FROM _dm_phone_in
            WHERE regexp_full_match(d, '[0-9]{{6,17}}') AND NOT starts_with(d, $cc) AND NOT {idd}
            """,
            {"cc": str(home.country_code)},
        )
    present = [row[0] for row in con.execute("SELECT DISTINCT cc FROM _dm_phone_split WHERE cc IS NOT NULL").fetchall()]
    con.execute("CREATE OR REPLACE TEMP TABLE _dm_phone_judged (raw VARCHAR, cc VARCHAR, nsn VARCHAR, valid BOOLEAN)")
    for code in sorted(present):  # one query per country code: each with its own constant patterns
        con.execute(
            f"""INSERT INTO _dm_phone_judged
                SELECT raw, cc, nsn, {_validity_sql(codes[code], "nsn")} FROM _dm_phone_split WHERE cc = $cc""",
            {"cc": code},
        )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT i.raw, CASE WHEN j.valid THEN '+' || j.cc || j.nsn END AS norm,
               j.valid IS NOT NULL OR i.d = '' AS decided
        FROM _dm_phone_in i LEFT JOIN _dm_phone_judged j USING (raw)  -- at most one split per value
        """
    )
    _settle(con, table, lambda raw: normalise_phone(raw, region))
    con.execute("DROP TABLE _dm_phone_in; DROP TABLE _dm_phone_split; DROP TABLE _dm_phone_judged; DROP TABLE _dm_cc")
