"""Providers' own event exports and delivery receipts as dmops events (``events import --format``, SPEC §11).

Each format maps the provider's rows to the events of SPEC §8 and finds each row's dmops message:

``sendgrid``
    The Event Webhook's JSON (an array as posted, or one object per line). ``delivered``, ``bounce``
    (``type: blocked`` soft, else hard), ``open``, ``click``, ``spamreport`` (complaint), ``unsubscribe`` and
    ``group_unsubscribe``; the rest (``processed``, ``deferred``, ``dropped``…) is counted and ignored. The
    message: a ``dmops_message_id`` custom argument, else ``smtp-id`` (dmops's ``<message_id@domain>``), else
    another row of the file with the same ``sg_message_id`` that has one. Event id: ``sg_event_id``.
``twilio``
    Status callbacks (``MessageSid``, ``MessageStatus``, ``ErrorCode``) as JSON or CSV, or the message log
    export (``Sid``, ``Status``, ``SentDate``, ``ErrorCode``). ``delivered``; ``undelivered`` and ``failed``
    as a bounce (hard for the error codes of a number that cannot receive SMS, else soft); the rest ignored.
    The message: the ``sid`` recorded when ``dmops deliver`` handed it over.
``aliyun_sms``
    SMS receipts (``SmsReport``: ``success``, ``err_code``, ``report_time``, ``biz_id``, ``out_id``). Success
    is ``delivered``, failure a bounce (hard for an invalid or out-of-service number). The message:
    ``out_id`` (dmops sends the message id there), else the ``biz_id`` recorded at delivery. Times are
    Beijing time.

Rows about messages dmops did not send are counted and skipped; the rest go through ``events import``, so a
receipt replayed adds nothing.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dmops import ledger
from dmops.db import connect
from dmops.errors import DataError, MissingInputError
from dmops.events import Found, ImportResult, import_found
from dmops.workspace import Workspace

FORMATS = ("sendgrid", "twilio", "aliyun_sms")
_ID = re.compile(r"([0-9a-f]{32})@", re.IGNORECASE)
_HEX = re.compile(r"[0-9a-f]{32}\Z", re.IGNORECASE)
# Twilio error codes of a number that cannot receive SMS at all: a bounce that should suppress it.
TWILIO_HARD = {"21211", "21614", "30005", "30006"}
ALIYUN_HARD = ("NUMBER_ILLEGAL", "NOT_ON_SERVICE", "NOT_EXIST", "UNKNOWN_SUBSCRIBER", "BLACK")
BEIJING = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Row:
    line: int
    event: str
    ts: datetime  # aware
    event_id: str
    message_id: str | None = None  # found in the row itself
    provider_id: str | None = None  # to look up in the delivery journals
    link: str | None = None  # rows sharing it share a message (SendGrid's sg_message_id)
    bounce_type: str | None = None
    url: str | None = None


@dataclass
class ReceiptImport:
    rows: int = 0
    ignored: Counter[str] = field(default_factory=Counter)  # provider statuses that are no dmops event
    unmatched: int = 0  # rows about messages dmops did not send
    result: ImportResult | None = None


def _records(path: Path) -> list[dict[str, Any]]:
    """The file's records: a JSON array, JSON lines, or CSV with a header."""
    if not path.is_file():
        raise MissingInputError("events file not found", file=path)
    text = path.read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            data = json.loads(stripped)
            return [r for r in data if isinstance(r, dict)]
        if stripped.startswith("{"):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}", file=path, line=exc.lineno) from None
    return list(csv.DictReader(io.StringIO(text)))


