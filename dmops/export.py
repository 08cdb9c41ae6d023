"""Turn outbox email messages into RFC 5322 files a person can open in a mail client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from dmops.durable import write_new
from dmops.errors import OutputError
from dmops.outbox import complete_runs, read_run
from dmops.render import clean_header


def to_email(message: dict[str, Any]) -> EmailMessage:
    """One outbox email message as an ``email.message.EmailMessage`` (text, html alternative, headers)."""
    email = EmailMessage(policy=SMTP)
    for name, value in message["headers"].items():
        email[name] = clean_header(value)
    email["To"] = clean_header(message["to"])
    email["Subject"] = clean_header(message["subject"]) or ""
    sent = datetime.strptime(message["send_after"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    email["Date"] = format_datetime(sent)
    email.set_content(message["text"] or "", subtype="plain", charset="utf-8")
    if message.get("html"):
        email.add_alternative(message["html"], subtype="html", charset="utf-8")
    return email


def runs_of(outbox_dir: Path, campaign_id: str | None) -> Iterator[Path]:
    """Every complete run under the outbox (or one campaign's), in order."""
    if not outbox_dir.is_dir():
        return
    campaigns = [outbox_dir / campaign_id] if campaign_id else sorted(p for p in outbox_dir.iterdir() if p.is_dir())
    for campaign in campaigns:
        if campaign.is_dir():
            for occurrence in sorted(p for p in campaign.iterdir() if p.is_dir()):
                yield from complete_runs(occurrence)


def export_eml(outbox_dir: Path, target: Path, campaign_id: str | None = None) -> int:
    """Write ``<message_id>.eml`` for every email in the outbox; refuses to overwrite. How many."""
    written = 0
    try:
        target.mkdir(parents=True, exist_ok=True)
        for run in runs_of(outbox_dir, campaign_id):
            for message in read_run(run):
                if message["channel"] != "email":
                    continue
                write_new(target / f"{message['message_id']}.eml", bytes(to_email(message)), sync=False)
                written += 1
    except FileExistsError as exc:
        raise OutputError(
            "an .eml file already exists", file=Path(str(exc.filename)), hint="export into an empty folder"
        ) from None
    except OSError as exc:
        raise OutputError(f"cannot write .eml files: {exc.strerror}", file=target) from None
    return written
