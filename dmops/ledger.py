"""The state store: every message sent and every holdout assignment, and event-fed suppressions.

A DuckDB file ``<state_dir>/ledger.duckdb`` with these tables:

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
``decisions``
    the plan's funnel at each send (contacts per reason, and ``send``), so a
    report can say who was left out and why.
``suppressions``
    suppressions that do not come from the workspace's files: imported
    unsubscribes, complaints and hard bounces, and erasure tombstones.

``plan`` only reads the ledger (attached read-only: it writes nothing).
Every write to it is a function of this module: :func:`record` (tests and
tools), :func:`record_send` and :func:`record_recovered_run` (``send``) and
:func:`add_events` (``events import``). Readers use the views :func:`attach`
creates (``ledger_entries``, ``ledger_events``, ``ledger_suppressions``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from dmops.db import bound, connect, execute_script
from dmops.durable import fsync_dir, publish, refuse_links, staging_path
from dmops.errors import IOFailure, TemporaryFailure
from dmops.interrupts import committed
from dmops.outbox import message_id_sql
from dmops.sql import address_key_sql, query
from dmops.workspace import Workspace

LEDGER_FILE = "ledger.duckdb"
SCHEMA_VERSION = "4"  # 2: entries.address_sha256; 3: message_events; 4: 128-bit event keys
# Fold the events of table {source} into {target}message_events (one row per message; flags only ever turn true).
_FOLD_EVENTS = """
INSERT INTO {target}message_events
SELECT message_id, any_value(campaign_id), bool_or(event = 'bounce'), bool_or(event = 'open'),
       bool_or(event = 'click'), bool_or(event = 'unsubscribe'), bool_or(event = 'complaint')
FROM {source} WHERE message_id IS NOT NULL GROUP BY message_id
ON CONFLICT (message_id) DO UPDATE SET
    bounced = bounced OR excluded.bounced, opened = opened OR excluded.opened, clicked = clicked OR excluded.clicked,
    unsubscribed = unsubscribed OR excluded.unsubscribed, complained = complained OR excluded.complained
"""
ALIAS = "dm_ledger"


def event_key_sql(
    event_id: str, event: str, ts: str, message_id: str, contact_id: str, revenue: str, bounce_type: str, url: str
) -> str:
    """SQL: an event's deduplication key (``events.event_key``) over SQL expressions for its values as
    stored (``ts`` a UTC TIMESTAMP, ``revenue`` a DOUBLE): the 128-bit MD5 of ``id:`` and its event_id when
    it has one, else of the JSON array of its stored values — the contact only when there is no message,
    whose contact it is. Rows that store the same values are one event, however their text was written
    (``10`` and ``10.0``, a time with or without its offset)."""
    row = (
        f"to_json([{event}, strftime({ts}, '%Y-%m-%dT%H:%M:%S.%f'), {message_id},"
        f" CASE WHEN {message_id} IS NULL THEN {contact_id} END,"
        f" CAST({revenue} AS VARCHAR), {bounce_type}, {url}])"
    )
    return f"coalesce(md5_number('id:' || {event_id}), md5_number({row}))"


# Schema 4: the keys of schema 3 (``id:<event_id>``, or ``row:`` and the SHA-256 of the row's text) become
# 128-bit numbers; an id key keeps its meaning exactly, a row key is computed again from the stored values.
_KEYS_AS_NUMBERS = f"""
ALTER TABLE events ALTER event_key SET DATA TYPE UHUGEINT USING
    CASE WHEN starts_with(event_key, 'id:') THEN md5_number(event_key)
         ELSE {event_key_sql("NULL", "event", "ts", "message_id", "contact_id", "revenue", "bounce_type", "url")} END
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
    address: str | None = None  # the normalised address (stored as its SHA-256): messages and holdouts


def address_hash_sql(channel: str, address: str) -> str:
    """SQL: what ``entries.address_sha256`` holds for a message (hex SHA-256 of :func:`address_key_sql`)."""
    return f"sha256({address_key_sql(channel, address)})"


def ledger_path(ws: Workspace) -> Path:
    return ws.state_dir / LEDGER_FILE


def _locked(exc: duckdb.Error) -> bool:
    return "lock" in str(exc).lower()


