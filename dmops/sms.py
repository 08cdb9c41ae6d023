"""SMS encoding and segment counting (SPEC §7), as carriers and the public Twilio vectors count them.

GSM-7 when every character is in the GSM 03.38 basic set or its extension
table (``^{}\\[~]|€`` and form feed cost two septets); a single message holds
160 septets, a multi-part one 153 per part, and an escape pair is never split
across parts. Anything else is UCS-2, counted in UTF-16 code units: 70, or 67
per part (a surrogate pair is never split). An empty text is one segment.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


@dataclass(frozen=True)
class SmsSize:
    """How a text travels: encoding, segments, and its length in the encoding's units."""

    encoding: str  # "gsm7" | "ucs2"
    segments: int
    units: int  # septets (gsm7) or UTF-16 code units (ucs2)


def non_gsm_characters(text: str) -> list[str]:
    """Characters that force UCS-2, in order of first appearance."""
    seen: list[str] = []
    for char in text:
        if char not in GSM7_BASIC and char not in GSM7_EXTENSION and char not in seen:
            seen.append(char)
    return seen


def _parts(costs: list[int], single: int, per_part: int) -> int:
    total = sum(costs)
    if total <= single:
        return 1
    parts, used = 1, 0
    for cost in costs:  # a character (escape pair, surrogate pair) is never split across parts
        if used + cost > per_part:
            parts += 1
            used = 0
        used += cost
    return parts


def measure(text: str) -> SmsSize:
    """Encoding and segment count of ``text``."""
    if not non_gsm_characters(text):
        costs = [2 if char in GSM7_EXTENSION else 1 for char in text]
        return SmsSize("gsm7", _parts(costs, 160, 153), sum(costs))
    costs = [2 if ord(char) > 0xFFFF else 1 for char in text]
    return SmsSize("ucs2", _parts(costs, 70, 67), sum(costs))
