"""Errors and Ctrl-C end every command the same way: one function prints them and picks the exit code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from dmops.cli import Options, app, exit_code_for
from dmops.errors import IOFailure
from tests.planning import write
from tests.test_send import EMAIL, WS, contacts


def test_the_clock_is_the_one_the_context_gives(tmp_path: Path) -> None:
    root = write(tmp_path, {"dmops.yaml": WS, "contacts.csv": contacts(3), "campaigns/promo.yaml": EMAIL})
    fixed = datetime(2027, 3, 4, 5, 6, 7, tzinfo=UTC)
    result = CliRunner().invoke(
        app, ["-w", str(root), "plan", "promo", "--format", "json"], obj=Options(now=lambda: fixed)
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["at"] == "2027-03-04T05:06:07Z"


def test_an_interruption_inside_a_dmops_error_is_still_an_interruption(capsys) -> None:
    try:
        try:
            raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")
        except duckdb.Error:
            raise IOFailure("cannot read the ledger (InterruptException)") from None
    except IOFailure as wrapped:
        code = exit_code_for(wrapped, Options(interrupted="nothing was written"))
    assert code == 130
    assert capsys.readouterr().err == "interrupted: nothing was written\n"
    assert exit_code_for(IOFailure("disk full"), None) == 74
