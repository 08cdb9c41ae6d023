"""``dmops events import``: validate and store delivery, engagement and conversion events (SPEC §8).

Import is atomic (one bad row: nothing is imported, and every bad row is
listed by line) and idempotent: a row whose ``event_id`` — or, without one,
whose values as stored — is already stored adds nothing, so the same file twice,
or overlapping exports, import once. Naive timestamps are in the workspace
timezone; everything is stored in UTC. Unsubscribes suppress the message's
channel (every channel when only a contact id is given); complaints and hard
bounces suppress every channel, from the next plan on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from dmops import ledger
from dmops.db import connect, quote_ident, quote_list
from dmops.dialect import local_to_utc_sql, overlap_join_sql, overlaps_table
from dmops.errors import DataError, DmopsError, MissingInputError
from dmops.runlock import RunLock
from dmops.tabular import MAX_LISTED, raise_all, read_table
from dmops.timeutil import naive_utc
from dmops.workspace import Workspace

EVENTS = ("delivered", "bounce", "open", "click", "unsubscribe", "complaint", "conversion")
MESSAGE_EVENTS = ("delivered", "bounce", "open", "click", "complaint")
COLUMNS = ("event", "ts", "message_id", "contact_id", "revenue", "bounce_type", "url", "event_id")


@dataclass(frozen=True)
class ImportResult:
    file: Path
    rows: int
    imported: int
    duplicates: int
    suppressions: int
    impossible: dict[str, int] = field(default_factory=dict)  # "open on sms" -> events no channel can produce


def _read_jsonl(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    if not path.is_file():
        raise MissingInputError("events file not found", file=path)
    try:
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _dm_ev_raw AS
               SELECT *, CAST(row_number() OVER () AS BIGINT) AS _dm_line
               FROM read_json($p, format = 'newline_delimited', records = true, sample_size = -1)""",
            {"p": str(path)},
        )
    except duckdb.Error as exc:
        raise DataError(
            f"cannot read the JSON lines ({type(exc).__name__})", file=path, hint="one JSON object per line, UTF-8"
        ) from None
    return [r[0] for r in con.execute("SELECT column_name FROM (DESCRIBE _dm_ev_raw)").fetchall() if r[0] != "_dm_line"]


