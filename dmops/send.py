"""``dmops send``: plan, render, write the outbox and record the ledger (SPEC §7).

The order of writes is what makes a crash harmless:

1. Under the run lock, *recover*: hidden run folders a killed run left are
   deleted (no consumer ever saw them); every visible run that the ledger does
   not list is read back from its files and recorded. Recovery reads the
   ledger and the files, never a progress counter.
2. Plan: contacts the ledger holds a message for are ``already_sent``.
3. Render every message into a hidden run folder; any render error drops it,
   so nothing is written.
4. Make the run visible (sync, manifest, rename, sync the folder).
5. Record its messages, the holdout assignments and the run in the ledger in
   one transaction.

A kill between 4 and 5 leaves a visible run the ledger lacks: step 1 of the
next run records it. A kill before 4 leaves only a hidden folder: the next
run renders those contacts again. Either way every eligible contact ends in
the outbox exactly once.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import duckdb

from dmops import ledger
from dmops.campaign import Campaign
from dmops.contacts import CHANNEL_ADDRESS
from dmops.db import quote_ident
from dmops.durable import hand_over
from dmops.errors import ConfigError, IOFailure, TemporaryFailure, UsageError
from dmops.lint import LintFailed, lint_campaign, unknown_in
from dmops.message import Renderer
from dmops.outbox import (
    RunWriter,
    complete_runs,
    encode,
    manifest_of,
    occurrence_dir,
    read_run,
    remove_incomplete,
)
from dmops.plan import PlanSummary, build, iso_z, prepare, spark_runner
from dmops.runlock import RunLock, check_stop, stop_reason
from dmops.schedule import occurrence_key
from dmops.secret import load_secret
from dmops.sqlrender import (
    SEND,
    FastRun,
    Unsupported,
    build_sites,
    compile_run,
    register_functions,
    run_query,
)
from dmops.tabular import raise_all
from dmops.timeutil import zone
from dmops.workspace import Workspace

BATCH = 5_000
ADDRESS_COLUMN = {channel: f"_dm_{column}" for channel, (column, _) in CHANNEL_ADDRESS.items()}  # in contacts
PARALLEL_MIN = 20_000  # below this many messages, starting worker processes costs more than it saves
MAX_WORKERS = 4
Progress = Callable[[int, int], None]


@dataclass
class SendResult:
    """What a send did."""

    summary: PlanSummary
    run: str | None  # the outbox run folder written, None when nothing was
    written: int  # messages written (rendered, in a dry run)
    holdouts: int  # holdout assignments recorded now
    remaining: int  # eligible contacts left for a later run (--limit, emergency stop)
    recovered: int  # messages of an interrupted earlier run recorded now
    dry_run: bool
    stopped: str | None = None  # the STOP reason, when an emergency stop cut the run short
    folder: Path | None = None


def recover(ws: Workspace, campaign: Campaign, occurrence: str) -> int:
    """Record visible runs the ledger lacks and drop hidden leftovers; messages recorded now."""
    folder = occurrence_dir(ws.outbox_dir, campaign.id, occurrence)
    remove_incomplete(folder)
    runs = complete_runs(folder)
    if not runs:
        return 0
    con = ledger.open_for_writing(ws)
    recovered = 0
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        known = ledger.recorded_runs(con, campaign.id, occurrence)
        for run in runs:
            if run.name in known:
                continue
            recovered += ledger.record_recovered_run(
                con,
                campaign_id=campaign.id,
                occurrence=occurrence,
                run=run.name,
                manifest=manifest_of(run),
                messages=list(read_run(run)),
                now=now,
            )
    finally:
        con.close()
    return recovered


def _render_batch(renderer: Renderer, columns: list[str], batch: list[tuple[Any, ...]]) -> tuple[bytes, int]:
    """Render a batch of planned rows into JSON lines; (bytes, count)."""
    lines = [
        encode(renderer.message(dict(zip(columns, values, strict=True)), variant, planned_at, to))
        for variant, planned_at, to, *values in batch
    ]
    return b"".join(lines), len(lines)


_worker: tuple[Renderer, list[str]] | None = None


def _worker_start(
    ws: Workspace, campaign: Campaign, occurrence: str, secret: bytes, show_pii: bool, columns: list[str]
) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent alone stops the run
    _worker = (Renderer(ws, campaign, occurrence, secret, show_pii), columns)


def _worker_render(batch: list[tuple[Any, ...]]) -> tuple[bytes, int]:
    assert _worker is not None
    return _render_batch(_worker[0], _worker[1], batch)


def _render_in_workers(batches: Iterator[list[tuple[Any, ...]]], setup: tuple[Any, ...]) -> Iterator[tuple[bytes, int]]:
    """Render batches on every core, in order; the caller's thread alone reads DuckDB.

    A worker that dies breaks the pool at once (BrokenProcessPool), so a send never hangs on one.
    """
    processes = min(os.cpu_count() or 1, MAX_WORKERS)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_worker_start, initargs=setup) as pool:
        pending: deque[Future[tuple[bytes, int]]] = deque()
        try:
            for batch in batches:
                pending.append(pool.submit(_worker_render, batch))
                if len(pending) >= 2 * processes:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool:
            raise IOFailure(
                "a rendering process died", hint="check memory; nothing of this run was made visible"
            ) from None
        finally:
            for future in pending:
                future.cancel()


def _contact_columns(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The contact columns a template can read -> their DuckDB types."""
    return {
        row[0]: row[1]
        for row in con.execute("SELECT column_name, column_type FROM (DESCRIBE contacts)").fetchall()
        if not row[0].startswith("_dm")
    }


