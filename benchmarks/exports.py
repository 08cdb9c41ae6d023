"""Reading real exports: a 1M-row contact list as plain CSV, mapped CSV, GB18030, mixed line endings and .xlsx.

    python benchmarks/exports.py [--rows 1000000] [--repeat 3] [--out BENCHMARKS.md]

Each figure is ``dmops validate`` (which reads and checks every row of the contact list) as a
whole process, median of ``--repeat`` runs. The .xlsx is also read by the two maintained readers
dmops could use, python-calamine and openpyxl (read-only mode), row by row and nothing else,
to show why dmops uses calamine. The section between the ``exports`` markers of ``--out`` is
replaced with the table.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

BEGIN, END = "<!-- exports: begin -->", "<!-- exports: end -->"
HEAD = "version: 1\ntimezone: Asia/Shanghai\nphone_region: CN\n"
PLAIN_HEADERS = ["contact_id", "first_name", "email", "phone", "email_opt_in", "total_spent", "tier"]
SHOPIFY_HEADERS = ["Customer ID", "First Name", "Email", "Phone", "Accepts Email Marketing", "Total Spent", "Tags"]
CHINESE_HEADERS = ["客户ID", "姓名", "邮箱", "手机号", "邮件订阅", "累计消费", "会员等级"]


def write_plain(path: Path, rows: int) -> None:
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT printf('C%07d', i) AS contact_id, 'Name' || (i % 997) AS first_name,
                         'u' || i || '@example.com' AS email, '+86138' || lpad(CAST(i AS VARCHAR), 8, '0') AS phone,
                         CASE WHEN i % 5 = 0 THEN 'no' ELSE 'yes' END AS email_opt_in,
                         round((hash(i) % 500000) / 100.0, 2) AS total_spent,
                         (['gold', 'silver', 'bronze'])[CAST(1 + i % 3 AS BIGINT)] AS tier
                  FROM range({rows}) t(i)) TO '{path}' (HEADER, DELIMITER ',')"""
    )


def with_headers(plain: Path, target: Path, headers: list[str], encoding: str, mixed: bool) -> None:
    """The plain file with other headers, in another encoding, or with CRLF on every other line.

    The generated values hold no comma, quote or line break, so rows are joined as they are."""
    with plain.open(encoding="utf-8") as source, target.open("w", encoding=encoding, newline="") as out:
        next(source)
        out.write(",".join(headers) + "\n")
        for number, line in enumerate(source):
            row = line.rstrip("\n").split(",")
            if headers is CHINESE_HEADERS and row[4] == "yes":
                row[4] = "是"
            out.write(",".join(row) + ("\r\n" if mixed and number % 2 else "\n"))


def write_xlsx(plain: Path, target: Path) -> float:
    import openpyxl

    start = time.perf_counter()
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("contacts")
    with plain.open(encoding="utf-8", newline="") as source:
        for number, row in enumerate(csv.reader(source)):
            sheet.append(row if number == 0 else [*row[:5], float(row[5]), row[6]])
    book.save(target)
    return time.perf_counter() - start


def read_with_calamine(path: Path) -> int:
    import python_calamine

    book = python_calamine.CalamineWorkbook.from_path(str(path))
    return sum(1 for _ in book.get_sheet_by_index(0).iter_rows())


def read_with_openpyxl(path: Path) -> int:
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True)
    count = sum(1 for _ in book.worksheets[0].iter_rows(values_only=True))
    book.close()
    return count


def timed(command: list[str], cwd: Path, repeat: int) -> float:
    walls = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return statistics.median(walls)


def workspace(root: Path, contacts: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "campaigns").mkdir(exist_ok=True)
    (root / "dmops.yaml").write_text(HEAD + contacts, encoding="utf-8")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "BENCHMARKS.md")
    args = parser.parse_args()
    validate = [sys.executable, "-m", "dmops", "validate"]
    results: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="dmops-exports-") as name:
        base = Path(name)
        plain = base / "plain.csv"
        write_plain(plain, args.rows)
        cases = {
            "plain CSV (dmops headers, UTF-8)": ("plain", PLAIN_HEADERS, "utf-8", False),
            "mapped CSV (Shopify headers)": ("shopify", SHOPIFY_HEADERS, "utf-8", False),
            "mapped CSV, GB18030 (Chinese headers)": ("gb18030", CHINESE_HEADERS, "gb18030", False),
            "mapped CSV, mixed CRLF/LF": ("mixed", SHOPIFY_HEADERS, "utf-8", True),
        }
        mappings = {
            "plain": "contacts: contacts.csv\nconsent: {email: email_opt_in}\n",
            "shopify": "contacts:\n  path: contacts.csv\n  columns: {contact_id: Customer ID, first_name: First Name,"
            " email: Email, phone: Phone, total_spent: Total Spent, tier: Tags}\n"
            "consent: {email: Accepts Email Marketing}\n",
            "gb18030": "contacts:\n  path: contacts.csv\n  columns: {contact_id: 客户ID, first_name: 姓名, email: 邮箱,"
            " phone: 手机号, total_spent: 累计消费, tier: 会员等级}\n"
            "consent:\n  email: {column: 邮件订阅, true_values: [是]}\n",
        }
        mappings["mixed"] = mappings["shopify"]
        for label, (key, headers, encoding, mixed) in cases.items():
            root = workspace(base / key, mappings[key])
            if key == "plain":
                plain.replace(root / "contacts.csv")
                plain = root / "contacts.csv"
            else:
                with_headers(plain, root / "contacts.csv", headers, encoding, mixed)
            results.append((label, timed(validate, root, args.repeat), ""))
        xlsx_root = workspace(base / "xlsx", "contacts: contacts.xlsx\nconsent: {email: email_opt_in}\n")
        written = write_xlsx(plain, xlsx_root / "contacts.xlsx")
        size = (xlsx_root / "contacts.xlsx").stat().st_size / 1e6
        results.append((".xlsx, one sheet", timed(validate, xlsx_root, args.repeat), f"{size:.0f} MB file"))
        for reader, read in (("python-calamine", read_with_calamine), ("openpyxl (read-only)", read_with_openpyxl)):
            start = time.perf_counter()
            count = read(xlsx_root / "contacts.xlsx")
            seconds = time.perf_counter() - start
            assert count == args.rows + 1, (reader, count)
            results.append((f".xlsx rows read by {reader} alone", seconds, "one run, in-process"))
        results.append(("(writing the .xlsx with openpyxl, for the test data)", written, "one run"))
    base_seconds = results[0][1]
    lines = [
        BEGIN,
        "## Reading real exports",
        "",
        f"`benchmarks/exports.py`: `dmops validate` reading and checking {args.rows:,} contacts, as a whole process,"
        f" median of {args.repeat} runs; the same people in every file.",
        "",
        "| contacts file | seconds | vs plain CSV | note |",
        "|---|---:|---:|---|",
    ]
    for label, seconds, note in results:
        ratio = f"{seconds / base_seconds:.2f}×" if not label.startswith(("(", ".xlsx rows")) else ""
        lines.append(f"| {label} | {seconds:.2f} | {ratio} | {note} |")
    lines.append(END)
    table = "\n".join(lines)
    print(table)
    text = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + table + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + table + "\n"
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
