"""Real exports: ids with spaces around them are one contact (SPEC §3: ids are trimmed)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dmops.cli import app
from tests.planning import write
from tests.test_send import EMAIL

WS = "version: 1\ntimezone: Asia/Shanghai\ncontacts: contacts.csv\nconsent: {email: email_opt_in}\n"
CONTACTS = "contact_id,email,Email Opt In,tier\nC1,a@example.com,yes,gold\nC2,b@example.com,yes,gold\n"


def run(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["-w", str(root), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stderr + result.stdout


def test_ids_with_spaces_around_them_are_the_same_contact(tmp_path: Path) -> None:
    contacts = "contact_id,email,email_opt_in\n C00052 ,a@example.com,yes\nC00052,b@example.com,yes\n"
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts, "campaigns/promo.yaml": EMAIL})
    code, output = run(root, "validate")
    assert code == 65
    assert "contacts.csv:3, key 'contact_id': duplicate contact_id 'C0**52' (lines 2 and 3)" in output


def test_a_padded_id_is_planned_and_sent_trimmed(tmp_path: Path) -> None:
    contacts = "contact_id,email,email_opt_in,tier\n  C7  ,a@example.com,yes,gold\n"
    root = write(
        tmp_path / "ws",
        {"dmops.yaml": WS, "contacts.csv": contacts, "campaigns/promo.yaml": EMAIL.replace("holdout: 0.2\n", "")},
    )
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", str(root / "plan.csv"))
    assert code == 0, output
    assert (root / "plan.csv").read_text(encoding="utf-8").splitlines()[1].startswith("C7,send,")
