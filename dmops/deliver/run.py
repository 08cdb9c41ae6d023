"""One ``dmops deliver`` run (SPEC §11): the due messages handed to their transports, each message's state
recorded in the delivery journal (see :mod:`dmops.ledger`) before and after it is handed over.

Order of a run: the delivery lock (one run per workspace); the STOP file; the bounces of earlier runs
recorded as events; a new journal; messages a killed run left ``in_flight`` recorded ``in_doubt``; the due
messages selected in SQL with the suppressions in force now; then, in ``send_after``, ``message_id`` order,
each message checked against STOP, the suppressions this run added and the rate limits, and handed to one
of its transport's connections (threads). A message is ``in_flight`` on disk before its transport sees it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dmops import ledger
from dmops.contacts import load_contacts
from dmops.db import connect, execute_script
from dmops.deliver.outcome import Connection, Outcome, Unreachable
from dmops.deliver.pace import Pace
from dmops.errors import TemporaryFailure
from dmops.events import Found, import_found
from dmops.runlock import DELIVER_LOCK_FILE, RunLock, check_stop, stop_reason
from dmops.sql import query
from dmops.suppressions import load_suppressions
from dmops.timeutil import naive_utc, parse_duration
from dmops.workspace import SmtpTransport, Workspace

FIRST_RETRY = 60.0  # seconds before the first retry of a deferred message; doubled per deferral
LAST_RETRY = 3600.0  # the longest wait between two retries
BATCH = 1000  # due messages read from DuckDB at a time
STOP_CHECK = 0.1  # seconds between two looks for the STOP file


@dataclass(frozen=True)
class Request:
    at: datetime  # aware: the clock of every decision
    limit: int | None = None
    resend_in_doubt: bool = False


@dataclass
class TransportResult:
    name: str
    kind: str
    states: Counter[str] = field(default_factory=Counter)
    stopped: str | None = None  # why it took no more messages: unreachable, per_hour, per_day


@dataclass
class DeliveryResult:
    at: datetime
    transports: dict[str, TransportResult]
    in_doubt: list[str]  # message ids held (or resent with --in-doubt resend)
    recovered: int  # in_flight messages of a killed run, now in_doubt
    waiting: int  # deferred messages waiting for a later run
    left: int  # due messages this run did not hand over (stop, limits, unreachable, --limit)
    stopped: str | None = None  # the STOP file's reason when it halted the run
    bounces_recorded: int = 0
    journal: str = ""

    @property
    def exit_code(self) -> int:
        """0 when nothing due is left queued or deferred; 75 when messages wait for a later run."""
        return 75 if self.waiting or self.left or self.stopped is not None else 0


def backoff(message_id: str, deferrals: int, stated: float | None) -> float:
    """Seconds before the next attempt: 1 min doubled per earlier deferral up to 1 h, jittered by up to
    +25% (from the message id, so a rerun computes the same), or the server's stated wait if longer."""
    base = min(FIRST_RETRY * 2 ** max(deferrals, 0), LAST_RETRY)
    jitter = int(hashlib.sha256(f"{message_id}:{deferrals}".encode()).hexdigest()[:4], 16) / 0xFFFF / 4
    return float(max(base * (1 + jitter), stated or 0.0))


class _Clock:
    """``--at`` moving with the real clock from the run's start (naive UTC)."""

    def __init__(self, at: datetime) -> None:
        self.start = naive_utc(at)
        self.t0 = time.monotonic()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.t0)


ConnectionFactory = Callable[[str], Connection]


def _routes(ws: Workspace) -> list[tuple[str, str, float]]:
    config = ws.config
    return [
        (channel, name, parse_duration(config.transports[name].max_age).total_seconds())
        for channel, name in config.channels.items()
        if name in config.transports
    ]


def _select(ws: Workspace, files: list[str], request: Request) -> Any:
    """An in-memory DuckDB connection holding ``deliver_due`` (and ``delivery_lines``)."""
    con = connect()
    try:
        load_contacts(con, ws)  # every address of each contact, for the suppressions
        ledger.attach(con, ws)
        ledger.delivery_states(con, ws)
        load_suppressions(con, ws)
        con.execute("CREATE TEMP TABLE _dm_routes (channel VARCHAR, transport VARCHAR, max_age_seconds DOUBLE)")
        con.executemany("INSERT INTO _dm_routes VALUES (?, ?, ?)", _routes(ws))
        at = naive_utc(request.at)
        execute_script(
            con,
            query("deliver_due"),
            {"files": files, "at": at, "at_tz": request.at, "resend": request.resend_in_doubt},
        )
        con.execute(f"DETACH {ledger.ALIAS}")
    except BaseException:
        con.close()
        raise
    return con


