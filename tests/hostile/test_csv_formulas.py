"""Every CSV dmops writes escapes cells a spreadsheet would run as formulas: one rule (tabular.csv_safe)."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from dmops.cli import app
from dmops.tabular import FORMULA_STARTS, csv_safe
from tests.planning import write

WS = "version: 1\ntimezone: UTC\ncontacts: contacts.csv\nconsent: {email: ok}\n"
HOSTILE_IDS = ['=HYPERLINK("http://evil.example/x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)"]
CAMPAIGN = (
    'id: c\nname: C\nchannel: email\npurpose: transactional\nsender: {from: "Shop <news@shop.example.com>"}\n'
    'send_at: "2026-12-01 10:00"\nvariants:\n  - id: a\n    subject: "Hi"\n    text: "Hello"\n'
)


def _root(tmp_path: Path) -> Path:
    rows = ["contact_id,email,ok"] + [
        f'"{cid.replace(chr(34), chr(34) * 2)}",u{i}@example.com,yes' for i, cid in enumerate(HOSTILE_IDS)
    ]
    rows.append("plain,p@example.com,yes")
    return write(
        tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": "\n".join(rows) + "\n", "campaigns/c.yaml": CAMPAIGN}
    )


def test_plan_out_csv_escapes_formulas_and_parquet_keeps_the_ids(tmp_path: Path) -> None:
    root = _root(tmp_path)
    for name in ("plan.csv", "plan.parquet"):
        result = CliRunner().invoke(
            app, ["-w", str(root), "plan", "c", "--at", "2026-11-30T12:00", "--out", str(root / name)]
        )
        assert result.exit_code == 0, result.output
    with (root / "plan.csv").open(encoding="utf-8", newline="") as handle:
        ids = [row["contact_id"] for row in csv.DictReader(handle)]
    assert sorted(ids) == sorted(["'" + cid for cid in HOSTILE_IDS] + ["plain"])
    assert all(csv_safe(cid) == "'" + cid for cid in HOSTILE_IDS)  # the same rule as report --format csv
    stored = {row[0] for row in duckdb.sql(f"SELECT contact_id FROM '{root / 'plan.parquet'}'").fetchall()}
    assert stored == {*HOSTILE_IDS, "plain"}


def test_the_rule_covers_tab_and_carriage_return() -> None:
    assert set(FORMULA_STARTS) == {"=", "+", "-", "@", "\t", "\r"}
    assert csv_safe("\tx") == "'\tx" and csv_safe("a=b") == "a=b" and csv_safe(3) == 3
