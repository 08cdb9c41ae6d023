"""Time zones, durations and clock times as dmops accepts them (SPEC §2, §6)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

_DURATION = re.compile(r"^([1-9][0-9]*)([smhdw])\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_DURATION = timedelta(days=3660)  # ten years: longer than any cap, window or lifecycle span
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])\Z")

# Hints only: legacy abbreviations are rejected, and these name a city zone to use instead.
_ABBREVIATION_HINTS = {
    "EST": "America/New_York",
    "EDT": "America/New_York",
    "CST": "America/Chicago or Asia/Shanghai",
    "CDT": "America/Chicago",
    "MST": "America/Denver",
    "MDT": "America/Denver",
    "PST": "America/Los_Angeles",
    "PDT": "America/Los_Angeles",
    "GMT": "UTC or Europe/London",
    "BST": "Europe/London",
    "CET": "Europe/Paris",
    "CEST": "Europe/Paris",
    "EET": "Europe/Athens",
    "JST": "Asia/Tokyo",
    "KST": "Asia/Seoul",
    "IST": "Asia/Kolkata",
    "HKT": "Asia/Hong_Kong",
    "SGT": "Asia/Singapore",
    "AEST": "Australia/Sydney",
    "PRC": "Asia/Shanghai",
    "ROC": "Asia/Taipei",
}


@lru_cache(maxsize=1)
def accepted_timezones() -> frozenset[str]:
    """IANA ``Area/Location`` names known to this machine's tz database, plus ``UTC``."""
    names = {
        name
        for name in available_timezones()
        if "/" in name and not name.startswith(("Etc/", "SystemV/", "posix/", "right/"))
    }
    names.add("UTC")
    return frozenset(names)


def timezone_problem(name: str) -> tuple[str, str] | None:
    """``None`` when ``name`` is accepted, else (message, hint)."""
    if name in accepted_timezones():
        return None
    upper = name.upper()
    if upper in _ABBREVIATION_HINTS:
        return (
            f"'{name}' is an abbreviation, not an IANA time zone",
            f"use a city zone such as {_ABBREVIATION_HINTS[upper]}",
        )
    if name.startswith("Etc/") or "/" not in name:
        return (f"'{name}' is not an IANA Area/Location time zone", "use UTC or a city zone such as Asia/Shanghai")
    return (f"unknown time zone '{name}'", "use an IANA name such as Asia/Shanghai or Europe/Berlin")


def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an accepted name."""
    return ZoneInfo(name)


def parse_duration(text: str) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` -> timedelta (elapsed time). Raises ValueError."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a duration; write a whole number and a unit: 30m, 12h, 7d, 2w")
    amount, unit = int(match.group(1)), _UNITS[match.group(2)]
    if amount * timedelta(**{unit: 1}).total_seconds() > MAX_DURATION.total_seconds():  # before timedelta overflows
        raise ValueError(f"'{text}' is longer than {MAX_DURATION.days} days; no dmops window is")
    return timedelta(**{unit: amount})


def parse_clock(text: str) -> time:
    """``HH:MM`` (24-hour) -> time. Raises ValueError."""
    match = _CLOCK.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a time of day; write HH:MM in 24-hour time, quoted: \"08:00\"")
    return time(int(match.group(1)), int(match.group(2)))


def naive_utc(moment: datetime) -> datetime:
    """An aware instant as the naive UTC TIMESTAMP the ledger stores; a naive one is taken as UTC already."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment
