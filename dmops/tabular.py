"""Strict reading of CSV and Parquet files into DuckDB tables, and the one rule for CSV cells dmops writes.

Every row is kept or the read fails: ragged rows, bytes that are not UTF-8 and
unnamed or repeated columns are errors naming the file and line (CSV) or row
(Parquet). Errors never quote a row, which may hold personal data. Each table
gets a ``_dm_line`` column: the line (CSV, header = line 1) or row number
(Parquet, first row = 1) every record came from.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb

from dmops.db import quote_ident
from dmops.errors import DataError, DmopsError, MissingInputError, ProblemsFound

MAX_LISTED = 20  # problems listed per kind before "and N more"
MAX_COLUMNS = 1_000  # wider files are exports of everything; reading them costs minutes and gigabytes

# A CSV cell starting with one of these is run as a formula by spreadsheets (CSV injection): every CSV
# dmops writes (report --format csv in Python, plan --out in DuckDB) prefixes such a cell with '.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """A cell that a spreadsheet will not run as a formula."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


_REJECT_MEANING = {
    "TOO MANY COLUMNS": "more fields than the header",
    "MISSING COLUMNS": "fewer fields than the header",
    "INVALID ENCODING": "not valid UTF-8",
    "INVALID UNICODE": "not valid UTF-8",
    "UNQUOTED VALUE": "a quote inside an unquoted field",
    "LINE SIZE OVER MAXIMUM": "a line longer than 2 MB",
}


def raise_all(problems: list[DmopsError]) -> None:
    """Raise the one problem, or all of them together; nothing when the list is empty."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ProblemsFound(problems)


def row_word(path: Path) -> str:
    """How records of ``path`` are numbered in messages."""
    return "row" if path.suffix.lower() == ".parquet" else "line"


def _header(path: Path, what: str) -> tuple[list[str], str]:
    """The CSV header's column names and delimiter."""
    try:
        with path.open("rb") as handle:
            first = handle.readline(1 << 20)
    except FileNotFoundError:
        raise MissingInputError(f"{what} file not found", file=path) from None
    except OSError as exc:
        raise MissingInputError(f"cannot read {what} file: {exc.strerror}", file=path) from None
    try:
        text = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise DataError("header is not UTF-8", file=path, line=1, hint="save the file as UTF-8") from None
    if not text.strip():
        raise DataError("the file has no header row", file=path, line=1, hint="the first row must name the columns")
    delimiter = max((",", ";", "\t", "|"), key=text.count)
    names = next(csv.reader(io.StringIO(text), delimiter=delimiter))
    return [name.strip() for name in names], delimiter


def _check_width(count: int, path: Path) -> None:
    if count > MAX_COLUMNS:
        raise DataError(
            f"the file has {count:,} columns; dmops reads at most {MAX_COLUMNS:,}",
            file=path,
            line=1,
            hint="export only the columns campaigns use (ids, addresses, consent, the fields templates print)",
        )


def _check_names(names: list[str], path: Path) -> None:
    _check_width(len(names), path)
    seen: dict[str, int] = {}
    problems: list[DmopsError] = []
    for position, name in enumerate(names, start=1):
        if not name:
            problems.append(DataError(f"column {position} has no name", file=path, line=1))
        elif name.lower() in seen:
            problems.append(
                DataError(
                    f"column '{name}' appears twice (columns {seen[name.lower()]} and {position})", file=path, line=1
                )
            )
        seen.setdefault(name.lower(), position)
    raise_all(problems)