def deliver(
    ws: Workspace,
    request: Request,
    connect_transport: ConnectionFactory,
    files: list[str],
    *,
    progress: Callable[[str, str], None] | None = None,
) -> DeliveryResult:
    """Hand the due messages of ``files`` (verified outbox runs) over; ``connect_transport(name)`` opens a
    connection of a transport. ``progress(transport, state)`` is called after each message."""
    with RunLock(ws.state_dir, DELIVER_LOCK_FILE, "dmops deliver"):
        check_stop(ws)
        recorded = _record_bounces(ws, request.at)
        journal = ledger.DeliveryJournal(ws)
        try:
            result = _run(ws, request, connect_transport, files, journal, progress)
        finally:
            journal.close()
        result.bounces_recorded = recorded + _record_bounces(ws, request.at)
        return result


def _record_bounces(ws: Workspace, at: datetime) -> int:
    """The journals' bounces as hard ``bounce`` events through ``events import`` (SPEC §11: a 5xx suppresses
    the contact from the next plan), each keyed by its message id so that recording it again adds nothing;
    0 and nothing done when a send holds the run lock (the next run records them). The events added."""
    con = connect()
    try:
        ledger.delivery_states(con, ws)
        rows = con.execute(
            "SELECT message_id, \"at\" FROM delivery_states WHERE state = 'bounced' ORDER BY message_id"
        ).fetchall()
    finally:
        con.close()
    found = [Found(m, "bounce", ts.replace(tzinfo=UTC), f"deliver:{m}:bounce", "hard") for m, ts in rows]
    try:
        result = import_found(ws, found, now=at, source="dmops deliver")
    except TemporaryFailure:
        return 0
    return result.imported if result is not None else 0


def _run(
    ws: Workspace,
    request: Request,
    connect_transport: ConnectionFactory,
    files: list[str],
    journal: ledger.DeliveryJournal,
    progress: Callable[[str, str], None] | None,
) -> DeliveryResult:
    clock = _Clock(request.at)
    config = ws.config
    results = {
        name: TransportResult(name, config.transports[name].kind)
        for name in sorted(set(config.channels.values()))
        if name in config.transports
    }
    con = connect()
    ledger.delivery_states(con, ws)
    cursor = con.execute(
        "SELECT message_id, campaign_id, channel, transport FROM delivery_states WHERE state = 'in_flight'"
        " ORDER BY message_id"
    )
    stranded = [
        dict(zip(("message_id", "campaign_id", "channel", "transport"), r, strict=True)) for r in cursor.fetchall()
    ]
    handed = con.execute(
        'SELECT transport, list("at") FROM delivery_lines WHERE state = \'in_flight\' AND "at" > $since'
        " GROUP BY transport",
        {"since": naive_utc(request.at) - timedelta(days=1)},
    ).fetchall()
    con.close()
    for row in stranded:
        journal.append(_line(row, row["transport"], "in_doubt", clock(), detail="interrupted in flight"), sync=True)
    paces = {name: Pace(config.transports[name].rate, dict(handed).get(name, [])) for name in results}
    if not files:
        return DeliveryResult(request.at, results, [], len(stranded), 0, 0, None, 0, journal.path.name)
    con = _select(ws, files, request)
    try:
        return _hand_over(ws, request, con, journal, clock, results, paces, connect_transport, progress, stranded)
    finally:
        con.close()


def _line(row: Mapping[str, Any], transport: str | None, state: str, at: datetime, **extra: Any) -> dict[str, Any]:
    """A journal line for the message of ``row`` (its ``message_id``, ``campaign_id`` and ``channel``)."""
    return {
        "message_id": row["message_id"],
        "campaign_id": row["campaign_id"],
        "channel": row["channel"],
        "transport": transport,
        "state": state,
        "at": at,
        **{k: v for k, v in extra.items() if v is not None},
    }


class _Capped(Exception):
    """A per-hour or per-day limit is reached: the message stays queued."""