def open_for_writing(ws: Workspace) -> duckdb.DuckDBPyConnection:
    """The ledger, opened read-write (created with its schema if absent)."""
    path = ledger_path(ws)
    refuse_links(path, ws.root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = connect(str(path))
    except duckdb.Error as exc:
        if _locked(exc):
            raise TemporaryFailure("the ledger is in use by another dmops process", file=path) from None
        raise IOFailure(f"cannot open the ledger ({type(exc).__name__})", file=path) from None
    except OSError as exc:
        raise IOFailure(f"cannot create the state folder: {exc.strerror}", file=path.parent) from None
    con.execute(query("ledger_schema"))
    stored = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    text_keys = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() AND table_name = 'events'"
        " AND column_name = 'event_key' AND data_type = 'VARCHAR'"
    ).fetchall()[0][0]
    con.execute("BEGIN")
    if stored and stored[0][0] in ("1", "2"):  # written before message_events: fold the events once
        fold_events(con)
    if text_keys:  # written before schema 4
        con.execute(_KEYS_AS_NUMBERS)
    con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', $v)", {"v": SCHEMA_VERSION})
    con.execute("COMMIT")
    return con


def fold_events(con: duckdb.DuckDBPyConnection, source: str = "events") -> None:
    """Fold the rows of ``source`` (every event by default; trusted SQL) into ``message_events``, on a
    connection to the ledger file itself (tools that write events directly, such as the benchmarks'
    seeding, and ``dmops gc``)."""
    con.execute(_FOLD_EVENTS.format(target="", source=source))


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
            e.channel,
            e.address,
            e.address,
        )
        for e in entries
    ]
    con = open_for_writing(ws)
    try:
        con.executemany(
            "INSERT INTO entries (campaign_id, occurrence, contact_id, kind, channel, purpose, variant, planned_at,"
            " message_id, run_id, recorded_at, address_sha256)"
            f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, {address_hash_sql('?', '?')})",  # channel, address twice
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
        open_for_writing(ws).close()  # create it with its schema (refusing a link there)
    else:
        refuse_links(path, ws.root)
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
        con.execute(query("ledger_schema"))
        con.execute(f"USE {home}")
    for table in ("entries", "events", "suppressions"):
        con.execute(f"CREATE OR REPLACE TEMP VIEW ledger_{table} AS SELECT * FROM {ALIAS}.{table}")
    has_decisions = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = $db AND table_name = 'decisions'", {"db": ALIAS}
    ).fetchall()[0][0]
    con.execute(  # a ledger of schema version 1 (read without upgrading it) has recorded no funnel
        "CREATE OR REPLACE TEMP VIEW ledger_decisions AS "
        + (
            f"SELECT * FROM {ALIAS}.decisions"
            if has_decisions
            else "SELECT CAST(NULL AS VARCHAR) AS campaign_id, CAST(NULL AS VARCHAR) AS occurrence,"
            " CAST(NULL AS VARCHAR) AS reason, CAST(NULL AS BIGINT) AS contacts,"
            " CAST(NULL AS TIMESTAMP) AS recorded_at WHERE false"
        )
    )
    folded = (
        con.execute(
            f"SELECT count(*) FROM {ALIAS}.meta WHERE key = 'schema_version' AND value NOT IN ('1', '2')"
        ).fetchall()[0][0]
        or not found
    )
    con.execute(  # a ledger written before schema version 3 (read without upgrading it): folded here
        "CREATE OR REPLACE TEMP VIEW ledger_message_events AS "
        + (
            f"SELECT * FROM {ALIAS}.message_events"
            if folded
            else f"""SELECT message_id, any_value(campaign_id) AS campaign_id, bool_or(event = 'bounce') AS bounced,
                       bool_or(event = 'open') AS opened, bool_or(event = 'click') AS clicked,
                       bool_or(event = 'unsubscribe') AS unsubscribed, bool_or(event = 'complaint') AS complained
                FROM {ALIAS}.events WHERE message_id IS NOT NULL GROUP BY message_id"""
        )
    )
    has_address = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE database_name = $db AND table_name = 'entries'"
        " AND column_name = 'address_sha256'",
        {"db": ALIAS},
    ).fetchall()[0][0]
    if not has_address:  # a ledger of schema version 1, read without upgrading it: messages keyed by contact only
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW ledger_entries AS"
            f" SELECT *, CAST(NULL AS VARCHAR) AS address_sha256 FROM {ALIAS}.entries"
        )
    return found


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> int:
    """Execute one write and return the rows it wrote."""
    row = con.execute(sql, bound(sql, params)).fetchone()
    return int(row[0]) if row else 0


