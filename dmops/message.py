"""One message for one contact: templates rendered, the unsubscribe token, RFC 8058 headers, the message id.

Both ``dmops send`` (which writes the messages to the outbox) and ``dmops lint``
(which renders them for sample contacts and checks them) build messages here,
so lint sees exactly what send would write.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from dmops.campaign import Campaign
from dmops.errors import ConfigError
from dmops.outbox import message_id
from dmops.pii import mask_id
from dmops.plan import iso_z
from dmops.render import Compiled, clean_header, compile_template, context_for
from dmops.sms import measure
from dmops.sqlrender import hmac_pads
from dmops.workspace import Workspace


def unsubscribe_token(secret: bytes, campaign_id: str, contact_id: str) -> str:
    """An unguessable per-campaign, per-contact token: HMAC-SHA256 under the workspace secret, 128 bits."""
    digest = hmac.new(secret, f"{campaign_id}\x1f{contact_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def tokens_match(expected: str, candidate: str) -> bool:
    """Constant-time comparison of an unsubscribe token."""
    return bool(candidate) and hmac.compare_digest(expected.encode(), candidate.encode())


def one_click_headers(url: str) -> dict[str, str]:
    """RFC 8058 headers for an https unsubscribe URL (ValueError for anything else)."""
    if not url.startswith("https://") or len(url) <= len("https://"):
        raise ValueError("a one-click unsubscribe URL must be https")
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def list_unsubscribe_uris(value: str) -> list[str]:
    """The URIs of a List-Unsubscribe header value, in order (RFC 2369: ``<uri>, <uri>``)."""
    uris: list[str] = []
    rest = value
    while "<" in rest:
        start = rest.index("<")
        end = rest.find(">", start)
        if end < 0:
            break
        uris.append(rest[start + 1 : end])
        rest = rest[end + 1 :]
    return uris


class Renderer:
    """Turns one planned row into one outbox message."""

    def __init__(self, ws: Workspace, campaign: Campaign, occurrence: str, secret: bytes, show_pii: bool) -> None:
        self.campaign = campaign
        self.config = campaign.config
        self.occurrence = occurrence
        self.secret = secret
        self.show_pii = show_pii
        self.parts: dict[str, dict[str, Compiled]] = {}
        for (variant, part), template in campaign.templates.items():
            self.parts.setdefault(variant, {})[part] = compile_template(template, html=(part == "html"))
        self.unsubscribe = compile_template(campaign.unsubscribe_url) if campaign.unsubscribe_url else None
        self.pads = hmac_pads(secret)
        sender = self.config.sender
        self.headers: dict[str, str] = {}
        self.domain = "dmops.invalid"
        if self.config.channel == "email" and sender is not None:
            self.headers["From"] = sender.from_
            if sender.reply_to:
                self.headers["Reply-To"] = sender.reply_to
            domain = parseaddr(sender.from_)[1].rpartition("@")[2]
            self.domain = domain or "dmops.invalid"

    def render(
        self, contact: dict[str, Any], variant: str, shown_as: str | None = None
    ) -> tuple[dict[str, str], str | None]:
        """The variant's parts for one contact, and the unsubscribe URL; DataError naming file and line.

        Errors name the contact by its masked id (its id with --show-pii), or as ``shown_as`` when given.
        """
        contact_id = str(contact["contact_id"])
        masked = shown_as or (contact_id if self.show_pii else mask_id(contact_id))
        token = unsubscribe_token(self.secret, self.campaign.id, contact_id)
        context = context_for(contact, {"campaign": self.campaign.id, "variant": variant, "unsubscribe_token": token})
        url = None
        if self.unsubscribe is not None:
            url = self.unsubscribe.render(context, masked, self.show_pii).strip()
            context["unsubscribe_url"] = url
        rendered = {
            part: compiled.render(context, masked, self.show_pii) for part, compiled in self.parts[variant].items()
        }
        return rendered, url

    def message(self, contact: dict[str, Any], variant: str, planned_at: datetime, to: str) -> dict[str, Any]:
        contact_id = str(contact["contact_id"])
        rendered, url = self.render(contact, variant)
        mid = message_id(self.campaign.id, self.occurrence, contact_id)
        channel = self.config.channel
        headers: dict[str, str] = {}
        if channel == "email":
            headers = {**self.headers, "Message-ID": f"<{mid}@{self.domain}>"}
            if self.config.purpose == "marketing":
                try:
                    headers.update(one_click_headers(clean_header(url) or ""))
                except ValueError:
                    raise ConfigError(
                        "the unsubscribe URL must be an https URL for one-click unsubscribe (RFC 8058)",
                        file=self.campaign.path,
                        line=self.campaign.line_of("unsubscribe_url"),
                        key="unsubscribe_url",
                    ) from None
        message: dict[str, Any] = {
            "message_id": mid,
            "campaign_id": self.campaign.id,
            "occurrence": self.occurrence,
            "contact_id": contact_id,
            "channel": channel,
            "variant": variant,
            "to": to,
            "send_after": iso_z(planned_at),
            "subject": clean_header(rendered.get("subject")) if channel == "email" else None,
            "text": rendered.get("text"),
            "html": rendered.get("html") if channel == "email" else None,
            "headers": headers,
        }
        if channel == "sms":
            size = measure(message["text"] or "")
            message["encoding"] = size.encoding
            message["segments"] = size.segments
        return message
