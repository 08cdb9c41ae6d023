"""Real exports: a consent column that is not in the file, padded ids, and the file's own line numbers (SPEC §3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.planning import run_cli as run
from tests.planning import write
from tests.test_send import EMAIL

WS = "version: 1\ntimezone: Asia/Shanghai\ncontacts: contacts.csv\nconsent: {email: email_opt_in}\n"
CONTACTS = "contact_id,email,Email Opt In,tier\nC1,a@example.com,yes,gold\nC2,b@example.com,yes,gold\n"


@pytest.mark.parametrize(
    "args",
    [("validate",), ("plan", "promo", "--at", "2026-11-30T12:00"), ("plan", "promo", "--explain", "C1")],
)
def test_a_consent_column_missing_from_the_file_is_a_config_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    """It used to read as "no consent" for everyone: validate said ok and plan excluded 100% (explain crashed)."""
    contacts = "contact_id,email,Email Opt In,tier\nC1,a@example.com,yes,gold\nC2,b@example.com,yes,gold\n"
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts, "campaigns/promo.yaml": EMAIL})
    code, output = run(root, *args)
    assert code == 78, output
    assert (
        "dmops.yaml:4, key 'consent.email': consent column 'email_opt_in' is not a column of contacts.csv "
        "(closest headers: Email Opt In, email)"
    ) in output


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


@pytest.mark.parametrize(
    ("contacts", "lines"),
    [
        (
            "contact_id,email,email_opt_in\nc1,a@example.com,yes\n\nc2,b@example.com,yes\nc1,c@example.com,yes\n",
            "2 and 5",
        ),
        (
            'contact_id,email,email_opt_in\nc1,a@example.com,yes\nc2,"two\nlines",yes\n\n\nc1,c@example.com,yes\n',
            "2 and 7",
        ),
        (
            "contact_id,email,email_opt_in\nc1,a@example.com,yes\nc2,b@example.com,yes\nc1,c@example.com,yes\n",
            "2 and 4",
        ),
    ],
)
def test_lines_are_the_files_own_after_blank_lines_and_quoted_breaks(tmp_path: Path, contacts: str, lines: str) -> None:
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts})
    code, output = run(root, "validate")
    assert code == 65
    assert f"contacts.csv:{lines[-1]}, key 'contact_id': duplicate contact_id 'c*' (lines {lines})" in output


CONSENT_WS = (
    "version: 1\ntimezone: Asia/Shanghai\ncontacts: contacts.csv\n"
    'consent:\n  email: {column: "Accepts Email Marketing", true_values: ["yes", 是, subscribed]}\n'
)
CONSENT_CONTACTS = (
    "contact_id,email,Accepts Email Marketing,tier\n"
    "c1,a@example.com,是,gold\nc2,b@example.com, Subscribed ,gold\nc3,c@example.com,否,gold\n"
    "c4,d@example.com,true,gold\nc5,e@example.com,YES,gold\n"
)


def test_consent_with_its_own_true_values(tmp_path: Path) -> None:
    """A consent column holding 是/否 or subscribed read as no consent for everyone, silently."""
    campaign = EMAIL.replace("holdout: 0.2\n", "")
    root = write(
        tmp_path / "ws", {"dmops.yaml": CONSENT_WS, "contacts.csv": CONSENT_CONTACTS, "campaigns/promo.yaml": campaign}
    )
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", str(root / "plan.csv"))
    assert code == 0, output
    decisions = dict(line.split(",")[:2] for line in (root / "plan.csv").read_text(encoding="utf-8").splitlines()[1:])
    assert decisions == {"c1": "send", "c2": "send", "c3": "excluded", "c4": "excluded", "c5": "send"}
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--explain", "c3")
    assert code == 0 and "Accepts Email Marketing = '否'" in output


def test_true_values_cannot_be_empty(tmp_path: Path) -> None:
    ws = CONSENT_WS.replace('true_values: ["yes", 是, subscribed]', "true_values: []")
    root = write(tmp_path / "ws", {"dmops.yaml": ws, "contacts.csv": CONSENT_CONTACTS, "campaigns/promo.yaml": EMAIL})
    code, output = run(root, "validate")
    assert code == 78
    assert "dmops.yaml:5, key 'consent.email.true_values'" in output
