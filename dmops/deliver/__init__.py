"""``dmops deliver`` (SPEC §11): hand the outbox to the transports of ``dmops.yaml``.

:func:`deliver` checks the configuration and the environment (every credential variable set, a transport
for every channel that has messages due) and runs :func:`dmops.deliver.run.deliver`. :func:`dry_run`
counts per transport the outbox messages whose ``send_after`` is at or before ``--at``, and how long the
transport's rate limits make handing them over take; it opens no connection. Every outbox run is checked
against its manifest (count and SHA-256) before it is read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dmops.db import connect
from dmops.deliver import run
from dmops.deliver.run import DeliveryResult, Request
from dmops.errors import ConfigError, DmopsError
from dmops.outbox import complete_runs, verified_messages
from dmops.tabular import raise_all
from dmops.timeutil import naive_utc
from dmops.workspace import Rate, SmtpTransport, Workspace


@dataclass(frozen=True)
class Due:
    """The messages of one channel due at ``--at``, and the transport that would take them."""

    channel: str
    transport: str
    kind: str
    where: str  # host:port or the URL's host: never a credential
    messages: int
    first: datetime | None
    last: datetime | None
    seconds: float  # how long the rate limits make handing them over take (0: no limit)


def outbox_files(ws: Workspace, campaign_ids: Sequence[str] = ()) -> list[Path]:
    """The messages files of every complete outbox run (of ``campaign_ids`` when given), verified."""
    if not ws.outbox_dir.is_dir():
        return []
    files = []
    for campaign in sorted(p for p in ws.outbox_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if campaign_ids and campaign.name not in campaign_ids:
            continue
        for occurrence in sorted(p for p in campaign.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files += [verified_messages(run) for run in complete_runs(occurrence)]
    return files


def rate_seconds(messages: int, rate: Rate) -> float:
    """How long ``messages`` take under ``rate``: the per-second pace, or the hours and days the per-hour and
    per-day limits make them wait, whichever is longest."""
    if messages <= 0:
        return 0.0
    seconds = messages / rate.per_second if rate.per_second else 0.0
    if rate.per_hour:
        seconds = max(seconds, (math.ceil(messages / rate.per_hour) - 1) * 3600.0)
    if rate.per_day:
        seconds = max(seconds, (math.ceil(messages / rate.per_day) - 1) * 86400.0)
    return seconds


def unset_credentials(ws: Workspace, environ: Mapping[str, str]) -> list[ConfigError]:
    """One ConfigError per credential variable of the transports that ``environ`` lacks (by name, never value)."""
    return [
        ConfigError(
            f"the environment variable {variable} is not set",
            file=ws.file,
            line=ws.line_of(*key.split(".")),
            key=key,
            hint="set it where dmops deliver runs; credentials never go in dmops.yaml",
        )
        for key, variable in ws.config.missing_secrets(environ)
    ]


def check_ready(ws: Workspace, channels: Sequence[str], environ: Mapping[str, str]) -> None:
    """ConfigError (78), every problem at once: a credential variable unset, or a channel with messages due
    and no transport."""
    config = ws.config
    problems: list[DmopsError] = list(unset_credentials(ws, environ))
    for channel in channels:
        if channel not in config.channels:
            problems.append(
                ConfigError(
                    f"{channel} messages are due and no transport delivers {channel}",
                    file=ws.file,
                    line=ws.line_of("channels") if config.channels else None,
                    key=f"channels.{channel}",
                    hint="add a transport under transports and name it in channels",
                )
            )
    raise_all(problems)


def dry_run(
    ws: Workspace, at: datetime, campaign_ids: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> list[Due]:
    """What ``deliver`` would hand over at ``at``, per channel and transport; raises ConfigError when the
    configuration or the environment is not ready."""
    return _due(ws, at, outbox_files(ws, campaign_ids), os.environ if environ is None else environ)


def _due(ws: Workspace, at: datetime, files: Sequence[Path], environ: Mapping[str, str]) -> list[Due]:
    """:func:`dry_run` over outbox files already verified."""
    rows: list[tuple[str, int, datetime, datetime]] = []
    if files:
        con = connect()
        try:
            rows = con.execute(
                """SELECT channel, count(*), min(send_after), max(send_after)
                   FROM read_json($files, format = 'newline_delimited',
                                  columns = {channel: 'VARCHAR', send_after: 'TIMESTAMPTZ'})
                   WHERE send_after <= $at GROUP BY channel ORDER BY channel""",
                {"files": [str(f) for f in files], "at": at},
            ).fetchall()
        finally:
            con.close()
    check_ready(ws, [row[0] for row in rows], environ)
    found = []
    for channel, count, first, last in rows:
        name = ws.config.channels[channel]  # type: ignore[index]
        transport = ws.config.transports[name]
        if isinstance(transport, SmtpTransport):
            where = f"{transport.host}:{transport.port}"
        else:
            from urllib.parse import urlsplit

            where = urlsplit(transport.url).hostname or ""
        found.append(
            Due(
                channel,
                name,
                transport.kind,
                where,
                int(count),
                naive_utc(first) if first else None,
                naive_utc(last) if last else None,
                rate_seconds(int(count), transport.rate),
            )
        )
    return found


def deliver(
    ws: Workspace,
    at: datetime,
    campaign_ids: Sequence[str] = (),
    *,
    limit: int | None = None,
    resend_in_doubt: bool = False,
    environ: Mapping[str, str] | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> DeliveryResult:
    """Hand the due messages over (SPEC §11); raises ConfigError (78) before connecting to anything when
    the configuration or the environment is not ready."""
    env = os.environ if environ is None else environ
    files = outbox_files(ws, campaign_ids)  # each run checked against its manifest once
    due = _due(ws, at, files, env)
    request = Request(at, limit, resend_in_doubt)
    handed = [str(f) for f in files] if due or resend_in_doubt else []
    return run.deliver(ws, request, run.environment_connections(ws, env), handed, progress=progress)


def delivery_status(ws: Workspace, campaign_ids: Sequence[str] = ()) -> list[tuple[str, str, int]]:
    """(campaign, state, messages) of every message a delivery run has recorded."""
    return run.status(ws, campaign_ids)
