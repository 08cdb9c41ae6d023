"""The state store: every message sent and every holdout assignment, and event-fed suppressions.

A DuckDB file ``<state_dir>/ledger.duckdb`` with two tables:

``entries``
    one row per contact per campaign occurrence that was decided for:
    ``kind`` is ``message`` (a message was written to the outbox) or
    ``holdout`` (the contact is in the control group). ``planned_at`` is the
    planned send time ``t`` in UTC (a naive TIMESTAMP, always UTC).
``runs``
    every outbox run whose messages are recorded in ``entries``; a run is
    recorded in the same transaction as its messages.
``events``
    imported delivery, engagement and conversion events (``dmops events import``).
``suppressions``
    suppressions that do not come from the workspace's files: imported
    unsubscribes, complaints and hard bounces, and erasure tombstones.

``plan`` only reads the ledger (attached read-only: it writes nothing);
``send`` writes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from dmops.errors import IOFailure, TemporaryFailure
from dmops.workspace import Workspace

LEDGER_FILE = "ledger.duckdb"
SCHEMA_VERSION = "1"
ALIAS = "dm_ledger"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    campaign_id VARCHAR NOT NULL,
    occurrence  VARCHAR NOT NULL,
    contact_id  VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,      -- 'message' | 'holdout'
    channel     VARCHAR NOT NULL,      -- 'email' | 'sms' | 'dm'
    purpose     VARCHAR NOT NULL,      -- 'marketing' | 'transactional'
    variant     VARCHAR,               -- NULL for holdout
    planned_at  TIMESTAMP NOT NULL,    -- planned send time t, UTC
    message_id  VARCHAR,               -- messages only
    run_id      VARCHAR,
    recorded_at TIMESTAMP              -- UTC
);
CREATE TABLE IF NOT EXISTS runs (
    campaign_id VARCHAR NOT NULL,
    occurrence  VARCHAR NOT NULL,
    run         VARCHAR NOT NULL,      -- outbox folder name, e.g. run-0001
    count       BIGINT NOT NULL,
    sha256      VARCHAR NOT NULL,
    recorded_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS events (
    event_key   VARCHAR NOT NULL,      -- event_id when given, else a hash of the whole row: deduplication
    event       VARCHAR NOT NULL,      -- delivered | bounce | open | click | unsubscribe | complaint | conversion
    ts          TIMESTAMP NOT NULL,    -- UTC
    message_id  VARCHAR,
    contact_id  VARCHAR,
    campaign_id VARCHAR,               -- from the message, when there is one
    revenue     DOUBLE NOT NULL,
    bounce_type VARCHAR,               -- hard | soft, bounces only
    url         VARCHAR,
    source      VARCHAR NOT NULL,      -- the imported file's name
    imported_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS suppressions (
    contact_id VARCHAR,
    address    VARCHAR,
    channel    VARCHAR,                -- NULL: every channel
    reason     VARCHAR NOT NULL,       -- unsubscribe | bounce | complaint | manual | erasure
    ts         TIMESTAMP,              -- UTC
    source     VARCHAR NOT NULL        -- e.g. events:<file>, erasure
);
"""


@dataclass(frozen=True)
class Entry:
    """One ledger row (for recording and for tests that seed a ledger)."""

    campaign_id: str
    occurrence: str
    contact_id: str
    kind: str
    channel: str
    purpose: str
    variant: str | None
    planned_at: datetime  # naive UTC
    message_id: str | None = None
    run_id: str | None = None


def ledger_path(ws: Workspace) -> Path:
    return ws.state_dir / LEDGER_FILE


def _locked(exc: duckdb.Error) -> bool:
    return "lock" in str(exc).lower()


def open_for_writing(ws: Workspace) -> duckdb.DuckDBPyConnection:
    """The ledger, opened read-write (created with its schema if absent)."""
    path = ledger_path(ws)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path))
    except duckdb.Error as exc:
        if _locked(exc):
            raise TemporaryFailure("the ledger is in use by another dmops process", file=path) from None
        raise IOFailure(f"cannot open the ledger ({type(exc).__name__})", file=path) from None
    except OSError as exc:
        raise IOFailure(f"cannot create the state folder: {exc.strerror}", file=path.parent) from None
    con.execute(SCHEMA)
    con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', $v)", {"v": SCHEMA_VERSION})
    return con


def record(ws: Workspace, entries: Iterable[Entry]) -> int:
    """Append entries to the ledger; the number written."""
    rows = [
        (
            e.campaign_id,
            e.occurrence,
            e.contact_id,
            e.kind,
            e.channel,
            e.purpose,
            e.variant,
            e.planned_at,
            e.message_id,
            e.run_id,
        )
        for e in entries
    ]
    con = open_for_writing(ws)
    try:
        con.executemany(
            "INSERT INTO entries (campaign_id, occurrence, contact_id, kind, channel, purpose, variant, planned_at,"
            " message_id, run_id, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            rows,
        )
    finally:
        con.close()
    return len(rows)


def attach(con: duckdb.DuckDBPyConnection, ws: Workspace, *, writable: bool = False) -> bool:
    """Attach the ledger to ``con`` as ``dm_ledger``, with views ``ledger_entries`` and ``ledger_suppressions``.

    Read-only unless ``writable`` (``send`` and ``events import``, under the run lock, which then write
    through ``dm_ledger.*``). With no ledger file yet, an empty in-memory ledger stands in and nothing is
    created on disk. Returns whether a ledger file was found.
    """
    path = ledger_path(ws)
    if writable:
        open_for_writing(ws).close()  # create it with its schema
    found = path.is_file()
    if found:
        try:
            mode = "" if writable else " (READ_ONLY)"
            con.execute(f"ATTACH $path AS {ALIAS}{mode}", {"path": str(path)})
        except duckdb.Error as exc:
            if _locked(exc):
                raise TemporaryFailure(
                    "the ledger is in use by a running send", file=path, hint="retry when it has finished"
                ) from None
            raise IOFailure(f"cannot read the ledger ({type(exc).__name__})", file=path) from None
    else:
        home = con.execute("SELECT current_database()").fetchall()[0][0]
        con.execute(f"ATTACH ':memory:' AS {ALIAS}")
        con.execute(f"USE {ALIAS}")
        con.execute(SCHEMA)
        con.execute(f"USE {home}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW ledger_entries AS SELECT * FROM {ALIAS}.entries")
    con.execute(f"CREATE OR REPLACE TEMP VIEW ledger_suppressions AS SELECT * FROM {ALIAS}.suppressions")
    return found
