"""Strict reading of CSV, Parquet and Excel files into DuckDB tables, and the one rule for CSV cells dmops writes.

Every row is kept or the read fails: ragged rows, bytes that do not decode and
unnamed or repeated columns are errors naming the file and line (CSV), row
(Parquet, first row = 1) or sheet row (.xlsx, header = row 1). Errors never
quote a row, which may hold personal data. Each table gets a ``_dm_line``
column: where every record came from.

DuckDB reads UTF-8 CSV with one kind of line ending itself. A CSV in another
encoding (GB18030 as Excel saves it on Chinese Windows, UTF-16) or with mixed
line endings is first rewritten, line for line, as UTF-8 with LF into a private
temporary folder, and DuckDB reads that copy; an .xlsx sheet is written there
as CSV the same way. Messages still name the user's file and its own lines.
"""

from __future__ import annotations

import codecs
import csv
import io
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
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
    return "row" if path.suffix.lower() in (".parquet", ".xlsx") else "line"


def _opened(path: Path, what: str) -> None:
    """MissingInputError naming ``path`` when it cannot be read."""
    try:
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise MissingInputError(f"{what} file not found", file=path) from None
    except OSError as exc:
        raise MissingInputError(f"cannot read {what} file: {exc.strerror}", file=path) from None


def _header(path: Path, what: str) -> tuple[list[str], str]:
    """The CSV header's column names and delimiter."""
    _opened(path, what)
    with path.open("rb") as handle:
        first = handle.readline(1 << 20)
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


def _read_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    table: str,
    what: str,
    *,
    shown: Path | None = None,
    newlines: int | None = None,
) -> list[str]:
    """Read the UTF-8, one-line-ending CSV ``path``; messages name ``shown`` (the user's file) when given, and
    ``newlines`` is the file's LF count when already known."""
    source, path = path, shown or path
    names, delimiter = _header(source, what)
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
            {"path": str(source), "delim": delimiter, "columns": columns},
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
    _fix_lines(con, source, table, delimiter, newlines)
    return names


def _newlines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            count += chunk.count(b"\n")
    return count


def _line_endings(path: Path) -> tuple[int, bool]:
    """The file's LF count, and whether its line endings are mixed (not all LF, not all CRLF: a lone CR, or
    both kinds), in one pass."""
    lf = cr = crlf = 0
    ends_in_cr = False
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            chunk_cr = chunk.count(b"\r")
            if chunk_cr or ends_in_cr:
                crlf += chunk.count(b"\r\n") + (1 if ends_in_cr and chunk.startswith(b"\n") else 0)
                cr += chunk_cr
            lf += chunk.count(b"\n")
            ends_in_cr = chunk.endswith(b"\r")
    return lf, cr > 0 and not cr == crlf == lf


AUTO = "auto"
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def detect_encoding(path: Path) -> str:
    """``utf-8`` or ``utf-16`` by a byte-order mark, else ``utf-8`` when the first 4 MB decode as UTF-8,
    else ``gb18030`` (what Excel saves on Chinese Windows)."""
    with path.open("rb") as handle:
        head = handle.read(1 << 22)
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8"


def _label(encoding: str) -> str:
    return {"utf-8": "UTF-8", "utf-16": "UTF-16", "gb18030": "GB18030"}.get(encoding, encoding)


def _endings(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _transcode(path: Path, encoding: str, target: Path, *, endings: bool, detected: bool = False) -> None:
    """Write ``path`` decoded from ``encoding`` to ``target`` as UTF-8, line for line; with ``endings``, every
    line ending between records becomes LF (a line break inside a quoted value is part of the value: kept)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig" if encoding == "utf-8" else encoding)("strict")
    lines = 1  # the line the next decoded text starts on
    quoted = False  # inside a quoted value at the end of the last chunk
    carry = ""  # a CR at the end of a chunk outside quotes, which may be the first half of CRLF
    with path.open("rb") as source, target.open("wb") as out:
        while True:
            chunk = source.read(1 << 22)
            try:
                text = carry + decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                before = carry + exc.object[: exc.start].decode(encoding, errors="replace")
                raise DataError(
                    "not valid UTF-8 or GB18030"
                    if detected and encoding == "gb18030"
                    else f"not valid {_label(encoding)}",
                    file=path,
                    line=lines + _endings(before).count("\n"),
                    hint="set contacts.encoding to the file's encoding, or save it as UTF-8",
                ) from None
            if not endings:
                lines += text.count("\n")
                out.write(text.encode("utf-8"))
                if not chunk:
                    return
                continue
            parts = text.split('"')  # part i is inside quotes when quoted, flipped by every quote before it
            inside = [quoted != (i % 2 == 1) for i in range(len(parts))]
            carry = ""
            if chunk and not inside[-1] and parts[-1].endswith("\r"):
                carry, parts[-1] = "\r", parts[-1][:-1]
            lines += sum(_endings(part).count("\n") for part in parts)
            parts = [part if inside[i] else _endings(part) for i, part in enumerate(parts)]
            quoted = inside[-1]
            out.write('"'.join(parts).encode("utf-8"))
            if not chunk:
                return


@dataclass(frozen=True)
class Loaded:
    """A table read from a file: its column names in order, and the encoding its text was read in."""

    names: list[str]
    encoding: str | None  # None for Parquet and .xlsx, which carry their own


def read_source(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    table: str,
    what: str,
    *,
    encoding: str = "utf-8",
    sheet: str | None = None,
) -> Loaded:
    """Load ``path`` (.csv in ``encoding`` or ``auto``, .parquet, or one sheet of an .xlsx) into ``table``."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return Loaded(_read_parquet(con, path, table, what), None)
    if suffix == ".xlsx":
        return Loaded(_read_xlsx(con, path, table, what, sheet), None)
    _opened(path, what)
    chosen = detect_encoding(path) if encoding == AUTO else codecs.lookup(encoding).name
    newlines, mixed = _line_endings(path)
    if chosen == "utf-8" and not mixed:
        return Loaded(_read_csv(con, path, table, what, newlines=newlines), "utf-8")
    with _private_folder() as folder:
        copy = folder / "copy.csv"
        _transcode(path, chosen, copy, endings=mixed, detected=encoding == AUTO)
        return Loaded(_read_csv(con, copy, table, what, shown=path), chosen)


@contextmanager
def _private_folder() -> Iterator[Path]:
    """A temporary folder only this user can read (it holds a copy of personal data), removed after use."""
    with tempfile.TemporaryDirectory(prefix="dmops-") as name:
        yield Path(name)


def _cell_text(value: object) -> str:
    """An Excel cell as the text a CSV export of it would hold: 123 not 123.0, dates in ISO 8601."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


class SheetNotFound(DataError):
    """The .xlsx file has no sheet of that name (whoever named it turns this into their own error)."""

    sheets: tuple[str, ...] = ()  # the sheets it has


def _read_xlsx(con: duckdb.DuckDBPyConnection, path: Path, table: str, what: str, sheet: str | None) -> list[str]:
    """One sheet (the first unless named): row 1 is the header; empty rows are skipped, rows keep their numbers."""
    import python_calamine

    _opened(path, what)
    try:
        book = python_calamine.CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # the reader's own errors: not a zip, not a workbook, encrypted
        raise DataError(f"cannot read the Excel file ({type(exc).__name__})", file=path) from None
    try:
        if sheet is not None and sheet not in book.sheet_names:
            missing = SheetNotFound(
                f"no sheet named '{sheet}'", file=path, hint=f"its sheets: {', '.join(book.sheet_names)}"
            )
            missing.sheets = tuple(book.sheet_names)
            raise missing
        rows = (book.get_sheet_by_name(sheet) if sheet is not None else book.get_sheet_by_index(0)).iter_rows()
        with _private_folder() as folder:
            copy = folder / "sheet.csv"
            _write_sheet(rows, copy, path)
            names = _read_csv(con, copy, table, what, shown=path)
    finally:
        book.close()
    names = names[:-1]  # the sheet row number, written last
    con.execute(f"UPDATE {quote_ident(table)} SET _dm_line = CAST(_dm_sheet_row AS BIGINT)")
    con.execute(f"ALTER TABLE {quote_ident(table)} DROP COLUMN _dm_sheet_row")
    return names


def _write_sheet(rows: Iterator[Sequence[object]], target: Path, path: Path) -> None:
    header = [_cell_text(v).strip() for v in next(rows, [])]
    while header and not header[-1]:
        header.pop()  # formatted but empty cells to the right of the last header
    if not header:
        raise DataError("the sheet has no header row", file=path, line=1, hint="row 1 must name the columns")
    width = len(header)
    with target.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*header, "_dm_sheet_row"])
        for number, row in enumerate(rows, start=2):
            cells = [_cell_text(v) for v in row]
            if any(cells[width:]):
                column = width + next(i for i, v in enumerate(cells[width:]) if v) + 1
                raise DataError(
                    f"a value in column {column}, which has no header", file=path, line=number, key=f"column {column}"
                )
            cells = cells[:width] + [""] * (width - len(cells))
            if any(cells):
                writer.writerow([*cells, number])


def _fix_lines(
    con: duckdb.DuckDBPyConnection, path: Path, table: str, delimiter: str, newlines: int | None = None
) -> None:
    """``_dm_line`` as the file's own line number even after blank lines or quoted line breaks.

    Records are numbered in order at first (record k on line k + 1). When the file has more lines than
    records, the lines are counted once with the csv module and each record gets the line it starts on.
    """
    rows = con.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchone()
    records = int(rows[0]) if rows else 0
    if (_newlines(path) if newlines is None else newlines) <= records + 1:
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
    """Load ``path`` (UTF-8 CSV with any line endings, or Parquet by suffix) into temp table ``table``; its
    column names in order."""
    return read_source(con, path, table, what).names


def lines_where(con: duckdb.DuckDBPyConnection, table: str, condition: str) -> list[int]:
    """The first lines of ``table`` where ``condition`` (trusted SQL) holds."""
    rows = con.execute(
        f"SELECT _dm_line FROM {quote_ident(table)} WHERE {condition} ORDER BY _dm_line LIMIT {MAX_LISTED}"
    ).fetchall()
    return [int(row[0]) for row in rows]
