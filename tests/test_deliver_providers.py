"""The twilio and aliyun_sms kinds against a loopback HTTP server that checks their documented request shapes,
and providers' own event exports and receipts imported as events (SPEC §11)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qsl

import duckdb
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from dmops.deliver.webhook import rpc_signature
from tests.planning import run_cli as run
from tests.planning import write
from tests.test_deliver_webhook import SMS, contacts
from tests.test_send import EMAIL, WS

AT = "2026-12-01T10:00"


def test_the_rpc_signature_matches_alibaba_clouds_documented_example() -> None:
    # help.aliyun.com, "API 签名机制 (示例)": DescribeRegions with AccessKey testid / testsecret
    params = {
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "Format": "XML",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0",
        "TimeStamp": "2016-02-23T12:46:24Z",
        "Version": "2014-05-26",
    }
    assert rpc_signature("GET", params, "testsecret") == "CT9X0VtwR86fNWSnsc6v8YGOjuE="


def _workspace(tmp_path: Path, transport: str, people: int = 2) -> Path:
    root = write(
        tmp_path / "ws",
        {"dmops.yaml": WS + transport, "contacts.csv": contacts(people), "campaigns/flash.yaml": SMS},
    )
    assert run(root, "send", "flash", "--at", "2026-11-30T12:00")[0] == 0
    return root


def _sms(root: Path) -> dict[str, dict]:
    return {
        m["contact_id"]: m
        for f in (root / "outbox").rglob("messages.jsonl")
        for m in map(json.loads, f.read_text().splitlines())
    }


def _events(root: Path) -> list[tuple]:
    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    try:
        return con.execute(
            "SELECT m.contact_id, e.event, e.bounce_type, e.url FROM events e JOIN entries m USING (message_id)"
            " ORDER BY 1, 2"
        ).fetchall()
    finally:
        con.close()


def test_twilio_gets_its_form_and_basic_auth_and_its_receipts_import_once(
    tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC0123")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "tok-en")
    path = "/2010-04-01/Accounts/AC0123/Messages.json"
    root = _workspace(
        tmp_path,
        f"""transports:
  sms:
    kind: twilio
    url: {httpserver.url_for(path)}
    username_env: TWILIO_ACCOUNT_SID
    secret_env: TWILIO_AUTH_TOKEN
    sender: "+15005550006"
    concurrency: 1
channels: {{sms: sms}}
""",
    )
    sent = _sms(root)
    sids = iter(["SM0001", "SM0002"])

    def create(request: Request) -> Response:
        assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"AC0123:tok-en").decode()
        form = dict(parse_qsl(request.get_data(as_text=True)))
        assert set(form) == {"To", "From", "Body"} and form["From"] == "+15005550006"
        assert form["Body"] == next(m["text"] for m in sent.values() if m["to"] == form["To"])
        return Response(
            json.dumps({"sid": next(sids), "status": "queued"}), status=201, content_type="application/json"
        )

    httpserver.expect_request(path, method="POST").respond_with_handler(create)
    code, output = run(root, "deliver", "--at", AT, "--format", "json")
    assert code == 0 and json.loads(output)["transports"][0]["states"] == {"accepted": 2}, output
    journal = "".join(p.read_text() for p in (root / ".dmops" / "deliveries").glob("*.jsonl"))
    first, second = sorted(sent)
    by_sid = {
        json.loads(line)["provider_id"]: json.loads(line)["message_id"]
        for line in journal.splitlines()
        if "provider_id" in line
    }
    assert set(by_sid) == {"SM0001", "SM0002"}
    assert all(m["text"] not in journal for m in sent.values())  # a reply echoing the message is not kept
    sid = {sent[c]["message_id"]: s for s, m in by_sid.items() for c in sent if sent[c]["message_id"] == m}
    callbacks = tmp_path / "twilio.jsonl"
    callbacks.write_text(
        json.dumps({"MessageSid": sid[sent[first]["message_id"]], "MessageStatus": "delivered"})
        + "\n"
        + json.dumps(
            {"MessageSid": sid[sent[second]["message_id"]], "MessageStatus": "undelivered", "ErrorCode": "30006"}
        )
        + "\n"
        + json.dumps({"MessageSid": "SM9999", "MessageStatus": "delivered"})
        + "\n"
        + json.dumps({"MessageSid": sid[sent[first]["message_id"]], "MessageStatus": "sent"})
        + "\n"
    )
    code, output = run(root, "events", "import", str(callbacks), "--format", "twilio")
    assert code == 0, output
    assert "4 rows, 2 imported, 0 already there; 1 suppressions added; 1 about messages dmops did not send" in output
    assert "ignored: 1 twilio sent" in output
    assert _events(root) == [(first, "delivered", None, None), (second, "bounce", "hard", None)]
    code, output = run(root, "events", "import", str(callbacks), "--format", "twilio")
    assert code == 0 and "0 imported, 2 already there" in output  # a replayed receipt adds nothing


def test_a_twilio_error_reply_fails_the_message(
    tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC0123")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "tok-en")
    root = _workspace(
        tmp_path,
        f"""transports:
  sms: {{kind: twilio, url: "{httpserver.url_for("/m")}", username_env: TWILIO_ACCOUNT_SID,
        secret_env: TWILIO_AUTH_TOKEN, sender: MG00000000000000000000000000000000}}