def record_send(
    con: duckdb.DuckDBPyConnection,
    *,
    campaign_id: str,
    occurrence: str,
    channel: str,
    purpose: str,
    run: str | None,
    count: int,
    sha256: str | None,
    now: datetime,
) -> int:
    """One transaction, from ``plan_rows`` on ``con`` (ledger attached writable): the first ``count``
    messages by contact id and the run that holds them (when ``run``), and every new holdout assignment.
    Returns the holdouts recorded."""
    params: dict[str, Any] = {
        "c": campaign_id,
        "o": occurrence,
        "channel": channel,
        "purpose": purpose,
        "run": run,
        "n": count,
        "sha": sha256,
        "now": now,
    }
    con.execute("BEGIN")
    if run is not None:
        _run(
            con,
            f"""INSERT INTO {ALIAS}.entries
                SELECT $c, $o, contact_id, 'message', $channel, $purpose, variant, planned_at,
                       {message_id_sql("$c", "$o", "contact_id")}, $run, $now, sha256(address_key)
                FROM plan_rows WHERE variant IS NOT NULL ORDER BY contact_id LIMIT $n""",
            params,
        )
        _run(con, f"INSERT INTO {ALIAS}.runs VALUES ($c, $o, $run, $n, $sha, $now)", params)
    held = _run(
        con,
        f"""INSERT INTO {ALIAS}.entries
            SELECT $c, $o, contact_id, 'holdout', $channel, $purpose, NULL, planned_at, NULL, $run, $now,
                   sha256(address_key)
            FROM plan_rows WHERE reason = 'holdout' AND NOT ledger_held""",
        params,
    )
    if run is not None or held:  # a rerun that adds nothing leaves the funnel of the send that did
        _run(
            con,
            f"""INSERT INTO {ALIAS}.decisions
                SELECT $c, $o, coalesce(reason, 'send'), count(*), $now FROM plan_rows GROUP BY ALL ORDER BY 3""",
            params,
        )
    committed()
    con.execute("COMMIT")
    return held


def recorded_runs(con: duckdb.DuckDBPyConnection, campaign_id: str, occurrence: str) -> set[str]:
    """The outbox runs of one occurrence that the ledger (opened with :func:`open_for_writing`) records."""
    rows = con.execute(
        "SELECT run FROM runs WHERE campaign_id = $c AND occurrence = $o", {"c": campaign_id, "o": occurrence}
    ).fetchall()
    return {row[0] for row in rows}