class _Worker(threading.Thread):
    """One connection of a transport: takes messages from the transport's queue until it gets None."""

    def __init__(self, lane: _Lane, index: int) -> None:
        super().__init__(name=f"deliver-{lane.name}-{index}", daemon=True)
        self.lane = lane

    def run(self) -> None:
        lane = self.lane
        self.connection: Connection | None = None
        while True:
            item = lane.work.get()
            if item is None:
                break
            try:
                self._one(*item)
            except BaseException as exc:  # never die with messages still queued: the dispatcher waits on us
                lane.errors.append(exc)
                lane.unreachable = f"internal error ({type(exc).__name__})"
                self.connection = None
        if self.connection is not None:
            self.connection.close()

    def _one(self, row: dict[str, Any], message: dict[str, Any]) -> None:
        lane = self.lane
        if lane.unreachable is not None or lane.capped is not None:  # left queued for a later run
            with lane.guard:
                lane.skipped += 1
            return
        handed: list[bool] = []

        def handing_over() -> Callable[[], None]:
            durable = lane.handing_over(row)
            handed.append(True)
            return durable

        try:
            if self.connection is None:
                self.connection = lane.connect(lane.name)
            outcome = self.connection.send(message, handing_over)
        except _Capped as exc:
            lane.capped = str(exc)
            with lane.guard:
                lane.skipped += 1
            return
        except Unreachable as exc:
            lane.unreachable = exc.detail
            lane.finish(row, Outcome("deferred", exc.code, exc.detail), handed=False)
            return
        except Exception as exc:  # a bug or an unexpected library error: stop this transport, say why
            lane.errors.append(exc)
            lane.unreachable = f"unexpected {type(exc).__name__}"
            self.connection = None
            if handed:  # it may have gone out
                lane.finish(row, Outcome("in_doubt", None, lane.unreachable), handed=True)
            return
        lane.finish(row, outcome, handed=bool(handed))


class _Lane:
    """A transport's queue, connections and bookkeeping within one run."""

    def __init__(
        self,
        name: str,
        connections: int,
        connect: ConnectionFactory,
        journal: ledger.DeliveryJournal,
        clock: _Clock,
        max_age: float,
        result: TransportResult,
        pace: Pace,
        on_done: Callable[[str, str, str], None],
    ) -> None:
        self.name = name
        self.pace = pace
        self.connect = connect
        self.journal = journal
        self.clock = clock
        self.max_age = max_age
        self.result = result
        self.on_done = on_done
        self.work: queue.Queue[tuple[dict[str, Any], dict[str, Any]] | None] = queue.Queue(maxsize=connections)
        self.unreachable: str | None = None
        self.capped: str | None = None  # the rate window whose limit this run reached
        self.skipped = 0  # taken from the queue after the transport became unreachable or capped: still queued
        self.guard = threading.Lock()
        self.errors: list[BaseException] = []
        self.workers = [_Worker(self, i) for i in range(connections)]
        for worker in self.workers:
            worker.start()

    @property
    def stopped(self) -> str | None:
        """Why this transport takes no more messages this run, or None."""
        return "unreachable: " + self.unreachable if self.unreachable is not None else self.capped

    def handing_over(self, row: dict[str, Any]) -> Callable[[], None]:
        capped = self.pace.take(self.clock)
        if capped is not None:
            raise _Capped(capped)
        seq = self.journal.append(_line(row, self.name, "in_flight", self.clock()))
        return functools.partial(self.journal.sync, seq)

    def finish(self, row: dict[str, Any], outcome: Outcome, *, handed: bool) -> None:
        now = self.clock()
        state, retry_at = outcome.state, None
        if state == "deferred":  # retried until max_age after its first attempt, then failed
            waited = (now - (row["first_attempt"] or now)).total_seconds()
            if waited >= self.max_age:
                state = "failed"
            else:
                retry_at = now + timedelta(
                    seconds=backoff(row["message_id"], int(row["deferrals"]), outcome.retry_after)
                )
        self.journal.append(
            _line(
                row,
                self.name,
                state,
                now,
                code=outcome.code,
                detail=outcome.detail,
                retry_at=retry_at,
                provider_id=outcome.provider_id,
                attempt=int(row["attempts"]) + (1 if handed else 0),
            )
        )
        self.result.states[state] += 1
        self.on_done(self.name, state, row["contact_id"] if state == "bounced" else "")

    def close(self) -> None:
        for _ in self.workers:
            self.work.put(None)
        for worker in self.workers:
            worker.join()


