"""CR/LF in contact data never reaches a header: both render paths replace control characters, lint says so,
and `outbox export --eml` writes whole files."""

from __future__ import annotations

import json
from email import message_from_bytes
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmops.campaign import load_campaign
from dmops.cli import app
from dmops.outbox import MESSAGES
from dmops.send import send
from dmops.workspace import load_workspace
from tests.planning import write
from tests.test_send import WS

AT = __import__("datetime").datetime(2026, 11, 30, 4, 0, tzinfo=__import__("datetime").UTC)
CONTACTS = (
    "contact_id,first_name,email,phone,email_opt_in,sms_opt_in,tier\n"
    'c1,"Al\r\nBcc: attacker@evil.example",al@example.com,+8613800138000,yes,yes,gold\n'
    "c2,Bo,bo@example.com,+8613800138001,yes,yes,gold\n"
)
CAMPAIGN = (
    'id: promo\nname: Promo\nchannel: email\nsender: {from: "Shop <news@shop.example.com>"}\n'
    'unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"\nsend_at: "2026-12-01 10:00"\n'
    'variants:\n  - id: a\n    subject: "Hello {{ first_name }}"\n'
    '    text: "Hi {{ first_name }}\\nBye: {{ unsubscribe_url }}"\n'
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": CONTACTS, "campaigns/promo.yaml": CAMPAIGN})
    (root / ".dmops").mkdir()
    (root / ".dmops" / "secret.key").write_bytes(b"s" * 32)
    return root


@pytest.mark.parametrize("engine", ["jinja", "sql"])
def test_the_subject_carries_no_line_break(root: Path, engine: str) -> None:
    ws = load_workspace(root)
    result = send(ws, load_campaign(root / "campaigns/promo.yaml", ws), AT, engine=engine)
    assert result.folder is not None
    messages = [json.loads(line) for line in (result.folder / MESSAGES).read_text(encoding="utf-8").splitlines()]
    subjects = {m["contact_id"]: m["subject"] for m in messages}
    assert subjects == {"c1": "Hello Al  Bcc: attacker@evil.example", "c2": "Hello Bo"}
    assert "\r\n" in next(m["text"] for m in messages if m["contact_id"] == "c1")  # the body keeps the text as is


def test_both_paths_write_the_same_bytes(tmp_path: Path) -> None:
    outputs = []
    for engine in ("jinja", "sql"):
        root = write(tmp_path / engine, {"dmops.yaml": WS, "contacts.csv": CONTACTS, "campaigns/promo.yaml": CAMPAIGN})
        (root / ".dmops").mkdir()
        (root / ".dmops" / "secret.key").write_bytes(b"s" * 32)
        ws = load_workspace(root)
        result = send(ws, load_campaign(root / "campaigns/promo.yaml", ws), AT, engine=engine)
        assert result.folder is not None
        outputs.append((result.folder / MESSAGES).read_bytes())
    assert outputs[0] == outputs[1]


def test_lint_reports_it_and_export_writes_clean_headers(root: Path, tmp_path: Path) -> None:
    lint = CliRunner().invoke(app, ["-w", str(root), "lint", "promo", "--format", "json"])
    findings = json.loads(lint.stdout)["findings"]
    assert [(f["rule"], f["severity"], f["part"]) for f in findings] == [("email.header-control", "warning", "subject")]
    assert CliRunner().invoke(app, ["-w", str(root), "send", "promo", "--at", "2026-11-30T12:00"]).exit_code == 0
    eml = tmp_path / "eml"
    result = CliRunner().invoke(app, ["-w", str(root), "outbox", "export", "--eml", str(eml)])
    assert result.exit_code == 0, result.output
    files = sorted(eml.iterdir())
    assert len(files) == 2 and all(f.stat().st_size > 0 for f in files)
    for file in files:
        parsed = message_from_bytes(file.read_bytes())
        assert parsed["Bcc"] is None
        assert "\n" not in str(parsed["Subject"]) and "\r" not in str(parsed["Subject"])