def record_recovered_run(
    con: duckdb.DuckDBPyConnection,
    *,
    campaign_id: str,
    occurrence: str,
    run: str,
    manifest: dict[str, Any],
    messages: list[dict[str, Any]],
    now: datetime,
) -> int:
    """One transaction: a visible outbox run the ledger lacks (a send killed after the rename), its messages
    for contacts not already recorded, and the run. Returns the messages recorded."""
    con.execute("BEGIN")
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _dm_found AS
           SELECT unnest($ids::VARCHAR[]) AS message_id, unnest($contacts::VARCHAR[]) AS contact_id,
                  unnest($channels::VARCHAR[]) AS channel, unnest($variants::VARCHAR[]) AS variant,
                  CAST(unnest($planned::VARCHAR[]) AS TIMESTAMP) AS planned_at, unnest($to::VARCHAR[]) AS address""",
        {
            "ids": [m["message_id"] for m in messages],
            "contacts": [m["contact_id"] for m in messages],
            "channels": [m["channel"] for m in messages],
            "variants": [m["variant"] for m in messages],
            "planned": [m["send_after"] for m in messages],  # ISO 8601 with Z: DuckDB reads it as UTC
            "to": [m.get("to") for m in messages],  # the normalised address the message was rendered for
        },
    )
    params = {"c": campaign_id, "o": occurrence, "purpose": manifest["purpose"], "run": run, "now": now}
    recovered = _run(
        con,
        f"""INSERT INTO entries
           SELECT $c, $o, f.contact_id, 'message', f.channel, $purpose, f.variant, f.planned_at,
                  f.message_id, $run, $now, {address_hash_sql("f.channel", "f.address")}
           FROM _dm_found f
           WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.campaign_id = $c AND e.occurrence = $o
                             AND e.contact_id = f.contact_id AND e.kind = 'message')""",
        params,
    )
    _run(
        con,
        "INSERT INTO runs VALUES ($c, $o, $run, $n, $sha, $now)",
        {**params, "n": manifest["count"], "sha": manifest["sha256"]},
    )
    con.execute("COMMIT")
    return recovered


def add_events(con: duckdb.DuckDBPyConnection, *, source: str, now: datetime) -> tuple[int, int]:
    """One transaction, from the staged table ``_dm_new`` on ``con`` (ledger attached writable): the events
    the ledger does not hold yet, and the suppressions they imply (SPEC §8). Returns (events, suppressions)."""
    con.execute(f"DELETE FROM _dm_new WHERE event_key IN (SELECT event_key FROM {ALIAS}.events)")
    con.execute("BEGIN")
    imported = _run(
        con,
        f"""INSERT INTO {ALIAS}.events
            SELECT event_key, event, ts, message_id, contact_id, campaign_id, revenue, bounce_type, url,
                   $source, $now FROM _dm_new""",
        {"source": source, "now": now},
    )
    con.execute(_FOLD_EVENTS.format(target=f"{ALIAS}.", source="_dm_new"))
    suppressed = _run(
        con,
        f"""INSERT INTO {ALIAS}.suppressions
            SELECT contact_id, NULL,
                   CASE WHEN event = 'unsubscribe' THEN channel END,
                   CASE event WHEN 'unsubscribe' THEN 'unsubscribe' WHEN 'complaint' THEN 'complaint'
                        ELSE 'bounce' END,
                   ts, 'events:' || $source
            FROM _dm_new
            WHERE event IN ('unsubscribe', 'complaint') OR (event = 'bounce' AND bounce_type = 'hard')""",
        {"source": source},
    )
    committed()
    con.execute("COMMIT")
    return imported, suppressed


def delete_events_before(ws: Workspace, cutoff: datetime) -> int:
    """``dmops gc``: delete the events older than ``cutoff`` (naive UTC) in one transaction, each affected
    message's folded row recomputed from the events left; the number deleted."""
    con = open_for_writing(ws)
    try:
        count = int(con.execute("SELECT count(*) FROM events WHERE ts < $c", {"c": cutoff}).fetchall()[0][0])
        if not count:
            return 0
        con.execute("BEGIN")
        con.execute(
            "CREATE TEMP TABLE _dm_touched AS"
            " SELECT DISTINCT message_id FROM events WHERE ts < $c AND message_id IS NOT NULL",
            {"c": cutoff},
        )
        con.execute("DELETE FROM events WHERE ts < $c", {"c": cutoff})
        con.execute("DELETE FROM message_events WHERE message_id IN (SELECT message_id FROM _dm_touched)")
        fold_events(con, "(SELECT * FROM events WHERE message_id IN (SELECT message_id FROM _dm_touched))")
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return count


# --- Erasure (SPEC §12) ------------------------------------------------------------------------------------