def _stage(con: duckdb.DuckDBPyConnection, ws: Workspace, path: Path) -> None:
    """``_dm_ev``: one row per file row, with its line, its columns normalised to text, its instant ``ts``
    (UTC), the ledger message it names (``known``, ``message_contact``, ``campaign_id``, ``channel``) and its
    ``event_key``."""
    suffix = path.suffix.lower()
    names = (
        _read_jsonl(con, path)
        if suffix in (".jsonl", ".ndjson", ".json")
        else read_table(con, path, "_dm_ev_raw", "events")
    )
    present = {n.lower(): n for n in names}
    problems: list[DmopsError] = []
    for required in ("event", "ts"):
        if required not in present:
            problems.append(
                DataError(
                    f"no {required} column", file=path, line=1, hint="columns: event, ts, message_id or contact_id"
                )
            )
    if "message_id" not in present and "contact_id" not in present:
        problems.append(DataError("neither a message_id nor a contact_id column", file=path, line=1))
    raise_all(problems)

    def col(name: str) -> str:
        if name not in present:
            return "CAST(NULL AS VARCHAR)"
        return f"nullif(trim(CAST({quote_ident(present[name])} AS VARCHAR)), '')"

    # One pass: each row normalised to text, its instant (an explicit offset is that instant; a naive time
    # is read in the workspace timezone, by SPEC §6's rule for gaps and overlaps), the ledger message it
    # names, and its deduplication key (the event_id when given, else the values the row stores).
    overlaps_table(con, ws.config.timezone)
    key = ledger.event_key_sql(
        "event_id",
        "event",
        "ts",
        "message_id",
        "coalesce(contact_id, message_contact)",
        "coalesce(TRY_CAST(revenue_text AS DOUBLE), 0)",
        "CASE WHEN event = 'bounce' THEN coalesce(bounce_type, 'hard') END",
        "url",
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _dm_ev AS
            SELECT *, {key} AS event_key
            FROM (
                SELECT e.*,
                       CASE WHEN regexp_matches(e.ts_text, '(Z|z|[+-][0-9]{{2}}(:?[0-9]{{2}})?)$')
                                THEN TRY_CAST(e.ts_text AS TIMESTAMPTZ) AT TIME ZONE 'UTC'
                            ELSE {local_to_utc_sql("TRY_CAST(e.ts_text AS TIMESTAMP)", "$tz")} END AS ts,
                       m.message_id IS NOT NULL AS known, m.contact_id AS message_contact, m.campaign_id, m.channel
                FROM (
                    SELECT _dm_line AS line, lower({col("event")}) AS event, {col("ts")} AS ts_text,
                           {col("message_id")} AS message_id, {col("contact_id")} AS contact_id,
                           {col("revenue")} AS revenue_text, lower({col("bounce_type")}) AS bounce_type,
                           {col("url")} AS url, {col("event_id")} AS event_id
                    FROM _dm_ev_raw
                ) e
                LEFT JOIN ledger_entries m ON m.kind = 'message' AND m.message_id = e.message_id
                {overlap_join_sql("TRY_CAST(e.ts_text AS TIMESTAMP)")}
            )""",
        {"tz": ws.config.timezone},
    )
    con.execute("DROP TABLE _dm_ev_raw")
    _pseudonymise_erased(con, ws)


def _pseudonymise_erased(con: duckdb.DuckDBPyConnection, ws: Workspace) -> None:
    """Rows about a person ``dmops forget`` erased (SPEC §12) — by their contact id, or by the id of one of
    their messages, which the erasure keyed — are kept as the erasure keeps theirs: under the pseudonym and
    the keyed message id, with a keyed key and no URL. A provider's later export brings neither back, and a
    row imported before the erasure still counts as already there (its key, computed from the same values,
    is keyed the same way)."""
    from dmops.secret import (
        PSEUDONYM,
        keyed_event_key_sql,
        message_alias_sql,
        pseudonym_sql,
        subject_key_sql,
        tombstone_secret,
    )
    from dmops.sqlrender import hmac_pads

    if not ledger.has_tombstones(con):
        return
    ipad, opad = hmac_pads(tombstone_secret(ws))
    pads = {"ipad": ipad, "opad": opad}
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _dm_erased AS
            SELECT i.contact_id, {pseudonym_sql("i.contact_id")} AS alias
            FROM (SELECT contact_id, {subject_key_sql("contact_id", "contact_id")} AS subject
                  FROM (SELECT DISTINCT contact_id FROM _dm_ev WHERE contact_id IS NOT NULL)) i
            JOIN {ledger.ALIAS}.erasures e USING (subject)""",
        pads,
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _dm_erased_messages AS
            SELECT u.message_id, m.message_id AS alias, m.contact_id, m.campaign_id, m.channel
            FROM (SELECT message_id, {message_alias_sql("message_id")} AS alias
                  FROM (SELECT DISTINCT message_id FROM _dm_ev WHERE message_id IS NOT NULL AND NOT known)) u
            JOIN ledger_entries m ON m.kind = 'message' AND m.message_id = u.alias""",
        pads,
    )
    con.execute(
        f"""UPDATE _dm_ev SET contact_id = x.alias FROM _dm_erased x WHERE _dm_ev.contact_id = x.contact_id;
            UPDATE _dm_ev SET message_id = x.alias, known = true, message_contact = x.contact_id,
                              campaign_id = x.campaign_id, channel = x.channel
            FROM _dm_erased_messages x WHERE _dm_ev.message_id = x.message_id AND NOT _dm_ev.known;
            UPDATE _dm_ev SET event_key = {keyed_event_key_sql("event_key")}, url = NULL
            WHERE starts_with(coalesce(contact_id, message_contact), $prefix)""",
        {**pads, "prefix": PSEUDONYM},
    )


def _problems(con: duckdb.DuckDBPyConnection, path: Path) -> list[DmopsError]:
    checks = [
        ("e.event IS NULL OR e.event NOT IN " + str(EVENTS), "unknown event (use " + ", ".join(EVENTS) + ")", "event"),
        ("e.ts IS NULL", "ts is not an ISO 8601 date and time", "ts"),
        (
            f"e.event IN {quote_list(MESSAGE_EVENTS)} AND e.message_id IS NULL",
            "this event needs a message_id",
            "message_id",
        ),
        (
            "e.message_id IS NULL AND e.contact_id IS NULL",
            "the row has neither message_id nor contact_id",
            "contact_id",
        ),
        (
            "e.message_id IS NOT NULL AND NOT e.known",
            "message_id is not in the ledger (was it sent by dmops?)",
            "message_id",
        ),
        (
            "e.known AND e.contact_id IS NOT NULL AND e.contact_id <> e.message_contact",
            "contact_id does not match the message's contact",
            "contact_id",
        ),
        (
            "e.revenue_text IS NOT NULL AND TRY_CAST(e.revenue_text AS DOUBLE) IS NULL",
            "revenue is not a number",
            "revenue",
        ),
        ("TRY_CAST(e.revenue_text AS DOUBLE) < 0", "revenue is negative", "revenue"),
        (
            "e.bounce_type IS NOT NULL AND e.bounce_type NOT IN ('hard', 'soft')",
            "bounce_type must be hard or soft",
            "bounce_type",
        ),
    ]
    found: list[tuple[int, str, str]] = []
    for condition, message, key in checks:
        rows = con.execute(
            f"SELECT e.line FROM _dm_ev e WHERE {condition} ORDER BY e.line LIMIT {MAX_LISTED}"
        ).fetchall()
        found += [(int(r[0]), message, key) for r in rows]
    found.sort()
    return [DataError(message, file=path, line=line, key=key) for line, message, key in found[: MAX_LISTED * 2]]


def _impossible(con: duckdb.DuckDBPyConnection, ws: Workspace) -> dict[str, int]:
    """New events no message of their channel can produce: an open of an SMS (no open tracking), a click on an
    SMS whose campaign's texts hold no link. Imported all the same; the import warns with the counts."""
    found: dict[str, int] = {}
    opens = con.execute("SELECT count(*) FROM _dm_new WHERE event = 'open' AND channel = 'sms'").fetchall()[0][0]
    if opens:
        found["open events for SMS messages, which have no open tracking"] = int(opens)
    clicked = con.execute(
        "SELECT campaign_id, count(*) FROM _dm_new WHERE event = 'click' AND channel = 'sms' GROUP BY ALL"
    ).fetchall()
    linkless = sum(int(n) for campaign_id, n in clicked if not _has_link(ws, campaign_id))
    if linkless:
        found["click events for SMS messages whose text holds no link"] = linkless
    return found


def _has_link(ws: Workspace, campaign_id: str) -> bool:
    """Whether the campaign's templates hold a link (True when its file cannot be read: nothing to say then)."""
    from dmops.campaign import find_campaign_file, load_campaign

    try:
        campaign = load_campaign(find_campaign_file(ws, campaign_id), ws)
    except DmopsError:
        return True
    return any("http" in t.source or "url" in t.source for t in campaign.templates.values())


def import_events(ws: Workspace, path: Path, *, now: datetime | None = None, source: str | None = None) -> ImportResult:
    """Validate ``path`` and add its new events to the ledger, with the suppressions they imply; ``source``
    names where they came from (default: the file's name)."""
    moment = naive_utc(now or datetime.now(UTC))
    with RunLock(ws.state_dir):
        con = connect()
        try:
            ledger.attach(con, ws, writable=True)
            _stage(con, ws, path)
            raise_all(_problems(con, path))
            total = int(con.execute("SELECT count(*) FROM _dm_ev").fetchall()[0][0])
            # The first row of each key; a later row with the same key is a duplicate.
            con.execute(
                """CREATE OR REPLACE TEMP TABLE _dm_new AS
                   SELECT event_key, event, ts, message_id, coalesce(contact_id, message_contact) AS contact_id,
                          campaign_id, channel, coalesce(TRY_CAST(revenue_text AS DOUBLE), 0) AS revenue,
                          CASE WHEN event = 'bounce' THEN coalesce(bounce_type, 'hard') END AS bounce_type, url, line
                   FROM _dm_ev WHERE line IN (SELECT min(line) FROM _dm_ev GROUP BY event_key)"""
            )
            imported, suppressed = ledger.add_events(
                con, source=source or path.name, now=moment
            )  # _dm_new: the new ones
            impossible = _impossible(con, ws)
        finally:
            con.close()
    return ImportResult(path, total, imported, total - imported, suppressed, impossible)


@dataclass(frozen=True)
class Found:
    """An event read from elsewhere (a provider's export, a mailbox), tied to the dmops message it is about."""

    message_id: str
    event: str
    ts: datetime  # aware
    event_id: str
    bounce_type: str | None = None
    url: str | None = None


def import_found(ws: Workspace, found: list[Found], *, now: datetime, source: str) -> ImportResult | None:
    """Import events read from elsewhere through the same validation and deduplication as a file; None when
    there are none."""
    import json
    import tempfile

    if not found:
        return None
    rows = [
        {
            "event": f.event,
            "ts": f.ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "message_id": f.message_id,
            "bounce_type": f.bounce_type,
            "url": f.url,
            "event_id": f.event_id,
        }
        for f in found
    ]
    with tempfile.TemporaryDirectory(prefix="dmops-events-") as folder:
        staged = Path(folder) / "events.jsonl"
        staged.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        return import_events(ws, staged, now=now, source=source)