def _put(lane: _Lane, item: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Queue ``item`` for ``lane``'s connections, never waiting on connections that are all gone."""
    while True:
        try:
            lane.work.put(item, timeout=0.5)
            return
        except queue.Full:
            if not any(worker.is_alive() for worker in lane.workers):
                raise RuntimeError(f"every connection of transport {lane.name} has stopped") from None


def _hand_over(
    ws: Workspace,
    request: Request,
    con: Any,
    journal: ledger.DeliveryJournal,
    clock: _Clock,
    results: dict[str, TransportResult],
    paces: dict[str, Pace],
    connect_transport: ConnectionFactory,
    progress: Callable[[str, str], None] | None,
    stranded: list[dict[str, Any]],
) -> DeliveryResult:
    config = ws.config
    bounced: set[str] = set()  # contacts this run bounced: a hard bounce suppresses every channel
    guard = threading.Lock()

    def done(transport: str, state: str, contact_id: str) -> None:
        with guard:
            if contact_id:
                bounced.add(contact_id)
        if progress is not None:
            progress(transport, state)

    lanes: dict[str, _Lane] = {}

    def lane(name: str) -> _Lane:
        if name not in lanes:
            transport = config.transports[name]
            connections = transport.max_connections if isinstance(transport, SmtpTransport) else transport.concurrency
            lanes[name] = _Lane(
                name,
                connections,
                connect_transport,
                journal,
                clock,
                parse_duration(transport.max_age).total_seconds(),
                results[name],
                paces[name],
                done,
            )
        return lanes[name]

    in_doubt = [
        r[0] for r in con.execute("SELECT message_id FROM deliver_due WHERE state = 'in_doubt' ORDER BY 1").fetchall()
    ]
    cursor = con.execute("SELECT * EXCLUDE (send_after) FROM deliver_due ORDER BY send_after_utc, message_id")
    names = [d[0] for d in cursor.description]
    left = 0
    handed = 0
    stopped: str | None = None
    next_stop_check = 0.0
    try:
        while True:
            batch = cursor.fetchmany(BATCH)
            if not batch:
                break
            for values in batch:
                row = dict(zip(names, values, strict=True))
                name = row["transport"]
                if stopped is None and time.monotonic() >= next_stop_check:
                    stopped = stop_reason(ws)
                    next_stop_check = time.monotonic() + STOP_CHECK
                if stopped is not None or name is None or (request.limit is not None and handed >= request.limit):
                    left += 1
                    continue
                result = results[name]
                if row["action"] == "suppress" or row["contact_id"] in bounced:
                    journal.append(_line(row, name, "suppressed", clock()))
                    result.states["suppressed"] += 1
                    continue
                if row["action"] == "expire":
                    journal.append(_line(row, name, "failed", clock(), detail="waited longer than max_age"))
                    result.states["failed"] += 1
                    continue
                current = lanes.get(name)
                if result.stopped is None and current is not None:
                    result.stopped = current.stopped
                if result.stopped is None:
                    result.stopped = paces[name].capped(clock())
                if result.stopped is not None:
                    left += 1
                    continue
                handed += 1
                _put(lane(name), (row, json.loads(row["line"])))
    finally:
        for each in lanes.values():
            each.close()
    for each in lanes.values():
        if each.errors:
            raise each.errors[0]
        if results[each.name].stopped is None:
            results[each.name].stopped = each.stopped
        left += each.skipped
    held = _held(con, ws)  # refreshes the states for _waiting too
    return DeliveryResult(
        request.at,
        results,
        in_doubt if request.resend_in_doubt else held,
        len(stranded),
        _waiting(con),
        left,
        stopped,
        0,
        journal.path.name,
    )


def _held(con: Any, ws: Workspace) -> list[str]:
    """The in-doubt messages of the outbox runs in scope (``_dm_outbox``), with the states as they are now."""
    ledger.delivery_states(con, ws)
    rows = con.execute(
        "SELECT d.message_id FROM delivery_states d JOIN _dm_outbox USING (message_id)"
        " WHERE d.state = 'in_doubt' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def _waiting(con: Any) -> int:
    """The deferred messages of the outbox runs in scope (after :func:`_held` refreshed the states)."""
    row = con.execute(
        "SELECT count(*) FROM delivery_states d JOIN _dm_outbox USING (message_id) WHERE d.state = 'deferred'"
    ).fetchone()
    return int(row[0]) if row else 0


def _states(ws: Workspace) -> Any:
    con = connect()
    ledger.delivery_states(con, ws)
    return con


def status(ws: Workspace, campaigns: Sequence[str] = ()) -> list[tuple[str, str, int]]:
    """(campaign, state, messages) for every recorded delivery state."""
    con = _states(ws)
    try:
        rows = con.execute(
            "SELECT campaign_id, state, count(*) FROM delivery_states GROUP BY ALL ORDER BY 1, 2"
        ).fetchall()
    finally:
        con.close()
    return [(c, s, int(n)) for c, s, n in rows if not campaigns or c in campaigns]


def environment_connections(ws: Workspace, environ: Mapping[str, str]) -> ConnectionFactory:
    """Connections to the transports of ``dmops.yaml``, credentials from ``environ``."""
    from dmops.deliver.smtp import SmtpConnection, dkim_signer
    from dmops.deliver.webhook import WebhookConnection

    def open_connection(name: str) -> Connection:
        transport = ws.config.transports[name]
        ca_file = str(ws.root / transport.ca_file) if transport.ca_file else None
        if isinstance(transport, SmtpTransport):
            sign = None
            if transport.dkim is not None:
                sign = dkim_signer(transport.dkim.domain, transport.dkim.selector, environ[transport.dkim.key_env])
            return SmtpConnection(transport, environ, sign, ca_file)
        return WebhookConnection(transport, environ, ca_file)

    return open_connection
