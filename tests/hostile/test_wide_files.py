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
