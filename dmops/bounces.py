"""``dmops bounces import``: delivery status notifications and feedback reports from a mailbox (SPEC §11).

A mailbox is an mbox file, a Maildir folder or one ``.eml`` file. Each message is read with the standard
library's ``email`` package:

- an RFC 3464 delivery status notification (``multipart/report; report-type=delivery-status``) gives one
  ``bounce`` per failed recipient: ``hard`` for a 5.x.x status, ``soft`` for 4.x.x; a delay notice
  (``Action: delayed``) is no bounce — the message may yet be delivered — and is counted and ignored;
- an RFC 5965 feedback report (``report-type=feedback-report``) gives a ``complaint``;
- anything else — an auto-reply, a success notification, a person's answer — is counted and ignored.

A report is tied to the message it is about by, in order: the VERP address it was sent back to
(``bounces+<message_id>@…``), the returned message's ``X-Dmops-Message-Id`` or ``Message-ID``
(``<message_id@…>``), or its failed recipient's address — the latest message dmops sent to that address.
Reports tied to no message dmops sent are counted and skipped. The events go through ``events import``
(:func:`dmops.events.import_events`), so importing the same mailbox twice adds nothing: each event's id is
the report's Message-ID (or digest) and the recipient.
"""

from __future__ import annotations

import hashlib
import mailbox
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path

from dmops import ledger
from dmops.db import connect
from dmops.errors import DataError, MissingInputError
from dmops.events import Found, ImportResult, import_found
from dmops.sql import address_key_sql
from dmops.timeutil import naive_utc
from dmops.workspace import Workspace

_VERP = re.compile(r"bounces\+([0-9a-f]{32})@", re.IGNORECASE)
_ID = re.compile(r"<([0-9a-f]{32})@", re.IGNORECASE)
_STATUS = re.compile(r"([245])\.\d{1,3}\.\d{1,3}")


@dataclass(frozen=True)
class Report:
    """One event a mailbox message gives: ``bounce`` (hard|soft) or ``complaint``."""

    event: str
    bounce_type: str | None
    recipient: str | None  # the failed or complaining address, lower-cased
    message_ids: tuple[str, ...]  # candidate dmops message ids found in the report
    ts: datetime  # aware
    key: str  # the event id: stable for the same report and recipient


@dataclass
class BounceImport:
    messages: int = 0  # mailbox messages read
    ignored: Counter[str] = field(default_factory=Counter)  # why: auto-reply, not a report, success, …
    unmatched: int = 0  # reports about no message dmops sent
    result: ImportResult | None = None


def read_mailbox(path: Path) -> Iterator[bytes]:
    """The raw messages of an mbox file, a Maildir folder or a single .eml file."""
    if path.is_dir():
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise DataError("not a Maildir folder (no cur or new inside)", file=path)
        box: mailbox.Mailbox = mailbox.Maildir(str(path), create=False)
    elif path.is_file():
        with path.open("rb") as handle:
            head = handle.read(5)
        if head != b"From ":
            yield path.read_bytes()
            return
        box = mailbox.mbox(str(path), create=False)
    else:
        raise MissingInputError("mailbox not found", file=path, hint="an mbox file, a Maildir folder or an .eml file")
    try:
        for key in box.iterkeys():
            yield box.get_bytes(key)
    finally:
        box.close()


