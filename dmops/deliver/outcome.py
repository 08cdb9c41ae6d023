"""What handing one message to a transport came to, and the interface every transport's connection has."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

_EMAIL = re.compile(r"[^\s<>\"'@,;:]+@[^\s<>\"'@,;:]+")
_DIGITS = re.compile(r"\+?\d{7,}")


@dataclass(frozen=True)
class Outcome:
    """``state``: accepted | deferred | bounced | failed | in_doubt. ``code``: the SMTP or HTTP status;
    ``detail``: the reply, addresses masked; ``retry_after``: seconds the server asked to wait."""

    state: str
    code: int | None = None
    detail: str | None = None
    retry_after: float | None = None
    provider_id: str | None = None


class Unreachable(Exception):
    """The transport could not be reached at all (connection refused, TLS or AUTH failed): nothing was
    handed over, and no later message of this run will do better."""

    def __init__(self, detail: str, code: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


class Connection(Protocol):
    """One connection (or request slot) of a transport; used by one thread at a time."""

    def send(self, message: dict[str, Any], handing_over: Callable[[], Callable[[], None]]) -> Outcome:
        """Hand ``message`` over. ``handing_over`` is called once, after the connection is up and before the
        message's first command: it records ``in_flight`` and returns a function that returns once that
        record is on disk, to be called before the first byte that could make the message deliverable
        (SMTP's DATA), so that the disk write overlaps the commands before it."""
        ...

    def close(self) -> None: ...


def scrub(text: str, limit: int = 300) -> str:
    """A server's reply fit for the state store and logs: email addresses and long digit runs (phones)
    masked, cut to ``limit`` characters."""
    text = _EMAIL.sub(lambda m: m.group(0)[:1] + "***@" + m.group(0).rpartition("@")[2], text)
    text = _DIGITS.sub(lambda m: m.group(0)[:3] + "***" + m.group(0)[-2:], text)
    return " ".join(text.split())[:limit]
