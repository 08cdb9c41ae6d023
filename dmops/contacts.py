"""Read contacts from CSV or Parquet through DuckDB; normalise and validate addresses (SPEC §3).

After :func:`load_contacts` the connection holds two tables:

``contacts``
    one row per contact, every column of the file. ``contact_id``, ``email``,
    ``phone``, ``dm_handle``, ``timezone``, ``locale`` and the consent columns
    are text; other columns get the narrowest type every value fits (BIGINT,
    DOUBLE, DATE, TIMESTAMP, BOOLEAN), else text. A column with a value that
    has a leading zero or ``+`` stays text, so ``00123`` stays ``00123``.
``contact_channels``
    per contact: the normalised address and its validity for each channel
    (``email``/``email_ok``, ``phone``/``phone_ok``, ``dm_handle``/``dm_ok``),
    the consent flag per channel (``consent_email`` …), and ``tz``, the
    contact's accepted IANA zone or NULL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from dmops.addresses import normalise_email, normalise_phone, normalise_values
from dmops.db import quote_ident
from dmops.errors import DataError, DmopsError
from dmops.tabular import MAX_LISTED, raise_all, read_table, row_word
from dmops.timeutil import accepted_timezones
from dmops.workspace import CHANNELS, Workspace

ADDRESS_COLUMNS = ("email", "phone", "dm_handle")
TEXT_COLUMNS = ("contact_id", *ADDRESS_COLUMNS, "timezone", "locale")
# Names that templates and expressions get from dmops itself, never from a contacts file.
BUILTIN_NAMES = frozenset({"unsubscribe_token", "unsubscribe_url", "campaign", "variant", "run_at", "run_date"})
CONSENT_TRUE = ("true", "t", "1", "yes", "y")


@dataclass(frozen=True)
class ContactsInfo:
    """What was loaded: row count and columns (name -> DuckDB type) in file order."""

    path: Path
    rows: int
    columns: dict[str, str]


def _check_columns(names: list[str], path: Path) -> None:
    problems: list[DmopsError] = [
        DataError(f"column '{name}' is a name dmops reserves", file=path, line=1, hint="rename the column")
        for name in names
        if name.lower() in BUILTIN_NAMES or name.lower().startswith("_dm")
    ]
    if "contact_id" not in {name.lower() for name in names}:
        problems.append(
            DataError("no contact_id column", file=path, line=1, hint="the key column must be named contact_id")
        )
    raise_all(problems)


def _infer_types(con: duckdb.DuckDBPyConnection, names: list[str], text_columns: set[str]) -> dict[str, str]:
    """The narrowest type each non-text column's values all fit."""
    types = {name: "VARCHAR" for name in names}
    candidates = [n for n in names if n.lower() not in text_columns]
    raw_types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE _dm_raw)").fetchall())
    probes: list[str] = []
    for name in candidates:
        if raw_types.get(name) != "VARCHAR":
            types[name] = raw_types.get(name, "VARCHAR")  # Parquet: keep the file's own type
            continue
        col = f"trim({quote_ident(name)})"
        probes.append(
            f"""count({col}) = count(TRY_CAST({col} AS BIGINT))
                 AND coalesce(bool_and(regexp_full_match({col}, '-?(0|[1-9][0-9]*)')), false),
               coalesce(bool_and(regexp_full_match({col}, '-?(0|[1-9][0-9]*)([.][0-9]+)?([eE][-+]?[0-9]+)?')), false),
               count({col}) = count(TRY_CAST({col} AS DATE))
                 AND coalesce(bool_and(regexp_full_match({col}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}')), false),
               count({col}) = count(TRY_CAST({col} AS TIMESTAMP))
                 AND coalesce(bool_and(regexp_matches({col}, '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[ T][0-9]')), false),
               coalesce(bool_and(lower({col}) IN ('true', 'false')), false),
               count({col}) > 0"""
        )
    checked = [n for n in candidates if raw_types.get(n) == "VARCHAR"]
    if not checked:
        return types
    row = con.execute("SELECT " + ",\n".join(probes) + " FROM _dm_raw").fetchone()
    assert row is not None
    for index, name in enumerate(checked):
        is_int, is_double, is_date, is_ts, is_bool, any_value = row[index * 6 : index * 6 + 6]
        if not any_value:
            continue
        for flag, kind in (
            (is_int, "BIGINT"),
            (is_double, "DOUBLE"),
            (is_date, "DATE"),
            (is_ts, "TIMESTAMP"),
            (is_bool, "BOOLEAN"),
        ):
            if flag:
                types[name] = kind
                break
    return types