def _read_csv(con: duckdb.DuckDBPyConnection, path: Path, table: str, what: str) -> list[str]:
    names, delimiter = _header(path, what)
    _check_names(names, path)
    columns = {name: "VARCHAR" for name in names}
    con.execute("DROP TABLE IF EXISTS _dm_rejects; DROP TABLE IF EXISTS _dm_reject_scans")
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS
            SELECT *, CAST(row_number() OVER () + 1 AS BIGINT) AS _dm_line
            FROM read_csv($path, header = true, auto_detect = false, delim = $delim, quote = '"', escape = '"',
                          columns = $columns, strict_mode = true, encoding = 'utf-8',
                          store_rejects = true, rejects_table = '_dm_rejects', rejects_scan = '_dm_reject_scans')
            """,
            {"path": str(path), "delim": delimiter, "columns": columns},
        )
    except duckdb.Error as exc:  # the message may quote a row: do not show it
        raise DataError(
            f"cannot read the CSV ({type(exc).__name__})",
            file=path,
            hint="check that it is a comma-separated UTF-8 file",
        ) from None
    rejects = con.execute(
        "SELECT line, list(DISTINCT error_type ORDER BY error_type) FROM _dm_rejects GROUP BY line ORDER BY line"
    ).fetchall()
    con.execute("DROP TABLE IF EXISTS _dm_rejects; DROP TABLE IF EXISTS _dm_reject_scans")
    problems: list[DmopsError] = [
        DataError(
            "; ".join(_REJECT_MEANING.get(kind, kind.lower()) for kind in kinds),
            file=path,
            line=int(line),
            hint="fix or remove this row; rows are never dropped silently",
        )
        for line, kinds in rejects[:MAX_LISTED]
    ]
    if len(rejects) > MAX_LISTED:
        problems.append(DataError(f"and {len(rejects) - MAX_LISTED} more bad rows", file=path))
    raise_all(problems)
    _fix_lines(con, path, table, delimiter)
    return names


def _newlines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            count += chunk.count(b"\n")
    return count


def _fix_lines(con: duckdb.DuckDBPyConnection, path: Path, table: str, delimiter: str) -> None:
    """``_dm_line`` as the file's own line number even after blank lines or quoted line breaks.

    Records are numbered in order at first (record k on line k + 1). When the file has more lines than
    records, the lines are counted once with the csv module and each record gets the line it starts on.
    """
    rows = con.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchone()
    records = int(rows[0]) if rows else 0
    if _newlines(path) <= records + 1:
        return  # one line per record (and the header): the numbering is already right
    starts: list[int] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        next(reader, None)  # the header
        before = reader.line_num
        for row in reader:
            if row:  # DuckDB skips blank lines
                starts.append(before + 1)
            before = reader.line_num
    if len(starts) != records:
        return  # the two readers disagree (a malformed file): keep the record numbers rather than guess
    con.execute(
        f"""UPDATE {quote_ident(table)} t SET _dm_line = m.line
            FROM (SELECT unnest($lines::BIGINT[]) AS line, generate_subscripts($lines::BIGINT[], 1) + 1 AS record) m
            WHERE t._dm_line = m.record""",
        {"lines": starts},
    )


def _read_parquet(con: duckdb.DuckDBPyConnection, path: Path, table: str, what: str) -> list[str]:
    if not path.is_file():
        raise MissingInputError(f"{what} file not found", file=path)
    try:
        row = con.execute(
            "SELECT count(*) FROM parquet_schema($path) WHERE num_children IS NULL", {"path": str(path)}
        ).fetchone()
        _check_width(int(row[0]) if row else 0, path)
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS
            SELECT * EXCLUDE (file_row_number), CAST(file_row_number + 1 AS BIGINT) AS _dm_line
            FROM read_parquet($path, file_row_number = true)
            """,
            {"path": str(path)},
        )
    except duckdb.Error as exc:
        raise DataError(f"cannot read the Parquet file ({type(exc).__name__})", file=path) from None
    names = [
        row[0]
        for row in con.execute(f"SELECT column_name FROM (DESCRIBE {quote_ident(table)})").fetchall()
        if row[0] != "_dm_line"
    ]
    _check_names(names, path)
    return names


def read_table(con: duckdb.DuckDBPyConnection, path: Path, table: str, what: str) -> list[str]:
    """Load ``path`` (CSV, or Parquet by suffix) into temp table ``table``; its column names in order."""
    if path.suffix.lower() == ".parquet":
        return _read_parquet(con, path, table, what)
    return _read_csv(con, path, table, what)


def lines_where(con: duckdb.DuckDBPyConnection, table: str, condition: str) -> list[int]:
    """The first lines of ``table`` where ``condition`` (trusted SQL) holds."""
    rows = con.execute(
        f"SELECT _dm_line FROM {quote_ident(table)} WHERE {condition} ORDER BY _dm_line LIMIT {MAX_LISTED}"
    ).fetchall()
    return [int(row[0]) for row in rows]