def _fields(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    return [
        message_from_bytes(block.strip().encode(), policy=policy.compat32)
        for block in re.split(r"\n\s*\n", text)
        if block.strip()
    ]


def _returned_headers(report: Message) -> Message | None:
    for part in report.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind == "text/rfc822-headers":
            text = part.get_payload(decode=True) or b""
            return message_from_bytes(text if isinstance(text, bytes) else b"", policy=policy.compat32)
    return None


def _candidates(report: Message) -> tuple[str, ...]:
    found: list[str] = []
    for name in ("To", "Delivered-To", "X-Original-To", "Envelope-To", "Return-Path"):
        for value in report.get_all(name) or []:
            found += [m.lower() for m in _VERP.findall(str(value))]
    returned = _returned_headers(report)
    if returned is not None:
        dmops_id = str(returned.get("X-Dmops-Message-Id", "")).strip().lower()
        if re.fullmatch(r"[0-9a-f]{32}", dmops_id):
            found.append(dmops_id)
        found += [m.lower() for m in _ID.findall(str(returned.get("Message-ID", "")))]
        found += [m.lower() for m in _VERP.findall(str(returned.get("Return-Path", "")))]
    return tuple(dict.fromkeys(found))


def _when(report: Message, now: datetime) -> datetime:
    try:
        moment = parsedate_to_datetime(str(report.get("Date", "")))
    except (TypeError, ValueError, IndexError):
        return now
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _address(value: str | None) -> str | None:
    if not value:
        return None
    text = value.split(";", 1)[1] if ";" in value else value
    found = getaddresses([text.strip()])
    address = found[0][1] if found else text.strip()
    return address.strip().lower() or None


def classify(raw: bytes, now: datetime) -> tuple[list[Report], str | None]:
    """The reports one mailbox message gives, or why it gives none."""
    report = message_from_bytes(raw, policy=policy.compat32)
    parts = {part.get_content_type() for part in report.walk()}
    kind = str(report.get_param("report-type", "") or "").lower()
    if "message/delivery-status" in parts:  # some servers send a DSN as multipart/mixed
        kind = "delivery-status"
    elif "message/feedback-report" in parts:
        kind = "feedback-report"
    elif report.get_content_type() != "multipart/report":
        auto = str(report.get("Auto-Submitted", "")).lower()
        return [], "auto-reply" if auto.startswith("auto-") or report.get("X-Autoreply") else "not a report"
    digest = str(report.get("Message-ID", "")).strip() or hashlib.sha256(raw).hexdigest()
    ts = _when(report, now)
    ids = _candidates(report)
    if kind == "feedback-report":
        for part in report.walk():
            if part.get_content_type() == "message/feedback-report":
                blocks = _fields(part)
                head = blocks[0] if blocks else Message()
                recipient = _address(str(head.get("Original-Rcpt-To", "")) or None)
                if recipient is None:
                    returned = _returned_headers(report)
                    recipient = _address(str(returned.get("To", ""))) if returned is not None else None
                key = "arf:" + hashlib.sha256(f"{digest}|{recipient}".encode()).hexdigest()[:32]
                return [Report("complaint", None, recipient, ids, ts, key)], None
        return [], "feedback report without its machine-readable part"
    if kind != "delivery-status":
        return [], f"report of type {kind or 'unknown'}"
    reports = []
    for part in report.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _fields(part)[1:] or _fields(part):  # the first block is per message, the rest per recipient
            action = str(block.get("Action", "")).strip().lower()
            status = _STATUS.search(str(block.get("Status", "")))
            if action != "failed":  # delayed: still being tried, and may yet be delivered; delivered, relayed…
                continue
            recipient = _address(str(block.get("Final-Recipient", "")) or str(block.get("Original-Recipient", "")))
            hard = status is None or status.group(1) == "5"
            key = "dsn:" + hashlib.sha256(f"{digest}|{recipient}".encode()).hexdigest()[:32]
            reports.append(Report("bounce", "hard" if hard else "soft", recipient, ids, ts, key))
    if not reports:
        return [], "delivery report without a failed recipient (a delay or success notice)"
    return reports, None


def _resolve(ws: Workspace, reports: list[Report]) -> dict[str, str]:
    """report key -> message id: the first candidate id dmops sent, else the latest email to the address."""
    con = connect()
    try:
        ledger.attach(con, ws)
        con.execute(
            "CREATE TEMP TABLE _dm_reports (key VARCHAR, message_id VARCHAR, rank INTEGER, address VARCHAR, ts TIMESTAMP)"
        )
        rows: list[tuple[str, str | None, int, str | None, datetime]] = [
            (r.key, m, i, r.recipient, naive_utc(r.ts)) for r in reports for i, m in enumerate(r.message_ids)
        ]
        rows += [(r.key, None, 999, r.recipient, naive_utc(r.ts)) for r in reports]
        con.executemany("INSERT INTO _dm_reports VALUES (?, ?, ?, ?, ?)", rows)
        found = con.execute(
            f"""WITH by_id AS (
                    SELECT r.key, arg_min(e.message_id, r.rank) AS message_id
                    FROM _dm_reports r JOIN ledger_entries e ON e.message_id = r.message_id AND e.kind = 'message'
                    GROUP BY r.key),
                by_address AS (
                    -- the latest message planned before the report, else the latest of all
                    SELECT r.key, arg_max(e.message_id, (e.planned_at <= r.ts, e.planned_at)) AS message_id
                    FROM _dm_reports r JOIN ledger_entries e
                      ON e.kind = 'message' AND e.channel = 'email'
                     AND e.address_sha256 = sha256({address_key_sql("'email'", "r.address")})
                    WHERE r.rank = 999 AND r.address IS NOT NULL
                    GROUP BY r.key)
                SELECT coalesce(i.key, a.key), coalesce(i.message_id, a.message_id)
                FROM by_id i FULL JOIN by_address a ON a.key = i.key"""
        ).fetchall()
    finally:
        con.close()
    return {key: message_id for key, message_id in found if message_id}


def import_bounces(ws: Workspace, path: Path, *, now: datetime | None = None) -> BounceImport:
    """Read the mailbox at ``path`` and import its bounces and complaints as events."""
    moment = now or datetime.now(UTC)
    outcome = BounceImport()
    reports: list[Report] = []
    for raw in read_mailbox(path):
        outcome.messages += 1
        given, why = classify(raw, moment)
        reports += given
        if why is not None:
            outcome.ignored[why] += 1
    resolved = _resolve(ws, reports) if reports else {}
    outcome.unmatched = sum(1 for r in reports if r.key not in resolved)
    events = [Found(resolved[r.key], r.event, r.ts, r.key, r.bounce_type) for r in reports if r.key in resolved]
    outcome.result = import_found(ws, events, now=moment, source=f"bounces:{path.name}")
    return outcome