def _check_ids(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    problems: list[DmopsError] = []
    blank = con.execute(
        "SELECT _dm_line FROM _dm_raw WHERE contact_id IS NULL OR trim(CAST(contact_id AS VARCHAR)) = '' ORDER BY _dm_line LIMIT $n",
        {"n": MAX_LISTED},
    ).fetchall()
    for (line,) in blank:
        problems.append(DataError("contact_id is empty", file=path, line=int(line), hint="every contact needs an id"))
    duplicates = con.execute(
        """
        SELECT CAST(contact_id AS VARCHAR), list(_dm_line ORDER BY _dm_line)
        FROM _dm_raw WHERE contact_id IS NOT NULL
        GROUP BY 1 HAVING count(*) > 1 ORDER BY min(_dm_line) LIMIT $n
        """,
        {"n": MAX_LISTED},
    ).fetchall()
    for contact_id, lines in duplicates:
        others = ", ".join(str(n) for n in lines[1:])
        problems.append(
            DataError(
                f"duplicate contact_id '{contact_id}' ({row_word(path)}s {lines[0]} and {others})",
                file=path,
                line=int(lines[1]),
                key="contact_id",
                hint="contact_id must be unique; merge or remove the duplicates",
            )
        )
    if problems:
        raise_all(problems)


def load_contacts(con: duckdb.DuckDBPyConnection, ws: Workspace) -> ContactsInfo:
    """Load the workspace's contacts into ``contacts`` and ``contact_channels`` (module docs)."""
    path = ws.contacts_path
    consent = tuple(ws.config.consent.values())
    names = read_table(con, path, "_dm_raw", "contacts")
    _check_columns(names, path)
    _check_ids(con, path)
    text_columns = {c.lower() for c in (*TEXT_COLUMNS, *consent)}
    types = _infer_types(con, names, text_columns)
    select = ", ".join(
        f"CAST({'trim(' + quote_ident(n) + ')' if types[n] != 'VARCHAR' else quote_ident(n)} AS {types[n]}) AS {quote_ident(n)}"
        for n in names
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE contacts AS SELECT {select} FROM _dm_raw ORDER BY _dm_line")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE contact_lines AS SELECT CAST(contact_id AS VARCHAR) AS contact_id, _dm_line AS line FROM _dm_raw"
    )
    con.execute("DROP TABLE _dm_raw")
    _derive_channels(con, ws, {n.lower(): n for n in names})
    rows = con.execute("SELECT count(*) FROM contacts").fetchone()
    return ContactsInfo(path=path, rows=int(rows[0]) if rows else 0, columns=types)


def _derive_channels(con: duckdb.DuckDBPyConnection, ws: Workspace, present: dict[str, str]) -> None:
    region = ws.config.phone_region

    def column(name: str) -> str:
        return quote_ident(present[name]) if name in present else "CAST(NULL AS VARCHAR)"

    if "email" in present:
        normalise_values(con, "_dm_email_check", f"SELECT {column('email')} FROM contacts", normalise_email)
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE _dm_email_check (raw VARCHAR, norm VARCHAR)")
    if "phone" in present:
        normalise_values(
            con, "_dm_phone_check", f"SELECT {column('phone')} FROM contacts", lambda raw: normalise_phone(raw, region)
        )
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE _dm_phone_check (raw VARCHAR, norm VARCHAR)")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dm_zones AS SELECT unnest($1::VARCHAR[]) AS name", [sorted(accepted_timezones())]
    )
    consent_sql = []
    for channel in CHANNELS:
        source = ws.config.consent.get(channel)
        if source is None:
            consent_sql.append(f"true AS consent_{channel}")
        elif source.lower() in present:
            consent_sql.append(
                f"coalesce(lower(trim(CAST(c.{quote_ident(present[source.lower()])} AS VARCHAR))) IN {CONSENT_TRUE}, false) AS consent_{channel}"
            )
        else:
            consent_sql.append(f"false AS consent_{channel}")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE contact_channels AS
        SELECT c.contact_id,
               e.norm AS email, e.norm IS NOT NULL AS email_ok,
               p.norm AS phone, p.norm IS NOT NULL AS phone_ok,
               nullif(trim(c_dm), '') AS dm_handle, coalesce(trim(c_dm), '') <> '' AS dm_ok,
               z.name AS tz,
               {", ".join(consent_sql)}
        FROM (SELECT *, {column("dm_handle")} AS c_dm, {column("timezone")} AS c_tz,
                     {column("email")} AS c_email, {column("phone")} AS c_phone FROM contacts) c
        LEFT JOIN _dm_email_check e ON e.raw = c.c_email
        LEFT JOIN _dm_phone_check p ON p.raw = c.c_phone
        LEFT JOIN _dm_zones z ON z.name = trim(c.c_tz)
        ORDER BY c.contact_id
        """
    )
    con.execute("DROP TABLE _dm_email_check; DROP TABLE _dm_phone_check; DROP TABLE _dm_zones")


def address_quality(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Counts a marketer should see before planning: unusable addresses and zones, missing consent."""
    row = con.execute(
        """
        SELECT count(*) FILTER (WHERE NOT email_ok), count(*) FILTER (WHERE NOT phone_ok),
               count(*) FILTER (WHERE NOT dm_ok), count(*) FILTER (WHERE tz IS NULL),
               count(*) FILTER (WHERE NOT consent_email), count(*) FILTER (WHERE NOT consent_sms),
               count(*) FILTER (WHERE NOT consent_dm)
        FROM contact_channels
        """
    ).fetchone()
    assert row is not None
    keys = (
        "no_valid_email",
        "no_valid_phone",
        "no_dm_handle",
        "timezone_missing_or_invalid",
        "no_email_consent",
        "no_sms_consent",
        "no_dm_consent",
    )
    return dict(zip(keys, (int(v) for v in row), strict=True))