def _fast_run(campaign: Campaign, columns: dict[str, str], engine: str) -> FastRun | None:
    """The compiled SQL rendering of the campaign, or None when it needs Jinja (or Jinja was asked for)."""
    if engine == "jinja":
        return None
    try:
        return compile_run(campaign, columns)
    except Unsupported:
        if engine == "sql":
            raise
        return None


def _fast_lines(
    con: duckdb.DuckDBPyConnection,
    fast: FastRun,
    renderer: Renderer,
    summary: PlanSummary,
    take: int,
) -> Iterator[tuple[bytes, int]]:
    """Render with the compiled query; a NULL line is re-rendered with Jinja, which raises its exact error."""
    campaign = fast.campaign
    address = ADDRESS_COLUMN[campaign.config.channel]
    read = "".join(f", c.{quote_ident(name)}" for name in fast.columns if name != "contact_id")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {SEND} AS
            SELECT p.contact_id, p.variant AS _dm_variant, p.planned_at AS _dm_planned_at, c.{address} AS _dm_to{read}
            FROM plan_rows p JOIN contacts c USING (contact_id)
            WHERE p.variant IS NOT NULL ORDER BY p.contact_id LIMIT $take""",
        {"take": take},
    )
    build_sites(con, fast.url_sites + fast.sites)
    register_functions(con)
    sql = run_query(
        fast,
        occurrence=summary.occurrence,
        channel=campaign.config.channel,
        purpose=campaign.config.purpose,
        headers=renderer.headers,
        domain=renderer.domain,
    )
    params = {"ipad": renderer.pads[0], "opad": renderer.pads[1]} if fast.uses_token else {}
    cursor = con.execute(sql, params)
    while rows := cursor.fetchmany(BATCH):
        lines = [line for _, line in rows]
        if None in lines:
            _raise_jinja_error(con, renderer, rows[lines.index(None)][0])
        yield ("\n".join(lines) + "\n").encode(), len(lines)


def _planned_sql(channel: str, columns: list[str], condition: str) -> str:
    """SELECT variant, planned time, address and every contact column of the plan rows meeting ``condition``."""
    select = ", ".join(f"c.{quote_ident(name)}" for name in columns)
    return f"""SELECT p.variant, p.planned_at, c.{ADDRESS_COLUMN[channel]}, {select}
               FROM plan_rows p JOIN contacts c USING (contact_id) WHERE {condition}"""


def _raise_jinja_error(con: duckdb.DuckDBPyConnection, renderer: Renderer, contact_id: str) -> None:
    columns = list(_contact_columns(con))
    row = con.execute(
        _planned_sql(renderer.config.channel, columns, "p.contact_id = $id"), {"id": contact_id}
    ).fetchone()
    assert row is not None
    variant, planned_at, to, *values = row
    renderer.message(dict(zip(columns, values, strict=True)), variant, planned_at, to)
    raise RuntimeError("the compiled template and Jinja disagree about a message; please report this")


def send(
    ws: Workspace,
    campaign: Campaign,
    at: datetime,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    progress: Progress | None = None,
    show_pii: bool = False,
    engine: str = "auto",
    lint: bool = False,
) -> SendResult:
    """Send ``campaign`` for the occurrence of ``at``: see the module docs for the order of writes.

    ``lint``: run the error-level ``dmops lint`` rules (:data:`dmops.lint.SEND_GATE`) on the planned
    campaign first and raise :class:`dmops.lint.LintFailed` (nothing written) when one fires.

    ``engine``: ``auto`` renders with compiled SQL when every template allows it, else Jinja;
    ``jinja`` and ``sql`` force one (``sql`` raises :class:`Unsupported` when it cannot).
    """
    if limit is not None and limit < 0:
        raise UsageError("--limit must be 0 or more")
    run = partial(_run, ws, campaign, at, limit=limit, progress=progress, show_pii=show_pii, engine=engine, lint=lint)
    if dry_run:
        return run(dry_run=True, recovered=0)
    with RunLock(ws.state_dir):
        check_stop(ws)
        occurrence = occurrence_key(campaign.config.recurrence, at, zone(ws.config.timezone))
        return run(dry_run=False, recovered=recover(ws, campaign, occurrence))


def _run(
    ws: Workspace,
    campaign: Campaign,
    at: datetime,
    *,
    dry_run: bool,
    limit: int | None,
    progress: Progress | None,
    show_pii: bool,
    recovered: int,
    engine: str = "auto",
    lint: bool = False,
) -> SendResult:
    with hand_over(ws.state_dir, "send", spark=ws.config.spark is not None) as hand_overs:
        allowed = [str(hand_overs)] if hand_overs else []
        con = prepare(ws, campaign, writable_ledger=not dry_run, allowed_directories=allowed)
        try:
            summary = build(con, ws, campaign, at, spark=spark_runner(ws, hand_overs))
            types = _contact_columns(con)
            unknown = {  # a misspelt name with a default would send "Hi there" to everyone: as validate, 78
                (template.key, found.message): ConfigError(
                    found.message, file=template.file, line=found.line, key=template.key, hint=found.hint
                )
                for _, template, found in unknown_in(con, campaign, list(types))
            }
            raise_all(list(unknown.values()))
            if lint:
                errors = lint_campaign(con, ws, campaign, gate=True).errors
                if errors:
                    raise LintFailed(errors)
            secret = load_secret(ws, create=not dry_run)
            renderer = Renderer(ws, campaign, summary.occurrence, secret, show_pii)
            take = summary.to_send if limit is None else min(limit, summary.to_send)
            fast = _fast_run(campaign, types, engine)
            columns = list(types)
            if fast is None:
                condition = "p.variant IS NOT NULL ORDER BY p.contact_id LIMIT $take"
                con.execute(_planned_sql(campaign.config.channel, columns, condition), {"take": take})
            folder = occurrence_dir(ws.outbox_dir, campaign.id, summary.occurrence)
            writer = RunWriter.start(folder, ws.root) if take and not dry_run else None
            written = 0
            stopped: str | None = None
            run_dir: Path | None = None
            try:
                batches = iter(lambda: con.fetchmany(BATCH), [])
                rendered: Iterator[tuple[bytes, int]]
                if fast is not None:
                    rendered = _fast_lines(con, fast, renderer, summary, take) if take else iter(())
                elif take >= PARALLEL_MIN and (os.cpu_count() or 1) > 1:
                    rendered = _render_in_workers(
                        batches, (ws, campaign, summary.occurrence, secret, show_pii, columns)
                    )
                else:
                    rendered = (_render_batch(renderer, columns, batch) for batch in batches)
                for blob, count in rendered:
                    if writer is not None:
                        writer.write_lines(blob, count)
                    written += count
                    if progress is not None:
                        progress(written, take)
                    if not dry_run and written < take and (stopped := stop_reason(ws)) is not None:
                        break
                run_dir = writer.finish(_manifest(campaign, summary, at)) if writer is not None else None
            except BaseException:
                if writer is not None:
                    writer.abort()
                raise
            holdouts = 0
            if not dry_run:
                holdouts = _record(con, campaign, summary, run_dir.name if run_dir else None, written, writer)
            result = SendResult(
                summary=summary,
                run=run_dir.name if not dry_run and run_dir else None,
                written=written,
                holdouts=holdouts,
                remaining=summary.to_send - written,
                recovered=recovered,
                dry_run=dry_run,
                stopped=stopped,
                folder=run_dir if not dry_run else None,
            )
        finally:
            con.close()
    if stopped is not None:
        raise StoppedDuringSend(result)
    return result


class StoppedDuringSend(TemporaryFailure):
    """An emergency stop ended a send between batches; what was written is complete and recorded."""

    def __init__(self, result: SendResult) -> None:
        reason = f": {result.stopped}" if result.stopped else ""
        super().__init__(
            f"sending stopped{reason} after {result.written:,} of {result.written + result.remaining:,} messages",
            hint="the outbox and ledger are consistent; `dmops resume`, then send again to continue",
        )
        self.result = result


def _manifest(campaign: Campaign, summary: PlanSummary, at: datetime) -> dict[str, Any]:
    return {
        "campaign_id": campaign.id,
        "occurrence": summary.occurrence,
        "channel": campaign.config.channel,
        "purpose": campaign.config.purpose,
        "at": iso_z(at),
    }


def _record(
    con: duckdb.DuckDBPyConnection,
    campaign: Campaign,
    summary: PlanSummary,
    run: str | None,
    written: int,
    writer: RunWriter | None,
) -> int:
    """Record the run's messages, every new holdout assignment and the run; the holdouts recorded."""
    return ledger.record_send(
        con,
        campaign_id=campaign.id,
        occurrence=summary.occurrence,
        channel=campaign.config.channel,
        purpose=campaign.config.purpose,
        run=run,
        count=written,
        sha256=writer.sha256 if writer is not None and run is not None else None,
        now=datetime.now(UTC).replace(tzinfo=None),
    )
