"""`dmops deliver` to a real SMTP server on loopback (aiosmtpd: STARTTLS on a certificate made by the test,
AUTH required): what the server receives, and the states dmops records (SPEC §11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.mailserver import PASSWORD, USER, MailServer
from tests.planning import run_cli as run
from tests.planning import write
from tests.test_send import EMAIL, WS, contacts

AT = "2026-12-01T10:00"  # the campaign's send_at (Asia/Shanghai)


def transports(port: int, **extra: str) -> str:
    lines = "".join(f"    {k}: {v}\n" for k, v in extra.items())
    return f"""\
transports:
  mail:
    kind: smtp
    host: 127.0.0.1
    port: {port}
    security: starttls
    ca_file: ca.pem
    username_env: DMOPS_SMTP_USER
    password_env: DMOPS_SMTP_PASSWORD
    bounce_domain: bounces.shop.example.com
{lines}channels: {{email: mail}}
"""


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DMOPS_SMTP_USER", USER)
    monkeypatch.setenv("DMOPS_SMTP_PASSWORD", PASSWORD)
    (tmp_path / "ws").mkdir()
    with MailServer(tmp_path / "ws") as server:
        yield server


def workspace(tmp_path: Path, server: MailServer, people: str, **extra: str) -> Path:
    root = write(
        tmp_path / "ws",
        {"dmops.yaml": WS + transports(server.port, **extra), "contacts.csv": people, "campaigns/promo.yaml": EMAIL},
    )
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00")[0] == 0
    return root


def outbox(root: Path) -> dict[str, dict]:
    return {
        m["message_id"]: m
        for f in (root / "outbox").rglob("messages.jsonl")
        for m in map(json.loads, f.read_text().splitlines())
        if m["to"]
    }


def deliver(root: Path, *args: str) -> tuple[int, dict]:
    code, output = run(root, "deliver", "--at", AT, "--format", "json", *args)
    assert code in (0, 75), output
    return code, json.loads(output)


def _body(mail: object, kind: str) -> str:
    return mail.get_body((kind,)).get_content().replace("\r\n", "\n").rstrip("\n")  # type: ignore[attr-defined]


def status(root: Path) -> dict:
    code, output = run(root, "deliver", "--status", "--format", "json")
    assert code == 0, output
    return json.loads(output)


def test_every_message_is_received_once_with_verp_message_id_and_unsubscribe_headers(
    tmp_path: Path, server: MailServer
) -> None:
    root = workspace(tmp_path, server, contacts(30))
    messages = outbox(root)
    code, result = deliver(root)
    assert code == 0
    assert result["transports"][0]["states"] == {"accepted": len(messages)}
    assert sorted(r.recipient for r in server.received) == sorted(m["to"] for m in messages.values())
    for received in server.received:
        mail = received.message
        message_id = mail["X-Dmops-Message-Id"]
        sent = messages[message_id]
        assert received.sender == f"bounces+{message_id}@bounces.shop.example.com"
        assert mail["Message-ID"] == f"<{message_id}@shop.example.com>"
        assert mail["List-Unsubscribe"] == sent["headers"]["List-Unsubscribe"]
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert mail["From"] == "Shop <news@shop.example.com>"
        assert mail["Subject"] == sent["subject"]
        assert _body(mail, "plain") == sent["text"]
        assert _body(mail, "html") == sent["html"]
    assert status(root) == {"promo": {"accepted": len(messages)}}
    # a rerun hands nothing over twice
    code, again = deliver(root)
    assert code == 0 and again["transports"][0]["states"] == {}
    assert len(server.received) == len(messages)


def test_451_is_deferred_then_accepted_550_bounced_and_suppressed_from_the_next_plan(
    tmp_path: Path, server: MailServer
) -> None:
    people = contacts(
        10,
        **{
            "00003": "00003,Ann,ann+defer@example.com,+8613800000003,yes,yes,gold",
            "00002": "00002,Bob,bob+bounce@example.com,+8613800000002,yes,yes,gold",
        },
    )
    root = workspace(tmp_path, server, people)
    sent = {m["contact_id"]: m for m in outbox(root).values()}
    assert {"00003", "00002"} <= sent.keys()  # not in the holdout
    code, result = deliver(root)
    states = result["transports"][0]["states"]
    assert code == 75 and result["deferred_waiting"] == 1  # the 451 waits for a later run
    assert states["deferred"] == 1 and states["bounced"] == 1 and states["accepted"] == len(sent) - 2
    assert result["bounces_recorded"] == 1
    # not yet due: the first retry is a minute (and up to 25% more) later
    code, result = deliver(root)
    assert code == 75 and result["transports"][0]["states"] == {}
    code, output = run(root, "deliver", "--at", "2026-12-01T10:02", "--format", "json")
    assert code == 0, output
    assert json.loads(output)["transports"][0]["states"] == {"accepted": 1}
    got = [r.recipient for r in server.received]
    assert got.count("ann+defer@example.com") == 1 and "bob+bounce@example.com" not in got
    # 550: never retried, and the next plan leaves Bob out as suppressed
    assert status(root)["promo"] == {"accepted": len(sent) - 1, "bounced": 1}
    code, output = run(root, "plan", "promo", "--at", "2026-12-02T12:00", "--format", "json")
    assert code == 0, output
    plan = json.loads(output)
    assert plan["excluded"]["suppressed"] >= 1
