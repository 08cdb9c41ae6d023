"""``dmops gc``: delete outbox runs and events older than the workspace's ``retention`` (SPEC §12).

A run's age counts from its manifest's ``at`` (the clock of the send that wrote it), an event's from its
``ts``; what is exactly as old as the limit is kept. ``gc`` holds the send and delivery locks, so no run is
being written or handed over meanwhile, and never touches a hidden run a killed send left. A run is
retired by renaming it out of view, then emptying it (:func:`dmops.outbox.retire`): a kill leaves a hidden
folder the next ``gc`` empties, and the run's number is never given again. Events go in one transaction,
with each affected message's folded row recomputed. The ledger's messages and suppressions are kept:
``already_sent``, caps and opt-outs do not forget what was sent.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dmops import ledger
from dmops.db import connect
from dmops.errors import ConfigError, IOFailure
from dmops.outbox import complete_runs, manifest_of, occurrence_folders, purge_retired, remove_incomplete, retire
from dmops.runlock import DELIVER_LOCK_FILE, RunLock
from dmops.timeutil import naive_utc, parse_duration
from dmops.workspace import Workspace


@dataclass
class GcResult:
    dry_run: bool
    runs: list[tuple[Path, int]] = field(default_factory=list)  # run folder, messages
    events: int = 0


def _run_at(run: Path, manifest: dict[str, Any]) -> datetime:
    text = str(manifest.get("at", ""))
    try:
        return naive_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise IOFailure("the run's manifest has no valid `at`", file=run / "manifest.json") from None


def _old_runs(ws: Workspace, cutoff: datetime, *, purge: bool) -> list[tuple[Path, int]]:
    found: list[tuple[Path, int]] = []
    for occurrence in occurrence_folders(ws.outbox_dir):
        if purge:
            purge_retired(occurrence)  # what a killed gc left
            remove_incomplete(occurrence)  # a killed send's hidden run: no send runs while gc holds the lock
        for run in complete_runs(occurrence):
            manifest = manifest_of(run)
            if _run_at(run, manifest) < cutoff:
                found.append((run, int(manifest["count"])))
    return found


def gc(ws: Workspace, at: datetime, *, dry_run: bool) -> GcResult:
    """Delete (or with ``dry_run`` only count) what is older than the retention at ``at``."""
    retention = ws.config.retention
    if retention.outbox is None and retention.events is None:
        raise ConfigError(
            "no retention is set",
            file=ws.file,
            hint="add e.g. `retention: {outbox: 90d, events: 730d}` to dmops.yaml",
        )
    now = naive_utc(at)
    result = GcResult(dry_run)
    with contextlib.ExitStack() as locks:
        if not dry_run:  # a dry run only reads: no lock taken, the ledger opened read-only
            locks.enter_context(RunLock(ws.state_dir))
            locks.enter_context(RunLock(ws.state_dir, DELIVER_LOCK_FILE, "dmops deliver"))
        if retention.outbox is not None:
            result.runs = _old_runs(ws, now - parse_duration(retention.outbox), purge=not dry_run)
            if not dry_run:
                for run, _ in result.runs:
                    try:
                        retire(run)
                    except OSError as exc:
                        raise IOFailure(f"cannot delete the outbox run: {exc.strerror}", file=run) from None
        if retention.events is not None:
            result.events = _events(ws, now - parse_duration(retention.events), dry_run=dry_run)
    return result


def _events(ws: Workspace, cutoff: datetime, *, dry_run: bool) -> int:
    if not ledger.ledger_path(ws).is_file():
        return 0
    if dry_run:
        con = connect()
        try:
            ledger.attach(con, ws)
            return int(con.execute("SELECT count(*) FROM ledger_events WHERE ts < $c", {"c": cutoff}).fetchall()[0][0])
        finally:
            con.close()
    return ledger.delete_events_before(ws, cutoff)
