"""No error shows a contact's values unless --show-pii asks for them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dmops.cli import app
from tests.hostile.test_templates import campaign
from tests.planning import write
from tests.test_send import WS

EMAIL = "zhang.wei.1988@qq.com"
CONTACTS = (
    f"contact_id,first_name,email,phone,email_opt_in,sms_opt_in,tier\nc1,Wei,{EMAIL},+8613800138000,yes,yes,gold\n"
)


def run(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, [*args[:1], "-w", str(root), *args[1:]] if args[0] == "--show-pii" else ["-w", str(root), *args]
    )
    return result.exit_code, result.stderr + result.stdout


def test_a_key_taken_from_the_data_is_masked(tmp_path: Path) -> None:
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": CONTACTS})
    write(root, {"campaigns/promo.yaml": campaign("{% set d = {} %}{{ d[email] }}")})
    code, output = run(root, "send", "promo", "--at", "2026-11-30T12:00", "--skip-lint")
    assert code == 65
    assert EMAIL not in output and "zhang" not in output
    assert "a key taken from the contact data (z***) is missing for contact c*" in output
    code, output = run(root, "--show-pii", "send", "promo", "--at", "2026-11-30T12:00", "--skip-lint")
    assert code == 65 and f"'{EMAIL}' is missing or empty for contact c1" in output


def test_a_value_quoted_by_an_exception_is_masked(tmp_path: Path) -> None:
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": CONTACTS})
    write(root, {"campaigns/promo.yaml": campaign("{{ ['x'].index(email) }}")})
    code, output = run(root, "send", "promo", "--at", "2026-11-30T12:00", "--skip-lint")
    assert code == 65, output
    assert EMAIL not in output
    assert "ValueError: 'z***' is not in list" in output


def test_a_duplicate_id_is_masked(tmp_path: Path) -> None:
    contacts = f"contact_id,email,email_opt_in\n{EMAIL},a@example.com,yes\n{EMAIL},b@example.com,yes\n"
    root = write(
        tmp_path / "ws",
        {
            "dmops.yaml": WS.replace(
                "consent: {email: email_opt_in, sms: sms_opt_in}", "consent: {email: email_opt_in}"
            ),
            "contacts.csv": contacts,
        },
    )
    code, output = run(root, "validate")
    assert code == 65, output
    assert EMAIL not in output
    assert "contacts.csv:3, key 'contact_id': duplicate contact_id 'zh*****************om' (lines 2 and 3)" in output
