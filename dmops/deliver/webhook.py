"""Messages to an HTTP gateway (SPEC §11): a ``POST`` of the outbox message as JSON, signed per Standard
Webhooks (``webhook-id`` = the message id, ``webhook-timestamp``, ``webhook-signature``), with
``Idempotency-Key: <message_id>`` so a gateway can drop a resend. The ``twilio`` and ``aliyun_sms`` kinds
send those providers' documented requests instead (Twilio's Messages resource; Alibaba Cloud's SendSms,
signed) and read their replies (``sid``; ``Code`` and ``BizId``).

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
import uuid
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from dmops.deliver.outcome import Outcome, Unreachable, scrub
from dmops.workspace import WebhookTransport

RETRY_STATUSES = (408, 429)
ALIYUN_RETRY = ("isv.BUSINESS_LIMIT_CONTROL", "Throttling", "isp.SYSTEM_ERROR", "ServiceUnavailable")


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


def _percent(text: str) -> str:
    return quote(text, safe="~")


def rpc_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """Alibaba Cloud's RPC signature (V2): HMAC-SHA1, keyed ``secret&``, of ``METHOD&%2F&`` and the sorted,
    percent-encoded parameters, base64."""
    canonical = "&".join(f"{_percent(k)}={_percent(v)}" for k, v in sorted(params.items()))
    signed = f"{method}&{_percent('/')}&{_percent(canonical)}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), signed.encode(), hashlib.sha1).digest()).decode()


class WebhookConnection:
    """Requests to one gateway URL, one at a time (a new connection per request, so a reply is never
    mistaken for one to an earlier request)."""

    def __init__(self, transport: WebhookTransport, environ: Mapping[str, str], ca_file: str | None = None) -> None:
        self.transport = transport
        self.secret = environ.get(transport.secret_env) if transport.secret_env else None
        self.username = environ.get(transport.username_env) if transport.username_env else None
        self.url = urlsplit(transport.url)
        self.ca_file = ca_file

    def _connection(self) -> http.client.HTTPConnection:
        host, port = self.url.hostname or "", self.url.port
        if self.url.scheme == "https":
            context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
            return http.client.HTTPSConnection(host, port, timeout=self.transport.timeout, context=context)
        return http.client.HTTPConnection(host, port, timeout=self.transport.timeout)

    def request(self, message: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the request for ``message``, in the shape the transport's kind speaks."""
        if self.transport.kind == "twilio":
            return self._twilio(message)
        if self.transport.kind == "aliyun_sms":
            return self._aliyun(message)
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

    def _twilio(self, message: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
        """Twilio's Messages resource: a form POST with To, Body and From (or MessagingServiceSid), HTTP
        Basic auth with the account SID and auth token."""
        t = self.transport
        sender = t.sender or ""
        form = {"To": str(message["to"]), "Body": str(message.get("text") or "")}
        form["MessagingServiceSid" if sender.startswith("MG") else "From"] = sender
        if t.status_callback:
            form["StatusCallback"] = t.status_callback
        token = base64.b64encode(f"{self.username}:{self.secret}".encode()).decode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"Basic {token}",
            "User-Agent": "dmops",
            "Connection": "close",
        }
        return urlencode(form).encode(), headers

    def _aliyun(self, message: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
        """Alibaba Cloud SMS ``SendSms`` (2017-05-25), an RPC call signed with HMAC-SHA1 (signature V2); the
        message id goes in ``OutId``, so receipts name it."""
        t = self.transport
        params = {
            "AccessKeyId": self.username or "",
            "Action": "SendSms",
            "Format": "JSON",
            "OutId": str(message["message_id"]),
            "PhoneNumbers": str(message["to"]).lstrip("+"),
            "SignName": t.sign_name or "",
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "TemplateCode": t.template_code or "",
            "TemplateParam": json.dumps(
                {name: str(message.get(source) or "") for name, source in t.template_param.items()},
                ensure_ascii=False,
            ),
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "Version": "2017-05-25",
        }
        params["Signature"] = rpc_signature("POST", params, self.secret or "")
        headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "dmops", "Connection": "close"}
        return urlencode(params, quote_via=quote).encode(), headers

    def send(self, message: dict[str, Any], handing_over: Callable[[], Callable[[], None]]) -> Outcome:
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
            handing_over()()  # in_flight on disk before the request
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
        data = _json(reply)
        if self.transport.kind == "aliyun_sms":
            code = _first(data, "Code")
            if code == "OK" and 200 <= status < 300:
                return Outcome("accepted", status, None, provider_id=_first(data, "BizId"))
            if status >= 500 or status == 429 or (code or "").startswith(ALIYUN_RETRY):
                return Outcome("deferred", status, detail, retry_after(retry, time.time()))
            return Outcome("failed", status, detail)
        if 200 <= status < 300:  # the reply may echo the message (Twilio's "body"): only its id is kept
            return Outcome("accepted", status, None, provider_id=_first(data, "id", "message_id", "sid", "BizId"))
        if status in RETRY_STATUSES or status >= 500:
            return Outcome("deferred", status, detail, retry_after(retry, time.time()))
        return Outcome("failed", status, detail)

    def close(self) -> None:
        pass


def _first(data: dict[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` the reply holds as a string or number, as text."""
    for key in keys:
        if isinstance(data.get(key), str | int):
            return str(data[key])
    return None


def _json(reply: bytes) -> dict[str, Any]:
    """A reply's JSON object, or an empty one when it is not one."""
    try:
        data = json.loads(reply)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
