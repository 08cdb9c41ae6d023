"""When a message goes out: ``--at``, planned send times, quiet hours, occurrences (SPEC §6).

Local times become instants by one rule: a nonexistent local time (a DST gap)
moves forward by the gap, an ambiguous one (a DST overlap) takes its first
occurrence. Python's ``zoneinfo`` with ``fold=0`` does exactly that.

A planned time depends only on the recipient's effective zone, so it is
computed once per zone here and joined to contacts in DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dmops.campaign import Campaign, parse_send_at
from dmops.errors import UsageError
from dmops.timeutil import parse_clock
from dmops.workspace import QuietHours


def local_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local time in ``zone`` as an aware UTC instant (gap: forward; overlap: first)."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


AT_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))  # the instants --at accepts


def resolve_at(text: str | None, now: datetime, workspace_zone: ZoneInfo) -> datetime:
    """``--at`` as an aware UTC instant truncated to whole seconds; naive means the workspace zone."""
    if text is None:
        moment = now
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise UsageError(
                f"--at '{text}' is not an ISO 8601 date and time",
                hint="e.g. --at 2026-12-01T10:00 or 2026-12-01T02:00Z",
            ) from None
    try:
        moment = (local_to_utc(moment, workspace_zone) if moment.tzinfo is None else moment).astimezone(UTC)
    except OverflowError:
        moment = AT_RANGE[0] - timedelta(days=1)  # beyond what Python's dates hold: out of range below
    if not AT_RANGE[0] <= moment < AT_RANGE[1]:
        raise UsageError(f"--at '{text}' is outside the years 1970 to 8999", hint="e.g. --at 2026-12-01T10:00")
    return moment.replace(microsecond=0)


def occurrence_key(recurrence: str, at: datetime, workspace_zone: ZoneInfo) -> str:
    """``once``; daily ``YYYY-MM-DD``; weekly ISO ``YYYY-Www``; monthly ``YYYY-MM`` (workspace local date of --at)."""
    local = at.astimezone(workspace_zone).date()
    if recurrence == "daily":
        return local.isoformat()
    if recurrence == "weekly":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if recurrence == "monthly":
        return f"{local.year}-{local.month:02d}"
    return "once"


def in_quiet_hours(wall: time, quiet: QuietHours) -> bool:
    """Whether a local wall time falls in ``[start, end)``, which may wrap midnight."""
    start, end = parse_clock(quiet.start), parse_clock(quiet.end)
    if start == end:
        return False
    if start < end:
        return start <= wall < end
    return wall >= start or wall < end


def after_quiet_hours(t: datetime, zone: ZoneInfo, quiet: QuietHours | None) -> datetime:
    """``t`` moved to the next local ``end`` if it falls in quiet hours in ``zone``; else ``t``."""
    if quiet is None:
        return t
    local = t.astimezone(zone)
    wall = local.time().replace(tzinfo=None)
    if not in_quiet_hours(wall, quiet):
        return t
    start, end = parse_clock(quiet.start), parse_clock(quiet.end)
    day: date = local.date()
    if start > end and wall >= start:  # before midnight in a window that wraps: end is tomorrow
        day = day + timedelta(days=1)
    return local_to_utc(datetime.combine(day, end), zone)


@dataclass(frozen=True)
class ZoneTime:
    """The planned send time for recipients whose effective zone is ``zone``."""

    zone: str
    base: datetime  # before quiet hours, UTC
    planned: datetime  # t, UTC
    local: datetime  # t in ``zone``

    @property
    def quiet_shifted(self) -> bool:
        return self.planned != self.base


def base_time(campaign: Campaign, at: datetime, zone: ZoneInfo) -> datetime:
    """``send_at``, ``send_time`` on the local date of ``at``, or ``at`` — read in ``zone``."""
    config = campaign.config
    if config.send_at is not None:
        moment = parse_send_at(config.send_at)
        if moment.tzinfo is not None:
            return moment.astimezone(UTC)
        return local_to_utc(moment, zone)
    if config.send_time is not None:
        local_date = at.astimezone(zone).date()
        return local_to_utc(datetime.combine(local_date, parse_clock(config.send_time)), zone)
    return at


def zone_time(
    campaign: Campaign, at: datetime, zone_name: str, workspace_zone: str, quiet: QuietHours | None
) -> ZoneTime:
    """The planned send time for one effective recipient zone (SPEC §6)."""
    recipient = ZoneInfo(zone_name)
    reading_zone = recipient if campaign.config.local_time else ZoneInfo(workspace_zone)
    base = base_time(campaign, at, reading_zone)
    planned = base
    if campaign.config.purpose == "marketing":
        planned = after_quiet_hours(base, recipient, quiet)
    return ZoneTime(zone=zone_name, base=base, planned=planned, local=planned.astimezone(recipient))
