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

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dmops import snapshot
from dmops.addresses import email_table, phone_table
from dmops.db import quote_ident, quote_list, quote_literal
from dmops.errors import ConfigError, DataError, DmopsError
from dmops.pii import mask_id
from dmops.sql import address_key_sql
from dmops.tabular import AUTO, MAX_LISTED, SheetNotFound, raise_all, read_source, row_word
from dmops.timeutil import accepted_timezones
from dmops.workspace import CHANNELS, DEFAULT_TRUE_VALUES, Workspace

ADDRESS_COLUMNS = ("email", "phone", "dm_handle")
# Per channel, the columns of ``contact_channels`` holding its normalised address and whether that is valid.
CHANNEL_ADDRESS = {"email": ("email", "email_ok"), "sms": ("phone", "phone_ok"), "dm": ("dm_handle", "dm_ok")}
TEXT_COLUMNS = ("contact_id", *ADDRESS_COLUMNS, "timezone", "locale")
# Names that templates and expressions get from dmops itself, never from a contacts file.
BUILTIN_NAMES = frozenset(
    {"unsubscribe_token", "unsubscribe_url", "campaign", "variant", "contact", "run_at", "run_date"}
)
CONSENT_TRUE = DEFAULT_TRUE_VALUES  # the default yes-values (a consent may name its own)


@dataclass(frozen=True)
class ContactsInfo:
    """What was loaded: row count, columns (name -> DuckDB type) in file order, and the text encoding read."""

    path: Path
    rows: int
    columns: dict[str, str]
    encoding: str | None = None  # None for Parquet and .xlsx
    detected: bool = False  # whether the encoding was detected (encoding: auto) rather than given
    snapshot_file: Path | None = None  # the snapshot ``contacts`` reads in place (a view), if it does


def _closest(name: str, names: Sequence[str]) -> str:
    """A hint naming the headers closest to ``name``, or the first few when none is close."""
    present = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(present), n=3, cutoff=0.5)
    if close:
        return f"closest headers: {', '.join(present[c] for c in close)}"
    return f"the file's columns start: {', '.join(names[:8])}"


def _map_columns(con: duckdb.DuckDBPyConnection, ws: Workspace, names: list[str]) -> list[str]:
    """Rename the file's mapped headers to their dmops names (``contacts.columns``); the names after."""
    mapping = ws.config.contacts_source.columns
    if not mapping:
        return names
    folded = {n.strip().casefold(): n for n in names}
    mapped_headers = {header.casefold() for header in mapping.values()}
    problems: list[DmopsError] = []
    renames: dict[str, str] = {}
    for name, header in mapping.items():
        line = ws.line_of("contacts", "columns", name)
        key = f"contacts.columns.{name}"
        found = header if header in names else folded.get(header.casefold())
        if found is None:
            problems.append(
                ConfigError(
                    f"'{header}' is not a column of {ws.contacts_path.name}",
                    file=ws.file,
                    line=line,
                    key=key,
                    hint=_closest(header, names),
                )
            )
            continue
        clash = folded.get(name.casefold())
        if clash is not None and clash != found and clash.casefold() not in mapped_headers:
            problems.append(
                ConfigError(
                    f"the file already has a column '{clash}', so '{header}' cannot also be {name}",
                    file=ws.file,
                    line=line,
                    key=key,
                    hint=f"map the one that holds the {name}, and rename or map the other",
                )
            )
            continue
        renames[found] = name
    raise_all(problems)
    # Two steps, so that swapping names (a -> b, b -> a) never meets a name still in use.
    for position, header in enumerate(renames):
        con.execute(f"ALTER TABLE _dm_raw RENAME COLUMN {quote_ident(header)} TO {quote_ident(f'_dm_map_{position}')}")
    for position, name in enumerate(renames.values()):
        con.execute(f"ALTER TABLE _dm_raw RENAME COLUMN {quote_ident(f'_dm_map_{position}')} TO {quote_ident(name)}")
    return [renames.get(n, n) for n in names]


def _check_columns(names: list[str], path: Path) -> None:
    problems: list[DmopsError] = [
        DataError(
            f"column '{name}' is a name dmops reserves",
            file=path,
            line=1,
            hint="rename it in dmops.yaml: contacts: {path: …, columns: {<new name>: <this header>}}",
        )
        for name in names
        if name.lower() in BUILTIN_NAMES or name.lower().startswith("_dm")
    ]
    if "contact_id" not in {name.lower() for name in names}:
        problems.append(
            DataError(
                "no contact_id column",
                file=path,
                line=1,
                hint="name the file's id column in dmops.yaml: contacts: {path: …, columns: {contact_id: <its header>}}"
                " (`dmops contacts inspect FILE` suggests the mapping)",
            )
        )
    raise_all(problems)


def _check_consent(ws: Workspace, names: list[str]) -> None:
    """Every consent column dmops.yaml names must be a column of the file (a typo read as "no consent" for all)."""
    present = {n.lower() for n in names}
    problems: list[DmopsError] = []
    for channel in ws.config.consent:
        column = ws.config.consent_column(channel) or ""
        if column.lower() in present:
            continue
        problems.append(
            ConfigError(
                f"consent column '{column}' is not a column of {ws.contacts_path.name}",
                file=ws.file,
                line=ws.line_of("consent", channel),
                key=f"consent.{channel}",
                hint=_closest(column, names),
            )
        )
    raise_all(problems)


def _trim_ids(con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    """Contact ids lose surrounding spaces (' C00052 ' is C00052), so padded copies are duplicates, not two people."""
    column = next(n for n in names if n.lower() == "contact_id")
    value = f"CAST({quote_ident(column)} AS VARCHAR)"
    con.execute(f"UPDATE _dm_raw SET {quote_ident(column)} = trim({value}) WHERE {value} <> trim({value})")


def _infer_types(
    con: duckdb.DuckDBPyConnection, names: list[str], text_columns: set[str], raw_types: dict[str, str]
) -> dict[str, str]:
    """The narrowest type each non-text column's values all fit (``raw_types``: the columns as read)."""
    types = {name: "VARCHAR" for name in names}
    candidates = [n for n in names if n.lower() not in text_columns]
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
    # A column whose first rows already fit no type is text: only the others need a full scan.
    sample = con.execute("SELECT " + ",\n".join(probes) + " FROM (SELECT * FROM _dm_raw LIMIT 2048)").fetchone()
    assert sample is not None
    keep = [i for i in range(len(checked)) if any(sample[i * 6 : i * 6 + 5]) or not sample[i * 6 + 5]]
    if not keep:
        return types
    row = con.execute("SELECT " + ",\n".join(probes[i] for i in keep) + " FROM _dm_raw").fetchone()
    assert row is not None
    for position, index in enumerate(keep):
        name = checked[index]
        is_int, is_double, is_date, is_ts, is_bool, any_value = row[position * 6 : position * 6 + 6]
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


def _check_nul(con: duckdb.DuckDBPyConnection, path: Path, raw_types: dict[str, str]) -> None:
    """A NUL byte in a value would reach messages and headers: refused, naming line and column (not the value)."""
    text = [n for n, kind in raw_types.items() if kind == "VARCHAR"]  # _dm_line is a BIGINT
    if not text:
        return
    columns = ", ".join(quote_ident(n) for n in text)
    rows = con.execute(  # one pass over every row; the columns are found only for the (rare) rows that hit
        f"SELECT _dm_line, {columns} FROM _dm_raw WHERE strpos(concat_ws('', {columns}), chr(0)) > 0 "
        "ORDER BY _dm_line LIMIT $n",
        {"n": MAX_LISTED},
    ).fetchall()
    problems: list[DmopsError] = [
        DataError(
            f"a NUL character in column '{name}'",
            file=path,
            line=int(row[0]),
            key=name,
            hint="remove the NUL bytes from the export (they come from a broken conversion)",
        )
        for row in rows
        for name, value in zip(text, row[1:], strict=True)
        if value is not None and "\x00" in value
    ]
    raise_all(problems)


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
                f"duplicate contact_id '{mask_id(contact_id)}' ({row_word(path)}s {lines[0]} and {others})",
                file=path,
                line=int(lines[1]),
                key="contact_id",
                hint="contact_id must be unique; merge or remove the duplicates",
            )
        )
    if problems:
        raise_all(problems)


CHANNEL_COLUMNS = (
    "email",
    "email_ok",
    "email_key",  # the raw address trimmed and lower-cased: what suppressions match, valid or not
    "phone",
    "phone_ok",
    "dm_handle",
    "dm_ok",
    "tz",
    *(f"consent_{channel}" for channel in CHANNELS),
)


