"""Careless input that used to pass silently: each is now an error or a warning that says what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.planning import run_cli as run
from tests.planning import write
from tests.test_send import EMAIL, WS, contacts


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(5), "campaigns/promo.yaml": EMAIL})


def test_a_campaign_id_with_a_trailing_newline_is_refused(root: Path) -> None:
    write(root, {"campaigns/promo.yaml": EMAIL.replace("id: promo\n", 'id: "promo\\n"\n')})
    code, output = run(root, "validate")
    assert code == 78
    assert "campaigns/promo.yaml:1, key 'id'" in output


def test_a_period_report_as_csv_is_refused_not_printed_as_markdown(root: Path) -> None:
    code, output = run(root, "report", "--period", "month", "--format", "csv")
    assert code == 2
    assert "error: the --period report comes as table, md or json, not csv" in output


def test_quiet_hours_that_start_when_they_end_are_a_warning(root: Path) -> None:
    write(root, {"dmops.yaml": WS + 'quiet_hours: {start: "09:00", end: "09:00"}\n'})
    code, output = run(root, "validate")
    assert code == 0
    assert "warning: dmops.yaml:6, key 'quiet_hours': quiet_hours starts and ends at 09:00: no quiet hours apply" in (
        output
    )


def test_a_nul_byte_in_a_contact_value_is_refused(root: Path) -> None:
    (root / "contacts.csv").write_text(contacts(5).replace("Name3", "Na\x00me3"), encoding="utf-8")
    code, output = run(root, "validate")
    assert code == 65
    assert "contacts.csv:5, key 'first_name': a NUL character in column 'first_name'" in output
    assert "Na\x00me3" not in output
