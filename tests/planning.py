"""Helpers for plan tests: a workspace written inline, a seeded ledger, the plan as a dict."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dmops.campaign import load_campaign
from dmops.ledger import Entry, record
from dmops.plan import PlanSummary, run_plan
from dmops.schedule import resolve_at
from dmops.timeutil import zone
from dmops.workspace import load_workspace


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, body in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    return root


def seed(root: Path, *entries: Entry) -> None:
    record(load_workspace(root), entries)


def message(
    contact: str,
    planned: str,
    *,
    campaign: str = "other",
    channel: str = "email",
    purpose: str = "marketing",
    occurrence: str = "once",
    kind: str = "message",
    variant: str | None = "a",
) -> Entry:
    return Entry(
        campaign,
        occurrence,
        contact,
        kind,
        channel,
        purpose,
        variant if kind == "message" else None,
        datetime.fromisoformat(planned),
    )


def plan(root: Path, campaign_file: str, at: str) -> tuple[PlanSummary, dict[str, tuple[Any, ...]]]:
    """The summary and {contact_id: (reason, variant, send_after)} for one plan."""
    ws = load_workspace(root)
    campaign = load_campaign(root / campaign_file, ws)
    moment = resolve_at(at, datetime.now(UTC), zone(ws.config.timezone))
    con, summary = run_plan(ws, campaign, moment)
    try:
        rows = con.execute(
            "SELECT contact_id, reason, variant, strftime(planned_at, '%Y-%m-%dT%H:%M:%SZ') FROM plan_rows"
        ).fetchall()
    finally:
        con.close()
    return summary, {r[0]: tuple(r[1:]) for r in rows}


def independent_u(campaign: str, contact: str) -> float:
    """The contact's place in [0, 1) for splits, computed as SPEC §4 defines it, not as the code does."""
    return int(hashlib.md5(f"{campaign}:{contact}".encode()).hexdigest()[:15], 16) / 16**15


def run_cli(root: Path, *args: str) -> tuple[int, str]:
    """``dmops -w ROOT ARGS…`` in-process: the exit code, and stderr then stdout; a traceback fails the test."""
    from typer.testing import CliRunner

    from dmops.cli import app

    result = CliRunner().invoke(app, ["-w", str(root), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stderr + result.stdout


def dead_pid() -> int:
    """The id of a process that has ended."""
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(child.stdout)
