"""`dmops bounces import` (SPEC §11) on real bounce and complaint messages (tests/reference-data/bounces, from
sisimai's set of emails, as they are) and on a DSN sent back to dmops's VERP address."""

from __future__ import annotations

import json
import mailbox
import shutil
from pathlib import Path

import pytest

from tests.conftest import REFERENCE
from tests.planning import run_cli as run
from tests.planning import write
from tests.test_deliver_e2e import CAMPAIGN
from tests.test_send import WS

SAMPLES = REFERENCE / "bounces"
# The failed or complaining recipient of each sample, as the sample names it.
RECIPIENTS = {
    "00001": "userunknown@bouncehammer.jp",  # rfc3464-01: 5.1.1, hard
    "00002": "shironeko@example.co.jp",  # lhost-amazonses-01: 5.0.0, hard
    "00003": "nekochan@libsisimai.org",  # lhost-opensmtpd-06: delayed 4.4.7, no bounce (it may yet arrive)
    "00004": "this-local-part-does-not-exist-on-yahoo@yahoo.com",  # arf-02: Yahoo! complaint
    "00005": "kijitora@y.example.com",  # arf-14: Amazon SES complaint
    "00006": "someone.else@example.net",  # no report about them
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    rows = ["contact_id,first_name,email,phone,email_opt_in,sms_opt_in,tier"]
    rows += [f"{cid},N{cid},{email},,yes,no,gold" for cid, email in RECIPIENTS.items()]
    root = write(
        tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": "\n".join(rows) + "\n", "campaigns/promo.yaml": CAMPAIGN}
    )
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00")[0] == 0
    return root


def _maildir(folder: Path, messages: list[bytes]) -> Path:
    box = mailbox.Maildir(str(folder), create=True)
    for data in messages:
        box.add(data)
    box.close()
    return folder


def _events(root: Path) -> list[tuple[str, str, str | None]]:
    import duckdb

    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    try:
        return con.execute(
            "SELECT e.event, m.contact_id, e.bounce_type FROM events e JOIN entries m USING (message_id)"
            " WHERE e.source LIKE 'bounces:%' ORDER BY 2, 1"
        ).fetchall()
    finally:
        con.close()


def test_real_dsn_and_arf_messages_become_bounce_and_complaint_events_once(root: Path, tmp_path: Path) -> None:
    samples = sorted(SAMPLES.glob("*.eml"))
    assert len(samples) == 6
    box = _maildir(tmp_path / "Maildir", [p.read_bytes() for p in samples])
    code, output = run(root, "bounces", "import", str(box), "--format", "json")
    assert code == 0, output
    result = json.loads(output)
    assert result["messages"] == 6
    assert result["ignored"] == {  # rfc3834-01, and the delay notice of lhost-opensmtpd-06
        "auto-reply": 1,
        "delivery report without a failed recipient (a delay or success notice)": 1,
    }
    assert result["unmatched"] == 0
    assert result["imported"] == 4 and result["suppressions"] == 4
    assert _events(root) == [
        ("bounce", "00001", "hard"),
        ("bounce", "00002", "hard"),
        ("complaint", "00004", None),
        ("complaint", "00005", None),
    ]
    # the same mailbox again: nothing new
    code, output = run(root, "bounces", "import", str(box), "--format", "json")
    assert code == 0 and json.loads(output)["imported"] == 0
    # the next plan leaves out the hard bounces and the complaints
    code, output = run(
        root, "plan", "promo", "--at", "2026-12-02T12:00", "--format", "json", "--out", str(tmp_path / "decisions.csv")
    )
    assert code == 0, output
    rows = [line.split(",") for line in (tmp_path / "decisions.csv").read_text().splitlines()[1:]]
    assert {row[0] for row in rows if row[2] == "suppressed"} == {"00001", "00002", "00004", "00005"}


def test_an_mbox_and_a_single_eml_file_are_read_too(root: Path, tmp_path: Path) -> None:
    box = mailbox.mbox(str(tmp_path / "bounces.mbox"))
    for name in ("rfc3464-01.eml", "rfc3834-01.eml"):
        box.add((SAMPLES / name).read_bytes())
    box.close()
    code, output = run(root, "bounces", "import", str(tmp_path / "bounces.mbox"), "--format", "json")
    assert code == 0, output
    assert json.loads(output)["imported"] == 1
    shutil.copy(SAMPLES / "arf-14.eml", tmp_path / "one.eml")
    code, output = run(root, "bounces", "import", str(tmp_path / "one.eml"), "--format", "json")
    assert code == 0 and json.loads(output)["imported"] == 1


def test_a_dsn_to_the_verp_address_is_tied_to_its_message_whatever_the_recipient(root: Path, tmp_path: Path) -> None:
    sent = {
        m["contact_id"]: m
        for f in (root / "outbox").rglob("messages.jsonl")
        for m in map(json.loads, f.read_text().splitlines())
    }
    message_id = sent["00006"]["message_id"]
    dsn = f"""From: MAILER-DAEMON@mx.example.net
To: bounces+{message_id}@bounces.shop.example.com
Subject: Undelivered Mail Returned to Sender
Date: Tue, 01 Dec 2026 03:00:00 +0000
Message-ID: <dsn-1@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

Your message could not be delivered.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; forwarded-somewhere@else.example
Action: failed
Status: 5.2.1

--b1--
"""
    path = tmp_path / "verp.eml"
    path.write_text(dsn)
    code, output = run(root, "bounces", "import", str(path), "--format", "json")
    assert code == 0, output
    assert json.loads(output)["imported"] == 1
    assert _events(root) == [("bounce", "00006", "hard")]


def test_reports_about_mail_dmops_did_not_send_are_counted_and_skipped(root: Path, tmp_path: Path) -> None:
    other = (SAMPLES / "rfc3464-01.eml").read_bytes().replace(b"userunknown@bouncehammer.jp", b"nobody@nowhere.example")
    path = tmp_path / "other.eml"
    path.write_bytes(other)
    code, output = run(root, "bounces", "import", str(path), "--format", "json")
    assert code == 0, output
    result = json.loads(output)
    assert result["unmatched"] == 1 and result["imported"] == 0
