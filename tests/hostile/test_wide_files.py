"""An export with thousands of columns is refused at once, naming the limit (it took 85 s and 3.4 GB to send)."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from dmops.cli import app
from dmops.tabular import MAX_COLUMNS
from tests.planning import write

WS = "version: 1\ntimezone: UTC\ncontacts: {file}\nconsent: {{email: ok}}\n"


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_ten_thousand_columns_are_refused_quickly(tmp_path: Path, suffix: str) -> None:
    names = ["contact_id", "email", "ok", *[f"extra_{i}" for i in range(9_997)]]
    root = write(tmp_path / "ws", {"dmops.yaml": WS.format(file=f"contacts.{suffix}")})
    csv_path = root / "contacts.csv"
    csv_path.write_text(",".join(names) + "\n" + ",".join(["c1", "a@example.com", "yes", *["x"] * 9_997]) + "\n")
    if suffix == "parquet":
        duckdb.sql(f"COPY (SELECT * FROM read_csv('{csv_path}', all_varchar = true)) TO '{root / 'contacts.parquet'}'")
    started = time.monotonic()
    result = CliRunner().invoke(app, ["-w", str(root), "validate"])
    assert time.monotonic() - started < 10
    assert result.exit_code == 65, result.output
    assert f"contacts.{suffix}:1: the file has 10,000 columns; dmops reads at most {MAX_COLUMNS:,}" in result.output


def test_the_limit_itself_is_allowed() -> None:
    from dmops.errors import DataError
    from dmops.tabular import _check_names

    _check_names([f"c{i}" for i in range(MAX_COLUMNS)], Path("contacts.csv"))
    with pytest.raises(DataError, match="the file has 1,001 columns"):
        _check_names([f"c{i}" for i in range(MAX_COLUMNS + 1)], Path("contacts.csv"))


def test_a_campaign_loads_only_the_columns_it_can_read(tmp_path: Path) -> None:
    """A wide export costs the columns a campaign uses: contacts keeps dmops's own and the mentioned ones."""
    from dmops.campaign import load_campaign
    from dmops.plan import prepare
    from dmops.workspace import load_workspace

    extras = [f"extra_{i}" for i in range(900)]
    names = ["contact_id", "email", "ok", "tier", *extras]
    rows = [",".join([f"c{r}", f"a{r}@example.com", "yes", "gold", *["x"] * 900]) for r in range(3)]
    campaign = (
        'id: c\nname: C\nchannel: email\npurpose: transactional\nsender: {from: "Shop <news@shop.example.com>"}\n'
        'send_at: "2026-12-01 10:00"\naudience: {where: "tier = \'gold\'"}\n'
        'variants:\n  - id: a\n    subject: "Hi"\n    text: "Your code: {{ extra_7 }}"\n'
    )
    root = write(
        tmp_path / "ws",
        {
            "dmops.yaml": WS.format(file="contacts.csv"),
            "contacts.csv": ",".join(names) + "\n" + "\n".join(rows) + "\n",
            "campaigns/c.yaml": campaign,
        },
    )
    ws = load_workspace(root)
    con = prepare(ws, load_campaign(root / "campaigns/c.yaml", ws))
    columns = [r[0] for r in con.execute("DESCRIBE contacts").fetchall() if not r[0].startswith("_dm")]
    con.close()
    assert columns == ["contact_id", "email", "ok", "tier", "extra_7"]
    result = CliRunner().invoke(app, ["-w", str(root), "send", "c", "--at", "2026-11-30T12:00"])
    assert result.exit_code == 0, result.output
    messages = (root / "outbox" / "c" / "once" / "run-0001" / "messages.jsonl").read_text(encoding="utf-8")
    assert messages.count('"text":"Your code: x"') == 3