def load_contacts(
    con: duckdb.DuckDBPyConnection,
    ws: Workspace,
    mentioned: Sequence[str] | None = None,
    *,
    keep_snapshot: bool = False,
) -> ContactsInfo:
    """Load the workspace's contacts into ``contacts`` and ``contact_channels`` (module docs).

    With ``mentioned`` (a campaign's expressions and template sources), ``contacts`` keeps only the
    columns dmops itself reads and those whose name occurs in one of those texts: a wide export costs
    the columns a campaign uses, not all of them. Every row is still checked whole — or was, when the
    checked snapshot of this very file is there (:mod:`dmops.snapshot`). ``keep_snapshot``: write one
    after a full read (``validate`` and ``send``; ``plan``, ``lint`` and ``report`` write nothing).
    """
    path = ws.contacts_path
    consent = tuple(ws.config.consent_column(channel) or "" for channel in ws.config.consent)
    text_columns = {c.lower() for c in (*TEXT_COLUMNS, *consent)}
    stamp = snapshot.stamp(ws)
    texts = [t.lower() for t in mentioned] if mentioned is not None else None

    def kept(types: dict[str, str]) -> dict[str, str]:
        if texts is None:
            return types
        return {n: t for n, t in types.items() if n.lower() in text_columns or any(n.lower() in x for x in texts)}

    def columns(types: dict[str, str]) -> list[str]:
        return [*kept(types), *(f"_dm_{c}" for c in CHANNEL_COLUMNS)]

    snapshot_key = snapshot.key(ws)
    found = snapshot.load(con, ws, snapshot_key, columns) if snapshot_key else None
    if found is not None and snapshot_key and keep_snapshot:
        snapshot.prune(ws, snapshot_key)  # an older one a command was still reading when this one was written
    if found is None:
        found = _read_and_check(con, ws, text_columns)
        if snapshot_key and keep_snapshot and snapshot.stamp(ws) == stamp:  # not rewritten while read
            snapshot.save(con, ws, snapshot_key, found)
        if len(kept(found.types)) < len(found.types):
            selected = ", ".join(quote_ident(n) for n in columns(found.types))
            con.execute(f"CREATE OR REPLACE TEMP TABLE contacts AS SELECT {selected} FROM contacts")
    con.execute(  # every header (mapped names in place), kept or not: what templates may name, for did-you-mean
        "CREATE OR REPLACE TEMP TABLE contact_headers AS SELECT unnest($names::VARCHAR[]) AS header",
        {"names": found.headers},
    )
    types = kept(found.types)
    channel_columns = ", ".join(f"_dm_{name} AS {name}" for name in CHANNEL_COLUMNS)
    con.execute(f"CREATE OR REPLACE TEMP VIEW contact_channels AS SELECT contact_id, {channel_columns} FROM contacts")
    rows = con.execute("SELECT count(*) FROM contacts").fetchone()
    return ContactsInfo(
        path=path,
        rows=int(rows[0]) if rows else 0,
        columns=types,
        encoding=found.encoding,
        detected=found.detected,
        snapshot_file=found.file,
    )


def _contacts_kind(con: duckdb.DuckDBPyConnection) -> str | None:
    kind = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_catalog = 'temp' AND table_name = 'contacts'"
    ).fetchall()
    return str(kind[0][0]) if kind else None


def replace_contacts(con: duckdb.DuckDBPyConnection, select: str) -> None:
    """Make ``contacts`` a table of the rows of ``select``, which may read ``contacts`` (a table, or the view
    of the snapshot it reads in place)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _dm_contacts_next AS {select}")
    con.execute("DROP VIEW contacts" if _contacts_kind(con) == "VIEW" else "DROP TABLE contacts")
    con.execute(f"DROP TABLE IF EXISTS {snapshot.IN_PLACE}")
    con.execute("ALTER TABLE _dm_contacts_next RENAME TO contacts")


def read_in_place(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The checked snapshot ``contacts`` is a view of (it reads some of its columns); None when ``contacts``
    is a table (read from the contacts file, or changed since: traits added)."""
    if _contacts_kind(con) != "VIEW":
        return None
    named = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'temp' AND table_name = $t",
        {"t": snapshot.IN_PLACE},
    ).fetchall()[0][0]
    if not named:
        return None
    return Path(str(con.execute(f"SELECT file FROM {snapshot.IN_PLACE}").fetchall()[0][0]))