def has_tombstones(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the attached ledger holds tombstones (a ledger written before them has no such table)."""
    has = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = $db AND table_name = 'erasures'",
        {"db": ALIAS},
    ).fetchall()[0][0]
    return bool(has) and bool(con.execute(f"SELECT count(*) FROM {ALIAS}.erasures").fetchall()[0][0])


@dataclass(frozen=True)
class Erasure:
    """Who ``dmops forget`` erases, as the ledger needs it (SPEC §12)."""

    ids: list[str]  # contact ids
    emails: list[str]  # normalised addresses
    phones: list[str]
    handles: list[str]
    tombstones: list[str]  # keyed hashes of the ids and addresses (dmops.secret.subject_key)
    pads: tuple[bytes, bytes]  # the secret's HMAC pads: the pseudonyms are computed in SQL
    runs: dict[tuple[str, str, str], tuple[int, str]]  # (campaign, occurrence, run) -> new count and sha256
    outbox_lines: int
    reason: str | None


def erase(ws: Workspace, who: Erasure, now: datetime) -> tuple[int, int, int, int]:
    """Write the ledger anew without them, and rename it over the old file, so that no page of it still
    holds them: their contact id becomes a pseudonym, their messages' address hashes and their events' URLs
    are dropped, their suppressions become tombstones, and an audit line per person is added, dated ``now``
    (when the erasure began: a rerun that finishes it adds no second line).
    (entries, events, suppressions, tombstones added)."""
    from dmops.secret import keyed_event_key_sql, message_alias_sql, pseudonym_sql

    path = ledger_path(ws)
    open_for_writing(ws).close()  # created, upgraded and checkpointed: no write-ahead log is left
    staging = staging_path(path)
    for leftover in path.parent.glob(f".{path.name}.*.tmp*"):  # an earlier, killed copy (any process's)
        leftover.unlink()
    spill = path.parent / ".erase-spill"  # where DuckDB spills a copy larger than memory: in the state folder
    shutil.rmtree(spill, ignore_errors=True)
    ipad, opad = who.pads
    hashes = sorted(hashlib.sha256(a.encode()).hexdigest() for a in (*who.emails, *who.phones, *who.handles))
    con = connect()
    try:
        con.execute("SET temp_directory = $d", {"d": str(spill)})
        con.execute("ATTACH $p AS old (READ_ONLY)", {"p": str(path)})
        con.execute("ATTACH $p AS new", {"p": str(staging)})
        con.execute("USE new")
        con.execute(query("ledger_schema"))
        con.execute("USE memory")
        con.execute("CREATE TEMP TABLE _dm_who AS SELECT unnest($ids::VARCHAR[]) AS contact_id", {"ids": who.ids})
        con.execute(
            f"""CREATE TEMP TABLE _dm_pseudonyms AS
                SELECT contact_id, {pseudonym_sql("contact_id")} AS alias FROM _dm_who""",
            {"ipad": ipad, "opad": opad},
        )
        con.execute(  # their messages' ids become keyed aliases: the plain id is a hash of their contact id
            f"""CREATE TEMP TABLE _dm_their_messages AS
                SELECT DISTINCT message_id, {message_alias_sql("message_id")} AS message_alias
                FROM old.entries WHERE message_id IS NOT NULL AND contact_id IN (SELECT contact_id FROM _dm_who)""",
            {"ipad": ipad, "opad": opad},
        )
        params = {"h": hashes}
        entries = con.execute(
            "SELECT count(*) FROM old.entries WHERE contact_id IN (SELECT contact_id FROM _dm_who)"
            " OR list_contains($h, address_sha256)",
            params,
        ).fetchall()[0][0]
        events = con.execute(
            "SELECT count(*) FROM old.events WHERE contact_id IN (SELECT contact_id FROM _dm_who)"
        ).fetchall()[0][0]
        emails, phones, handles = who.emails, who.phones, who.handles
        gone = """contact_id IN (SELECT contact_id FROM _dm_who)
                  OR list_contains($emails, lower(trim(address))) OR list_contains($phones, trim(address))
                  OR list_contains($handles, trim(address))"""
        suppressions = con.execute(
            f"SELECT count(*) FROM old.suppressions WHERE {gone}",
            {"emails": emails, "phones": phones, "handles": handles},
        ).fetchall()[0][0]
        old_tables = {
            r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'old'").fetchall()
        }
        con.execute("BEGIN")
        con.execute("INSERT INTO new.meta SELECT * FROM old.meta")
        con.execute(
            """INSERT INTO new.entries
               SELECT e.campaign_id, e.occurrence, coalesce(p.alias, e.contact_id), e.kind, e.channel, e.purpose,
                      e.variant, e.planned_at, coalesce(m.message_alias, e.message_id), e.run_id, e.recorded_at,
                      CASE WHEN p.alias IS NULL AND NOT list_contains($h, e.address_sha256) THEN e.address_sha256 END
               FROM old.entries e LEFT JOIN _dm_pseudonyms p USING (contact_id)
               LEFT JOIN _dm_their_messages m USING (message_id)""",
            params,
        )
        con.execute(
            "CREATE TEMP TABLE _dm_runs (campaign_id VARCHAR, occurrence VARCHAR, run VARCHAR, count BIGINT,"
            " sha256 VARCHAR)"
        )
        if who.runs:
            con.executemany(
                "INSERT INTO _dm_runs VALUES (?, ?, ?, ?, ?)", [(*k, c, s) for k, (c, s) in who.runs.items()]
            )
        con.execute(
            """INSERT INTO new.runs
               SELECT r.campaign_id, r.occurrence, r.run, coalesce(n.count, r.count), coalesce(n.sha256, r.sha256),
                      r.recorded_at
               FROM old.runs r LEFT JOIN _dm_runs n USING (campaign_id, occurrence, run)"""
        )
        con.execute("INSERT INTO new.decisions SELECT * FROM old.decisions")
        con.execute(  # their events: keyed keys and message ids, the pseudonym, no URL
            f"""INSERT INTO new.events
                SELECT CASE WHEN p.alias IS NULL AND m.message_alias IS NULL THEN ev.event_key
                            ELSE {keyed_event_key_sql("ev.event_key")} END,
                       ev.event, ev.ts, coalesce(m.message_alias, ev.message_id), coalesce(p.alias, ev.contact_id),
                       ev.campaign_id, ev.revenue, ev.bounce_type,
                       CASE WHEN p.alias IS NULL AND m.message_alias IS NULL THEN ev.url END, ev.source, ev.imported_at
                FROM old.events ev LEFT JOIN _dm_pseudonyms p USING (contact_id)
                LEFT JOIN _dm_their_messages m USING (message_id)""",
            {"ipad": ipad, "opad": opad},
        )
        con.execute(
            """INSERT INTO new.message_events
               SELECT coalesce(m.message_alias, me.message_id), me.* EXCLUDE (message_id)
               FROM old.message_events me LEFT JOIN _dm_their_messages m USING (message_id)"""
        )
        con.execute(
            f"INSERT INTO new.suppressions SELECT * FROM old.suppressions WHERE NOT ({gone})",
            {"emails": emails, "phones": phones, "handles": handles},
        )
        for table in ("erasures", "erasure_log"):
            if table in old_tables:
                con.execute(f"INSERT INTO new.{table} SELECT * FROM old.{table}")
        added = con.execute(
            """INSERT INTO new.erasures
               SELECT DISTINCT subject, $now FROM unnest($keys::VARCHAR[]) t(subject)
               WHERE subject NOT IN (SELECT subject FROM new.erasures)""",
            {"keys": who.tombstones, "now": now},
        ).fetchall()[0][0]
        con.execute(  # one line per person and erasure: a rerun that finishes it adds none
            """INSERT INTO new.erasure_log
               SELECT $now, alias, $entries, $events, $outbox, $reason FROM _dm_pseudonyms
               WHERE alias NOT IN (SELECT pseudonym FROM new.erasure_log WHERE erased_at = $now) ORDER BY alias""",
            {"now": now, "entries": entries, "events": events, "outbox": who.outbox_lines, "reason": who.reason},
        )
        con.execute("COMMIT")
        con.execute("CHECKPOINT new")
        con.execute("DETACH new")
        con.execute("DETACH old")
    except duckdb.Error as exc:
        con.close()
        staging.unlink(missing_ok=True)
        raise IOFailure(f"cannot rewrite the ledger ({type(exc).__name__})", file=path) from None
    finally:
        con.close()
    try:
        os.chmod(staging, 0o600)
        publish(staging, path, result=False)
    except OSError as exc:
        raise IOFailure(f"cannot replace the ledger: {exc.strerror}", file=path) from None
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return int(entries), int(events), int(suppressions), int(added)


# --- Delivery states (SPEC §11) ---------------------------------------------------------------------------
#
# Each ``dmops deliver`` run appends the state changes of the messages it handles to a journal of its own,
# ``<state_dir>/deliveries/run-NNNNNN.jsonl``: one JSON object per line, written with a single ``write`` (a
# killed process leaves whole lines), and ``in_flight`` forced to disk before the message is handed over.
# A message's state is its latest line, ordered by journal and ``seq``; a message no journal names is
# ``queued``. Journals are never rewritten, so a reader (DuckDB) reads them while a run appends.

DELIVERY_DIR = "deliveries"
DELIVERY_STATES = ("queued", "in_flight", "accepted", "deferred", "bounced", "failed", "in_doubt", "suppressed")
FINAL_STATES = ("accepted", "bounced", "failed", "suppressed")
_JOURNAL = "run-{:06d}.jsonl"


def delivery_dir(ws: Workspace) -> Path:
    return ws.state_dir / DELIVERY_DIR


def delivery_journals(ws: Workspace) -> list[Path]:
    """The delivery journals in the order they were written."""
    folder = delivery_dir(ws)
    refuse_links(folder, ws.root)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("run-*.jsonl") if p.is_file() and p.stem[4:].isdigit()]
    return sorted(found, key=lambda p: int(p.stem[4:]))  # run-1000000 comes after run-999999


def delivery_states(con: duckdb.DuckDBPyConnection, ws: Workspace) -> None:
    """Create the temp table ``delivery_states`` on ``con``: each message's latest delivery state
    (``message_id``, ``campaign_id``, ``channel``, ``transport``, ``state``, ``at``, ``attempt``, ``code``,
    ``detail``, ``retry_at``, ``provider_id``, ``attempts``), and ``delivery_lines``, every journal line."""
    files = [str(p) for p in delivery_journals(ws)] or [os.devnull]  # no journal yet: no lines, same columns
    execute_script(con, query("delivery_states"), {"files": files})


class DeliveryJournal:
    """The journal of one delivery run; ``append`` is thread-safe. Open it under the delivery run lock."""

    def __init__(self, ws: Workspace) -> None:
        import threading

        folder = delivery_dir(ws)
        refuse_links(folder, ws.root)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            existing = delivery_journals(ws)
            _repair_tail(existing[-1]) if existing else None
            number = int(existing[-1].stem.split("-")[1]) + 1 if existing else 1
            self.path = folder / _JOURNAL.format(number)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise IOFailure(f"cannot start a delivery journal: {exc.strerror}", file=folder) from None
        fsync_dir(folder)
        self._seq = 0  # lines written
        self._synced = 0  # lines known to be on disk
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()

    def append(self, record: dict[str, Any], *, sync: bool = False) -> int:
        """Write one state change and return its number; ``sync`` returns only once it is on disk."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            line = json.dumps({"seq": seq, **record}, ensure_ascii=False, default=_iso) + "\n"
            data = line.encode()
            try:
                while data:  # a short write (a full disk) must not leave part of a line
                    data = data[os.write(self._fd, data) :]
            except OSError as exc:
                raise IOFailure(f"cannot write the delivery journal: {exc.strerror}", file=self.path) from None
        if sync:
            self.sync(seq)
        return seq

    def sync(self, seq: int) -> None:
        """Return once line ``seq`` (and every line before it) is on disk. Threads waiting at once share one
        ``fdatasync`` (group commit)."""
        with self._sync_lock:
            if self._synced >= seq:
                return
            with self._lock:
                target = self._seq
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                raise IOFailure(f"cannot write the delivery journal: {exc.strerror}", file=self.path) from None
            self._synced = target

    def close(self) -> None:
        """Close the journal; one that recorded nothing is removed (a run every minute from cron with
        nothing due leaves no file)."""
        with self._lock:
            if self._fd >= 0:
                os.fdatasync(self._fd)
                os.close(self._fd)
                self._fd = -1
                if self._seq == 0:
                    self.path.unlink(missing_ok=True)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _repair_tail(path: Path) -> None:
    """Cut a journal's last line when it has no newline (only a power loss leaves one: a write is whole)."""
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        data = path.read_bytes()
        handle.truncate(data.rfind(b"\n") + 1)
        os.fsync(handle.fileno())