def _get(record: dict[str, Any], *names: str) -> str | None:
    lowered = {k.lower(): v for k, v in record.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value not in (None, ""):
            return str(value).strip()
    return None


def _moment(value: str | None, zone: ZoneInfo | None = None) -> datetime | None:
    if value is None:
        return None
    if re.fullmatch(r"\d{9,11}(\.\d+)?", value):
        return datetime.fromtimestamp(float(value), UTC)
    try:
        from dateutil import parser

        moment = parser.parse(value)
    except (ValueError, OverflowError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone or UTC)


def sendgrid(records: Iterable[dict[str, Any]], now: datetime, outcome: ReceiptImport) -> list[Row]:
    kinds = {
        "delivered": "delivered",
        "bounce": "bounce",
        "open": "open",
        "click": "click",
        "spamreport": "complaint",
        "unsubscribe": "unsubscribe",
        "group_unsubscribe": "unsubscribe",
    }
    rows = []
    for line, record in enumerate(records, start=1):
        event = (_get(record, "event") or "").lower()
        if event not in kinds:
            outcome.ignored[f"sendgrid {event or 'row without an event'}"] += 1
            continue
        smtp_id = _ID.search(_get(record, "smtp-id") or "")
        custom = _get(record, "dmops_message_id")
        link = (_get(record, "sg_message_id") or "").split(".", 1)[0] or None
        rows.append(
            Row(
                line,
                kinds[event],
                _moment(_get(record, "timestamp")) or now,
                "sendgrid:" + (_get(record, "sg_event_id") or f"{link}:{event}:{_get(record, 'timestamp')}"),
                message_id=custom if custom and _HEX.match(custom) else (smtp_id.group(1).lower() if smtp_id else None),
                link=link,
                bounce_type=("soft" if (_get(record, "type") or "").lower() == "blocked" else "hard")
                if event == "bounce"
                else None,
                url=_get(record, "url") if event == "click" else None,
            )
        )
    return rows


def twilio(records: Iterable[dict[str, Any]], now: datetime, outcome: ReceiptImport) -> list[Row]:
    rows = []
    for line, record in enumerate(records, start=1):
        status = (_get(record, "MessageStatus", "Status", "SmsStatus") or "").lower()
        sid = _get(record, "MessageSid", "Sid", "SmsSid")
        if status not in ("delivered", "undelivered", "failed") or sid is None:
            outcome.ignored[f"twilio {status or 'row without a status'}"] += 1
            continue
        code = _get(record, "ErrorCode", "error_code")
        rows.append(
            Row(
                line,
                "delivered" if status == "delivered" else "bounce",
                _moment(_get(record, "Timestamp", "SentDate", "DateSent", "date_updated", "DateUpdated")) or now,
                f"twilio:{sid}:{status}",
                provider_id=sid,
                bounce_type=None if status == "delivered" else ("hard" if code in TWILIO_HARD else "soft"),
            )
        )
    return rows


def aliyun_sms(records: Iterable[dict[str, Any]], now: datetime, outcome: ReceiptImport) -> list[Row]:
    rows = []
    for line, record in enumerate(records, start=1):
        success = (_get(record, "success") or "").lower()
        biz_id = _get(record, "biz_id", "BizId")
        if success not in ("true", "false", "1", "0") or biz_id is None:
            outcome.ignored["aliyun_sms row without success or biz_id"] += 1
            continue
        delivered = success in ("true", "1")
        code = (_get(record, "err_code") or "").upper()
        reported = _get(record, "report_time", "ReportTime")
        out_id = _get(record, "out_id", "OutId")
        rows.append(
            Row(
                line,
                "delivered" if delivered else "bounce",
                _moment(reported, BEIJING) or now,
                f"aliyun_sms:{biz_id}:{reported}:{success}",
                message_id=out_id.lower() if out_id and _HEX.match(out_id) else None,
                provider_id=biz_id,
                bounce_type=None if delivered else ("hard" if any(h in code for h in ALIYUN_HARD) else "soft"),
            )
        )
    return rows


READERS = {"sendgrid": sendgrid, "twilio": twilio, "aliyun_sms": aliyun_sms}


def _resolve(ws: Workspace, rows: list[Row]) -> dict[int, str]:
    """row line -> the dmops message it is about (one ledger knows), by its own id, its link, or its provider id."""
    con = connect()
    try:
        ledger.attach(con, ws)
        ledger.delivery_states(con, ws)
        con.execute("CREATE TEMP TABLE _dm_rows (line BIGINT, message_id VARCHAR, provider_id VARCHAR, link VARCHAR)")
        con.executemany(
            "INSERT INTO _dm_rows VALUES (?, ?, ?, ?)", [(r.line, r.message_id, r.provider_id, r.link) for r in rows]
        )
        found = con.execute(
            """WITH linked AS (
                   SELECT link, min(message_id) AS message_id FROM _dm_rows
                   WHERE link IS NOT NULL AND message_id IS NOT NULL GROUP BY link),
               candidates AS (
                   SELECT r.line, coalesce(r.message_id, l.message_id, d.message_id) AS message_id
                   FROM _dm_rows r
                   LEFT JOIN linked l ON l.link = r.link
                   LEFT JOIN delivery_states d ON d.provider_id = r.provider_id)
               SELECT c.line, c.message_id FROM candidates c
               JOIN ledger_entries e ON e.message_id = c.message_id AND e.kind = 'message'"""
        ).fetchall()
    finally:
        con.close()
    return {int(line): message_id for line, message_id in found}


def import_receipts(ws: Workspace, path: Path, fmt: str, *, now: datetime | None = None) -> ReceiptImport:
    """Read ``path`` in provider format ``fmt`` and import the events it holds about dmops's messages."""
    moment = now or datetime.now(UTC)
    outcome = ReceiptImport()
    records = _records(path)
    outcome.rows = len(records)
    rows = READERS[fmt](records, moment, outcome)
    resolved = _resolve(ws, rows) if rows else {}
    outcome.unmatched = sum(1 for r in rows if r.line not in resolved)
    found = [
        Found(resolved[r.line], r.event, r.ts, r.event_id, r.bounce_type, r.url) for r in rows if r.line in resolved
    ]
    outcome.result = import_found(ws, found, now=moment, source=f"{fmt}:{path.name}")
    return outcome
