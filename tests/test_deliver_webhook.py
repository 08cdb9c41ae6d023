"""`dmops deliver` to a real HTTP server on loopback (pytest-httpserver): the Standard Webhooks signature
checked with the reference library, Idempotency-Key, 429 with Retry-After, 4xx and 5xx, and a reply that
never comes (SPEC §11)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from standardwebhooks.webhooks import Webhook
from werkzeug import Request, Response

from tests.planning import run_cli as run
from tests.planning import write
from tests.test_send import WS

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SMS = """\
id: flash
name: Flash sale
channel: sms
purpose: transactional
send_at: "2026-12-01 10:00"
variants:
  - id: a
    text: "Order {{ contact_id }} ships today"
"""
AT = "2026-12-01T10:00"


def contacts(n: int) -> str:
    rows = ["contact_id,first_name,email,phone,email_opt_in,sms_opt_in,tier"]
    rows += [f"{i:05d},N{i},u{i}@example.com,+86139{i:08d},yes,yes,gold" for i in range(n)]
    return "\n".join(rows) + "\n"


@pytest.fixture
def root(tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DMOPS_GATEWAY_SECRET", SECRET)
    config = f"""\
transports:
  gateway:
    kind: webhook
    url: {httpserver.url_for("/send")}
    secret_env: DMOPS_GATEWAY_SECRET
    concurrency: 1
    timeout: 1
channels: {{sms: gateway}}
"""
    root = write(tmp_path / "ws", {"dmops.yaml": WS + config, "contacts.csv": contacts(1), "campaigns/flash.yaml": SMS})
    code, output = run(root, "send", "flash", "--at", "2026-11-30T12:00")
    assert code == 0, output
    return root


def deliver(root: Path, at: str = AT, *extra: str) -> tuple[int, dict]:
    code, output = run(root, "deliver", "--at", at, "--format", "json", *extra)
    assert code in (0, 75), output
    return code, json.loads(output)


def test_429_then_201_delivers_once_with_the_same_idempotency_key_and_a_verified_signature(
    root: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_ordered_request("/send", method="POST").respond_with_response(
        Response("slow down", status=429, headers={"Retry-After": "120"})
    )
    httpserver.expect_ordered_request("/send", method="POST").respond_with_json({"id": "SM123"}, status=201)
    code, result = deliver(root)
    assert code == 75 and result["transports"][0]["states"] == {"deferred": 1}
    code, result = deliver(root, "2026-12-01T10:01:30")  # before the 120 s the gateway asked for
    assert code == 75 and result["transports"][0]["states"] == {}
    code, result = deliver(root, "2026-12-01T10:03")
    assert code == 0 and result["transports"][0]["states"] == {"accepted": 1}
    [(first, _), (second, _)] = httpserver.log
    message = json.loads(second.get_data())
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == message["message_id"]
    for request in (first, second):
        assert Webhook(SECRET).verify(request.get_data(), dict(request.headers)) == message
        assert request.headers["webhook-id"] == message["message_id"]
    assert message["to"] == "+8613900000000" and message["text"] == "Order 00000 ships today"
    code, output = run(root, "deliver", "--status", "--format", "json")
    assert json.loads(output) == {"flash": {"accepted": 1}}
    journal = "".join(p.read_text() for p in (root / ".dmops" / "deliveries").glob("*.jsonl"))
    assert '"provider_id": "SM123"' in journal


def test_a_4xx_fails_and_a_5xx_is_retried(root: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/send").respond_with_data("bad gateway", status=502)
    httpserver.expect_ordered_request("/send").respond_with_data('{"error": "invalid number"}', status=400)
    assert deliver(root)[1]["transports"][0]["states"] == {"deferred": 1}
    code, result = deliver(root, "2026-12-01T10:05")
    assert code == 0 and result["transports"][0]["states"] == {"failed": 1}
    assert deliver(root, "2026-12-01T11:00")[1]["transports"][0]["states"] == {}  # failed is final
    assert len(httpserver.log) == 2


def test_a_reply_that_never_comes_is_in_doubt(root: Path, httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(2)
        return Response("ok", status=200)

    httpserver.expect_request("/send").respond_with_handler(slow)
    code, result = deliver(root)
    assert code == 0 and result["transports"][0]["states"] == {"in_doubt": 1}
    assert len(result["in_doubt"]) == 1
    assert deliver(root, "2026-12-01T11:00")[1]["transports"][0]["states"] == {}  # held
