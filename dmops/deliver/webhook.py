"""Messages to an HTTP gateway (SPEC §11): a ``POST`` of the outbox message as JSON, signed per Standard
Webhooks (``webhook-id`` = the message id, ``webhook-timestamp``, ``webhook-signature``), with
``Idempotency-Key: <message_id>`` so a gateway can drop a resend.

2xx accepted (the reply's ``id`` kept as the provider id); 408, 429 and 5xx deferred, honouring
``Retry-After``; any other 4xx failed; a connection refused before the request deferred; the reply lost
after the request was sent (timeout, connection reset) in doubt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import ssl
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from dmops.deliver.outcome import Outcome, Unreachable, scrub
from dmops.workspace import WebhookTransport

RETRY_STATUSES = (408, 429)


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``webhook-signature`` (v1: HMAC-SHA256 of ``id.timestamp.body``, base64); the
    secret is base64, with or without its ``whsec_`` prefix, as the specification writes it."""
    key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from ``Retry-After`` (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        return max(0.0, parsedate_to_datetime(text).timestamp() - now)
    except (TypeError, ValueError):
        return None


class WebhookConnection:
    """Requests to one gateway URL, one at a time (a new connection per request, so a reply is never
    mistaken for one to an earlier request)."""

    def __init__(self, transport: WebhookTransport, environ: Mapping[str, str], ca_file: str | None = None) -> None:
        self.transport = transport
        self.secret = environ.get(transport.secret_env) if transport.secret_env else None
        self.url = urlsplit(transport.url)
        self.ca_file = ca_file

    def _connection(self) -> http.client.HTTPConnection:
        host, port = self.url.hostname or "", self.url.port
        if self.url.scheme == "https":
            context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
            return http.client.HTTPSConnection(host, port, timeout=self.transport.timeout, context=context)
        return http.client.HTTPConnection(host, port, timeout=self.transport.timeout)

    def request(self, message: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the request for ``message``."""
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
        message_id = str(message["message_id"])
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message_id,
            "User-Agent": "dmops",
            "Connection": "close",
        }
        if self.secret:
            stamp = int(time.time())  # the real clock: receivers reject a stale signature
            headers |= {
                "webhook-id": message_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": signature(self.secret, message_id, stamp, body),
            }
        return body, headers

    def send(self, message: dict[str, Any], handing_over: Callable[[], None]) -> Outcome:
        body, headers = self.request(message)
        conn = self._connection()
        path = self.url.path or "/"
        if self.url.query:
            path += "?" + self.url.query
        try:
            try:
                conn.connect()
            except OSError as exc:
                raise Unreachable(f"cannot connect to {self.url.hostname}: {type(exc).__name__}") from None
            handing_over()
            try:
                conn.request("POST", path, body=body, headers=headers)
            except OSError as exc:  # the request did not go out whole
                return Outcome("deferred", None, f"request failed: {type(exc).__name__}")
            try:
                response = conn.getresponse()
                reply = response.read(65536)
            except (OSError, http.client.HTTPException) as exc:
                return Outcome("in_doubt", None, f"no reply: {type(exc).__name__}")
        finally:
            conn.close()
        return self.outcome(response.status, reply, response.getheader("Retry-After"))

    def outcome(self, status: int, reply: bytes, retry: str | None) -> Outcome:
        detail = scrub(reply.decode("utf-8", "replace"))
        if 200 <= status < 300:
            return Outcome("accepted", status, detail or None, provider_id=_provider_id(reply))
        if status in RETRY_STATUSES or status >= 500:
            return Outcome("deferred", status, detail, retry_after(retry, time.time()))
        return Outcome("failed", status, detail)

    def close(self) -> None:
        pass


def _provider_id(reply: bytes) -> str | None:
    try:
        data = json.loads(reply)
    except ValueError:
        return None
    if isinstance(data, dict):
        for key in ("id", "message_id", "sid", "BizId"):
            if isinstance(data.get(key), str | int):
                return str(data[key])
    return None