channels: {{sms: sms}}
""",
        people=1,
    )

    def refuse(request: Request) -> Response:
        assert "MessagingServiceSid=MG" in request.get_data(as_text=True)
        body = {"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}
        return Response(json.dumps(body), status=400, content_type="application/json")

    httpserver.expect_request("/m").respond_with_handler(refuse)
    code, output = run(root, "deliver", "--at", AT, "--format", "json")
    assert code == 0 and json.loads(output)["transports"][0]["states"] == {"failed": 1}, output


def test_aliyun_sms_gets_a_signed_sendsms_call_and_its_receipts_import(
    tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALIYUN_ACCESS_KEY_ID", "LTAIexample")
    monkeypatch.setenv("ALIYUN_ACCESS_KEY_SECRET", "secret-example")
    root = _workspace(
        tmp_path,
        f"""transports:
  sms:
    kind: aliyun_sms
    url: {httpserver.url_for("/")}
    username_env: ALIYUN_ACCESS_KEY_ID
    secret_env: ALIYUN_ACCESS_KEY_SECRET
    sign_name: 好物商城
    template_code: SMS_123456789
    concurrency: 1
channels: {{sms: sms}}
""",
    )
    sent = _sms(root)
    replies = iter(
        [
            {"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0", "RequestId": "A1"},
            {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控", "RequestId": "A2"},
        ]
    )

    def send_sms(request: Request) -> Response:
        form = dict(parse_qsl(request.get_data(as_text=True)))
        signature = form.pop("Signature")
        assert signature == rpc_signature("POST", form, "secret-example")
        assert form["Action"] == "SendSms" and form["Version"] == "2017-05-25" and form["AccessKeyId"] == "LTAIexample"
        assert form["SignName"] == "好物商城" and form["TemplateCode"] == "SMS_123456789"
        message = next(m for m in sent.values() if m["message_id"] == form["OutId"])
        assert form["PhoneNumbers"] == message["to"].lstrip("+")
        assert json.loads(form["TemplateParam"]) == {"content": message["text"]}
        return Response(json.dumps(next(replies), ensure_ascii=False), content_type="application/json")

    httpserver.expect_request("/", method="POST").respond_with_handler(send_sms)
    code, output = run(root, "deliver", "--at", AT, "--format", "json")
    assert code == 75 and json.loads(output)["transports"][0]["states"] == {"accepted": 1, "deferred": 1}, output
    journal = [
        json.loads(line)
        for p in (root / ".dmops" / "deliveries").glob("*.jsonl")
        for line in p.read_text().splitlines()
    ]
    [accepted] = [line for line in journal if line["state"] == "accepted"]
    assert accepted["provider_id"] == "900619746936498440^0"
    who = next(c for c, m in sent.items() if m["message_id"] == accepted["message_id"])
    receipts = tmp_path / "receipts.json"
    receipts.write_text(
        json.dumps(
            [
                {
                    "phone_number": sent[who]["to"].lstrip("+"),
                    "send_time": "2026-12-01 10:00:01",
                    "report_time": "2026-12-01 10:00:05",
                    "success": True,
                    "err_code": "DELIVERED",
                    "err_msg": "用户接收成功",
                    "sms_size": "1",
                    "biz_id": "900619746936498440^0",
                    "out_id": accepted["message_id"],
                },
            ],
            ensure_ascii=False,
        )
    )
    code, output = run(root, "events", "import", str(receipts), "--format", "aliyun_sms")
    assert code == 0 and "1 imported" in output, output
    assert _events(root) == [(who, "delivered", None, None)]


def test_sendgrid_events_find_their_message_by_smtp_id_and_sg_message_id(tmp_path: Path) -> None:
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(6), "campaigns/promo.yaml": EMAIL})
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00")[0] == 0
    sent = {
        m["contact_id"]: m
        for f in (root / "outbox").rglob("messages.jsonl")
        for m in map(json.loads, f.read_text().splitlines())
        if m["to"]
    }
    a, b, c = sorted(sent)[:3]

    def event(who: str, kind: str, n: int, **extra: object) -> dict:
        return {
            "email": sent[who]["to"],
            "timestamp": 1764554400 + n,
            "event": kind,
            "sg_event_id": f"ev-{who}-{kind}-{n}",
            "sg_message_id": f"sg{who}.filter0001.1",
            **extra,
        }

    payload = [
        event(a, "processed", 1, **{"smtp-id": f"<{sent[a]['message_id']}@shop.example.com>"}),
        event(a, "delivered", 2, **{"smtp-id": f"<{sent[a]['message_id']}@shop.example.com>"}),
        event(a, "open", 3),  # no smtp-id: found through another row with the same sg_message_id
        event(a, "click", 4, url="https://shop.example.com/sale"),
        event(b, "bounce", 5, type="blocked", **{"smtp-id": f"<{sent[b]['message_id']}@shop.example.com>"}),
        event(c, "spamreport", 6, dmops_message_id=sent[c]["message_id"]),
        {
            "email": "x@y.example",
            "timestamp": 1764554400,
            "event": "delivered",
            "sg_event_id": "ev-other",
            "sg_message_id": "other.filter.1",
            "smtp-id": "<not-ours@elsewhere.example>",
        },
    ]
    path = tmp_path / "sendgrid.json"
    path.write_text(json.dumps(payload))
    code, output = run(root, "events", "import", str(path), "--format", "sendgrid")
    assert code == 0, output
    assert "7 rows, 5 imported" in output and "1 about messages dmops did not send" in output, output
    assert "ignored: 1 sendgrid processed" in output
    assert _events(root) == [
        (a, "click", None, "https://shop.example.com/sale"),
        (a, "delivered", None, None),
        (a, "open", None, None),
        (b, "bounce", "soft", None),
        (c, "complaint", None, None),
    ]
    code, output = run(root, "events", "import", str(path), "--format", "sendgrid")
    assert code == 0 and "0 imported, 5 already there" in output


def test_a_receipt_with_a_non_ascii_link_imports_under_an_ascii_locale(tmp_path: Path) -> None:
    """cron may run dmops with the C locale and Python's UTF-8 mode off: the files dmops stages are UTF-8 still."""
    import os
    import subprocess
    import sys

    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(3), "campaigns/promo.yaml": EMAIL})
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00")[0] == 0
    sent = next(
        m
        for f in (root / "outbox").rglob("messages.jsonl")
        for m in map(json.loads, f.read_text().splitlines())
        if m["to"]
    )
    link = "https://shop.example.com/été-soldes"
    click = {
        "email": sent["to"],
        "timestamp": 1764554400,
        "event": "click",
        "sg_event_id": "ev-1",
        "smtp-id": f"<{sent['message_id']}@shop.example.com>",
        "url": link,
    }
    path = tmp_path / "sendgrid.json"
    path.write_text(json.dumps([click], ensure_ascii=False), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_") and k not in ("LANG", "PYTHONIOENCODING")}
    env.update(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    probe = [sys.executable, "-c", "import locale; print(locale.getpreferredencoding(False))"]
    assert subprocess.run(probe, env=env, capture_output=True, text=True).stdout.strip() in ("ANSI_X3.4-1968", "ascii")
    args = [sys.executable, "-m", "dmops", "-w", str(root), "events", "import", str(path), "--format", "sendgrid"]
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "1 imported" in done.stdout, done.stderr
    assert _events(root) == [(sent["contact_id"], "click", None, link)]
