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


def transports(port: int, security: str = "starttls", ca_file: str = "ca.pem", **extra: str) -> str:
    lines = "".join(f"    {k}: {v}\n" for k, v in extra.items())
    return f"""\
transports:
  mail:
    kind: smtp
    host: 127.0.0.1
    port: {port}
    security: {security}
    ca_file: {ca_file}
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
    # a rerun hands nothing over twice, and leaves no empty journal behind
    journals = sorted((root / ".dmops" / "deliveries").iterdir())
    code, again = deliver(root)
    assert code == 0 and again["transports"][0]["states"] == {}
    assert len(server.received) == len(messages)
    assert sorted((root / ".dmops" / "deliveries").iterdir()) == journals


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


def _people(n: int, **special: str) -> str:
    """``n`` contacts; ``special`` maps a contact id to the local part its address gets."""
    rows = {
        cid: f"{cid},P{cid},{local}@example.com,+86138{int(cid):08d},yes,yes,gold" for cid, local in special.items()
    }
    return contacts(n, **rows)


def test_a_connection_dropped_after_the_final_dot_is_in_doubt_held_and_resent_only_when_asked(
    tmp_path: Path, server: MailServer
) -> None:
    root = workspace(tmp_path, server, _people(10, **{"00003": "cat+drop"}))
    total = len(outbox(root))
    code, result = deliver(root)
    assert code == 0  # nothing queued or deferred is left: the in-doubt one is held, not retried
    states = result["transports"][0]["states"]
    assert states == {"accepted": total - 1, "in_doubt": 1}
    [held] = result["in_doubt"]
    assert outbox(root)[held]["to"] == "cat+drop@example.com"
    code, again = deliver(root)
    assert again["transports"][0]["states"] == {} and again["in_doubt"] == [held]
    got = [r.recipient for r in server.received]
    assert got.count("cat+drop@example.com") == 1  # the server did take it once
    code, output = run(root, "deliver", "--at", AT, "--in-doubt", "resend")
    assert "WARNING: --in-doubt resend" in output and "some recipients may get them twice" in output
    got = [r.recipient for r in server.received]
    assert got.count("cat+drop@example.com") == 2  # at least once, said loudly
    assert status(root)["promo"]["in_doubt"] == 1  # dropped again after the dot: still in doubt


def test_a_421_defers_that_message_and_the_next_ones_go_on_a_new_connection(tmp_path: Path, server: MailServer) -> None:
    root = workspace(tmp_path, server, _people(12, **{"00003": "dan+busy"}), max_connections="1")
    total = len(outbox(root))
    code, result = deliver(root)
    assert code == 75
    assert result["transports"][0]["states"] == {"accepted": total - 1, "deferred": 1}
    assert len(server.received) == total - 1


def test_no_one_second_window_holds_more_than_per_second(tmp_path: Path, server: MailServer) -> None:
    root = workspace(tmp_path, server, contacts(20), rate="{per_second: 4}")
    total = len(outbox(root))
    assert total >= 12
    code, _ = deliver(root)
    assert code == 0 and len(server.received) == total
    times = sorted(server.handler.mail_from_at)
    # The server runs in this process, so under load its clock readings lag by a few tens of milliseconds:
    # windows of 0.95 s absorb that jitter (dmops paces on windows of 1.02 s).
    busiest = max(sum(1 for t in times if start <= t < start + 0.95) for start in times)
    assert busiest <= 4
    assert times[-1] - times[0] >= (total - 1) // 4 - 0.1  # and it did not stall: about 4 a second


def test_the_per_hour_limit_holds_across_runs(tmp_path: Path, server: MailServer) -> None:
    root = workspace(tmp_path, server, contacts(20), rate="{per_hour: 5}")
    total = len(outbox(root))
    code, result = deliver(root)
    assert code == 75 and result["transports"][0]["states"] == {"accepted": 5}
    assert result["transports"][0]["stopped"] == "per_hour" and result["not_handed_over"] == total - 5
    code, output = run(root, "deliver", "--at", "2026-12-01T10:30", "--format", "json")
    assert code == 75 and json.loads(output)["transports"][0]["states"] == {}  # a new run, the same hour
    code, output = run(root, "deliver", "--at", "2026-12-01T11:01", "--format", "json")
    assert code == 75 and json.loads(output)["transports"][0]["states"] == {"accepted": 5}
    assert len(server.received) == 10


def test_a_suppression_imported_after_send_is_checked_at_delivery(tmp_path: Path, server: MailServer) -> None:
    root = workspace(tmp_path, server, contacts(10))
    sent = {m["contact_id"]: m for m in outbox(root).values()}
    who = sorted(sent)[0]
    events = tmp_path / "unsub.csv"
    events.write_text(f"event,ts,message_id\nunsubscribe,2026-11-30T13:00:00,{sent[who]['message_id']}\n")
    assert run(root, "events", "import", str(events))[0] == 0
    code, result = deliver(root)
    assert code == 0 and result["transports"][0]["states"] == {"accepted": len(sent) - 1, "suppressed": 1}
    assert sent[who]["to"] not in [r.recipient for r in server.received]


def test_a_deferred_message_fails_after_max_age(tmp_path: Path, server: MailServer) -> None:
    root = workspace(tmp_path, server, _people(6, **{"00003": "eve+defer"}), max_age="1d")
    code, result = deliver(root)
    assert code == 75 and result["transports"][0]["states"]["deferred"] == 1
    code, output = run(root, "deliver", "--at", "2026-12-02T10:01", "--format", "json")  # a day after the try
    assert code == 0, output
    assert json.loads(output)["transports"][0]["states"] == {"failed": 1}
    assert [r.recipient for r in server.received].count("eve+defer@example.com") == 0


def test_stop_and_a_second_run_are_refused_with_75(tmp_path: Path, server: MailServer) -> None:
    from dmops.runlock import DELIVER_LOCK_FILE, RunLock

    root = workspace(tmp_path, server, contacts(6))
    (root / "STOP").write_text("checking the list\n")
    code, output = run(root, "deliver", "--at", AT)
    assert code == 75 and "sending is stopped: checking the list" in output
    (root / "STOP").unlink()
    with RunLock(root / ".dmops", DELIVER_LOCK_FILE, "dmops deliver"):
        code, output = run(root, "deliver", "--at", AT)
    assert code == 75 and "another dmops deliver is running in this workspace" in output
    assert server.received == []


def test_dkim_signature_verifies(tmp_path: Path, server: MailServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setenv("DMOPS_DKIM_KEY", pem.decode())
    root = workspace(
        tmp_path, server, contacts(3), dkim="{domain: shop.example.com, selector: s1, key_env: DMOPS_DKIM_KEY}"
    )
    assert deliver(root)[0] == 0
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.shop.example.com."
        return record

    assert server.received
    for received in server.received:
        assert received.data.startswith(b"DKIM-Signature:")
        assert dkim.verify(received.data, dnsfunc=dns)


def test_chinese_subject_sender_name_and_html_arrive_intact(tmp_path: Path, server: MailServer) -> None:
    campaign = EMAIL.replace('"Shop <news@shop.example.com>"', '"好物商城 <news@shop.example.com>"').replace(
        "Hi {{ first_name | default('there') }}", "双12 限时闪购 {{ first_name }}"
    )
    root = write(
        tmp_path / "ws",
        {"dmops.yaml": WS + transports(server.port), "contacts.csv": contacts(3), "campaigns/promo.yaml": campaign},
    )
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00")[0] == 0
    messages = outbox(root)
    assert deliver(root)[0] == 0
    assert server.received
    for received in server.received:
        mail = received.message
        sent = messages[mail["X-Dmops-Message-Id"]]
        assert mail["Subject"] == sent["subject"] and sent["subject"].startswith("双12 限时闪购 Name")
        [sender] = mail["From"].addresses
        assert sender.display_name == "好物商城" and sender.addr_spec == "news@shop.example.com"
        assert _body(mail, "plain") == sent["text"]
        assert _body(mail, "html") == sent["html"]


def test_a_relay_refusing_the_sender_bounces_nobody(tmp_path: Path, server: MailServer) -> None:
    server.handler.refuse_sender = True
    root = workspace(tmp_path, server, contacts(10), max_connections="1")
    code, result = deliver(root)
    [mail] = result["transports"]
    assert code == 75 and mail["states"] == {"deferred": 1} and result["bounces_recorded"] == 0
    assert mail["stopped"].startswith("unreachable: the relay refused the sender: 553")
    assert "@" not in mail["stopped"].replace("@bounces.shop.example.com", "")  # the reply's address is masked
    code, output = run(root, "plan", "promo", "--at", "2026-12-02T12:00", "--format", "json")
    assert code == 0 and json.loads(output)["excluded"]["suppressed"] == 0, output


def test_a_suppressed_address_of_the_contact_on_another_channel_stops_its_message(
    tmp_path: Path, server: MailServer
) -> None:
    root = workspace(tmp_path, server, contacts(6))
    sent = {m["contact_id"]: m for m in outbox(root).values()}
    who = sorted(sent)[0]
    phone = f"+86138{int(who):08d}"  # the contact's phone, on no message of this campaign
    (root / "optouts.csv").write_text(f"address,channel,reason\n{phone},,manual\n")
    yaml = (root / "dmops.yaml").read_text() + "suppressions: [optouts.csv]\n"
    (root / "dmops.yaml").write_text(yaml)
    code, result = deliver(root)
    assert code == 0 and result["transports"][0]["states"] == {"accepted": len(sent) - 1, "suppressed": 1}
    assert sent[who]["to"] not in [r.recipient for r in server.received]


def test_a_non_ascii_address_fails_cleanly(tmp_path: Path, server: MailServer) -> None:
    root = workspace(tmp_path, server, _people(6, **{"00003": "josé"}))
    code, result = deliver(root)
    assert code == 0, result
    states = result["transports"][0]["states"]
    assert states["failed"] == 1 and set(states) == {"accepted", "failed"}
    journal = "".join(p.read_text() for p in (root / ".dmops" / "deliveries").glob("*.jsonl"))
    assert "needs SMTPUTF8" in journal and "josé" not in journal


def test_a_first_attempt_long_after_send_after_is_retried_not_failed(tmp_path: Path, server: MailServer) -> None:
    root = workspace(tmp_path, server, _people(4, **{"00003": "fay+defer"}))
    code, output = run(root, "deliver", "--at", "2026-12-05T10:00", "--format", "json")  # four days late
    assert code == 75, output
    assert json.loads(output)["transports"][0]["states"]["deferred"] == 1


def test_a_failing_progress_callback_stops_the_run_instead_of_hanging_it(tmp_path: Path, server: MailServer) -> None:
    import threading
    from datetime import UTC, datetime

    from dmops.deliver import deliver as deliver_api
    from dmops.workspace import load_workspace

    root = workspace(tmp_path, server, contacts(12), max_connections="1")

    def broken(transport: str, state: str) -> None:
        raise RuntimeError("progress display failed")

    outcome: list[BaseException] = []

    def go() -> None:
        try:
            deliver_api(load_workspace(root), datetime(2026, 12, 1, 2, 0, tzinfo=UTC), progress=broken)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "deliver hung after its connection's thread failed"
    assert outcome and isinstance(outcome[0], RuntimeError)