def _read_and_check(con: duckdb.DuckDBPyConnection, ws: Workspace, text_columns: set[str]) -> snapshot.Snapshot:
    """Read the contacts file into ``contacts`` (every column), raising on every problem SPEC §3 names."""
    path = ws.contacts_path
    source = ws.config.contacts_source
    try:
        loaded = read_source(con, path, "_dm_raw", "contacts", encoding=source.encoding, sheet=source.sheet)
    except SheetNotFound as exc:
        raise ConfigError(
            f"{path.name} has no sheet named '{source.sheet}'",
            file=ws.file,
            line=ws.line_of("contacts", "sheet"),
            key="contacts.sheet",
            hint=f"its sheets: {', '.join(exc.sheets)}",
        ) from None
    names = _map_columns(con, ws, loaded.names)
    _check_columns(names, path)
    _trim_ids(con, names)
    _check_ids(con, path)
    raw_types: dict[str, str] = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE _dm_raw)").fetchall())
    _check_nul(con, path, raw_types)
    _check_consent(ws, names)
    headers = list(names)
    types = _infer_types(con, names, text_columns, raw_types)

    def cast(name: str) -> str:
        column = "r." + quote_ident(name)
        if raw_types[name] == types[name]:
            return column
        if raw_types[name] == "VARCHAR":
            return f"CAST(trim({column}) AS {types[name]})"
        return f"CAST({column} AS {types[name]})"

    select = ", ".join(f"{cast(n)} AS {quote_ident(n)}" for n in names)
    present = {n.lower(): n for n in names}
    derived = _channel_sql(con, ws, present)

    def key(name: str) -> str:
        return f"CAST(r.{quote_ident(present[name])} AS VARCHAR)" if name in present else "CAST(NULL AS VARCHAR)"

    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE contacts AS
            SELECT {select}, {derived} FROM _dm_raw r
            LEFT JOIN _dm_email_check e ON e.raw = {key("email")}
            LEFT JOIN _dm_phone_check p ON p.raw = {key("phone")}
            LEFT JOIN _dm_zones z ON z.name = trim({key("timezone")})"""
    )
    con.execute("DROP TABLE _dm_raw; DROP TABLE _dm_email_check; DROP TABLE _dm_phone_check; DROP TABLE _dm_zones")
    return snapshot.Snapshot(headers, types, loaded.encoding, source.encoding == AUTO and loaded.encoding is not None)


def _channel_sql(con: duckdb.DuckDBPyConnection, ws: Workspace, present: dict[str, str]) -> str:
    """Check addresses and zones; the SELECT list of the ``_dm_`` channel columns over ``_dm_raw r``."""
    region = ws.config.phone_region

    def column(name: str) -> str:
        return f"CAST({quote_ident(present[name])} AS VARCHAR)" if name in present else "CAST(NULL AS VARCHAR)"

    email_table(con, "_dm_email_check", f"SELECT {column('email')} FROM _dm_raw")
    phone_table(con, "_dm_phone_check", f"SELECT {column('phone')} FROM _dm_raw", region)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dm_zones AS SELECT unnest($1::VARCHAR[]) AS name", [sorted(accepted_timezones())]
    )
    consent_sql = []
    for channel in CHANNELS:
        source = ws.config.consent_column(channel)
        if source is None:
            consent_sql.append(f"true AS _dm_consent_{channel}")
        elif source.lower() in present:
            value = f"lower(trim(CAST(r.{quote_ident(present[source.lower()])} AS VARCHAR)))"
            yes = quote_list(ws.config.consent_true_values(channel))
            consent_sql.append(f"coalesce({value} IN {yes}, false) AS _dm_consent_{channel}")
        else:
            consent_sql.append(f"false AS _dm_consent_{channel}")
    handle = f"CAST(r.{quote_ident(present['dm_handle'])} AS VARCHAR)" if "dm_handle" in present else "NULL"
    raw_email = f"CAST(r.{quote_ident(present['email'])} AS VARCHAR)" if "email" in present else "NULL"
    return f"""e.norm AS _dm_email, e.norm IS NOT NULL AS _dm_email_ok,
               nullif(lower(trim({raw_email}, ' \t')), '') AS _dm_email_key,
               p.norm AS _dm_phone, p.norm IS NOT NULL AS _dm_phone_ok,
               nullif(trim({handle}), '') AS _dm_dm_handle, coalesce(trim({handle}), '') <> '' AS _dm_dm_ok,
               z.name AS _dm_tz, {", ".join(consent_sql)}"""


def address_quality(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Counts a marketer should see before planning: unusable addresses and zones, missing consent, and
    contacts whose address another contact with a smaller id already has (one message per person)."""
    shared = [  # contacts beyond the first with each address: those a smaller id already has
        f"count(*) FILTER (WHERE {ok}) - count(DISTINCT CASE WHEN {ok} THEN {address_key_sql(quote_literal(channel), column)} END)"
        for channel, (column, ok) in CHANNEL_ADDRESS.items()
    ]
    row = con.execute(
        f"""
        SELECT count(*) FILTER (WHERE NOT email_ok), count(*) FILTER (WHERE NOT phone_ok),
               count(*) FILTER (WHERE NOT dm_ok), count(*) FILTER (WHERE tz IS NULL),
               count(*) FILTER (WHERE NOT consent_email), count(*) FILTER (WHERE NOT consent_sms),
               count(*) FILTER (WHERE NOT consent_dm), {", ".join(shared)}
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
        "email_shared_with_another_contact",
        "phone_shared_with_another_contact",
        "dm_handle_shared_with_another_contact",
    )
    return dict(zip(keys, (int(v) for v in row), strict=True))
