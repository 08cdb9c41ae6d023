"""The eligibility funnel (SPEC §6): every audience contact gets exactly one decision.

All set work runs in DuckDB over the tables that ``contacts``,
``suppressions`` and ``ledger`` provide. :func:`prepare` loads the workspace's
files and then locks the connection down (no file access but the requested
outputs) before any campaign expression runs; :func:`build` computes the
temp table ``plan_rows`` (one row per audience contact, every check's inputs
and the decision) and returns its summary.

Variant assignment is the hash split of SPEC §4:
``u = int(first 15 hex digits of md5(campaign_id || ':' || contact_id), 16) / 16^15``;
holdout if ``u < holdout``, else variants take consecutive slices of
``[holdout, 1)`` in declared order, proportional to weight. It is computed on
the integer ``h = u * 16^15`` against exact integer thresholds, so no
floating-point rounding can move a contact between slices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from dmops import expressions, ledger, traits
from dmops.campaign import Campaign, Cell, key_path
from dmops.contacts import CHANNEL_ADDRESS, load_contacts, read_in_place
from dmops.db import bound, connect, lock_down, quote_ident, quote_literal
from dmops.dialect import SPARK_SAME_FUNCTIONS, hash15_sql
from dmops.durable import free_staging_path, hand_over, publish, staging_path
from dmops.errors import ConfigError, DataError, DmopsError, OutputError, UsageError
from dmops.schedule import ZoneTime, occurrence_key, zone_time
from dmops.sql import REASONS, address_key_sql, query
from dmops.suppressions import load_suppressions
from dmops.tabular import FORMULA_STARTS
from dmops.timeutil import naive_utc, zone
from dmops.workspace import Cap, Workspace

if TYPE_CHECKING:
    from dmops.spark import SparkRunner

HASH_SPACE = 16**15


@dataclass(frozen=True)
class AppliedCap:
    """A cap that applies to this campaign, and where it comes from."""

    cap: Cap
    source: str  # "dmops.yaml caps[0]" or "<campaign file> caps[1]"

    @property
    def seconds(self) -> int:
        return int(self.cap.window.total_seconds())

    def describe(self) -> str:
        scope = f"{self.cap.channel} messages" if self.cap.channel else "messages on any channel"
        return f"max {self.cap.max} marketing {scope} within {self.cap.per} ({self.source})"


@dataclass
class PlanSummary:
    """What ``plan`` prints: counts per reason and variant, the send-time range."""

    campaign: str
    occurrence: str
    at: datetime
    audience: int
    to_send: int
    excluded: dict[str, int]
    variants: dict[str, int]
    first_send: datetime | None = None
    last_send: datetime | None = None
    caps: list[AppliedCap] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The JSON of SPEC §6, keys in its order."""
        return {
            "campaign": self.campaign,
            "occurrence": self.occurrence,
            "at": iso_z(self.at),
            "audience": self.audience,
            "to_send": self.to_send,
            "excluded": self.excluded,
            "variants": self.variants,
        }


@lru_cache(maxsize=4096)  # planned times repeat: one per recipient zone
def iso_z(moment: datetime) -> str:
    """An instant as UTC ISO 8601 with ``Z``, whole seconds."""
    return naive_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def hash_thresholds(holdout: float, weights: Sequence[float]) -> tuple[int, list[int]]:
    """Integer thresholds on ``h``: holdout is ``h < T0``; variant k is ``T[k-1] <= h < T[k]``."""
    hold = Fraction(holdout)
    total = sum(Fraction(w) for w in weights)
    bounds: list[int] = []
    running = Fraction(0)
    for weight in weights:
        running += Fraction(weight)
        bounds.append(math.ceil((hold + (1 - hold) * running / total) * HASH_SPACE))
    bounds[-1] = HASH_SPACE
    return math.ceil(hold * HASH_SPACE), bounds


def applied_caps(ws: Workspace, campaign: Campaign) -> list[AppliedCap]:
    """Workspace and campaign caps that bind this campaign (a channel cap binds that channel only)."""
    found: list[AppliedCap] = []
    for label, caps in (("dmops.yaml", ws.config.caps), (campaign.path.name, campaign.config.caps)):
        for index, cap in enumerate(caps):
            if cap.channel is None or cap.channel == campaign.config.channel:
                found.append(AppliedCap(cap, f"{label} caps[{index}]"))
    return found


def prepare(
    ws: Workspace,
    campaign: Campaign,
    *,
    allowed_paths: Sequence[str] = (),
    allowed_directories: Sequence[str] = (),
    writable_ledger: bool = False,
    also: Sequence[Campaign] = (),
) -> duckdb.DuckDBPyConnection:
    """A connection with contacts, suppressions and the ledger loaded, then locked down.

    The contacts keep the columns ``campaign`` (and the campaigns in ``also``) can read.
    """
    con = connect()
    try:
        texts = [text for c in (campaign, *also) for text in c.texts()]
        contacts = load_contacts(con, ws, texts, keep_snapshot=writable_ledger)  # a send keeps it; plan does not
        ledger.attach(con, ws, writable=writable_ledger)
        load_suppressions(con, ws)
        read = [str(contacts.snapshot_file)] if contacts.snapshot_file else []  # `contacts` reads it in place
        lock_down(con, allowed_paths=[*allowed_paths, *read], allowed_directories=allowed_directories)
    except BaseException:
        con.close()
        raise
    return con


def _check_expressions(con: duckdb.DuckDBPyConnection, campaign: Campaign, *, on_spark: bool = False) -> None:
    columns = [row[0] for row in con.execute(f"SELECT column_name FROM (DESCRIBE {expressions.SOURCE})").fetchall()]
    for key, expression in campaign.where_clauses():
        try:
            expressions.check_expression(con, expression, columns)
            other = sorted(expressions.functions_called(con, expression) - SPARK_SAME_FUNCTIONS) if on_spark else []
            if other:
                raise ConfigError(
                    f"'{other[0]}' may not give the same answer on Spark as on DuckDB",
                    hint="rewrite the expression without it, or plan with engine: duckdb (see the README's Engines)",
                )
        except ConfigError as exc:
            raise campaign.locate(exc, key) from None


def _base_sql(ws: Workspace, campaign: Campaign) -> tuple[str, dict[str, Any]]:
    """The statement that creates ``_dm_base`` (one row per audience contact with what every later check
    needs, in one pass) and its inputs."""
    config = campaign.config
    channel = config.channel
    where = config.audience.where or "true"
    cells = [f"coalesce(({v.where}), false) AS _dm_cell_{i}" for i, v in enumerate(config.variants) if v.where]
    if isinstance(config.holdout, Cell):
        cells.append(f"coalesce(({config.holdout.where}), false) AS _dm_holdout_cell")
    inner = ", ".join(["*", *cells])
    cell_names = "".join(f"c._dm_cell_{i}, " for i, v in enumerate(config.variants) if v.where)
    if isinstance(config.holdout, Cell):
        cell_names += "c._dm_holdout_cell, "
    # The expressions run in the inner query, where only contact columns and run_at/run_date are in scope.
    address, address_ok = CHANNEL_ADDRESS[channel]
    sql = f"""
        CREATE OR REPLACE TEMP TABLE _dm_base AS
        SELECT c.contact_id, {cell_names}
               c._dm_{address_ok} AS address_ok, c._dm_consent_{channel} AS consent,
               {address_key_sql(quote_literal(channel), "c._dm_" + address)} AS address_key,
               c._dm_email_key AS email_key, c._dm_phone AS phone_key, c._dm_dm_handle AS dm_key,
               coalesce(c._dm_tz, $ws) AS zone, c._dm_tz IS NULL AS zone_fallback,
               s.base_at, s.planned_at, s.local_text,
               {hash15_sql("$cid || ':' || c.contact_id")} AS h
        FROM (SELECT {inner} FROM contacts CROSS JOIN _dm_run WHERE coalesce(({where}), false)) c
        JOIN _dm_schedule s ON s.zone = coalesce(c._dm_tz, $ws)
    """
    return sql, {"ws": ws.config.timezone, "cid": campaign.id}


def _select_base(con: duckdb.DuckDBPyConnection, ws: Workspace, campaign: Campaign) -> None:
    """``_dm_base`` on DuckDB; an expression the contact data makes fail is named."""
    sql, params = _base_sql(ws, campaign)
    try:
        con.execute(sql, params)
    except duckdb.Error as exc:
        for key, expression in campaign.where_clauses():
            try:
                con.execute(f"SELECT count(*) FROM {expressions.SOURCE} WHERE ({expression})").fetchall()
            except duckdb.Error:
                raise DataError(
                    f"the expression failed on the contact data ({type(exc).__name__})",
                    file=campaign.path,
                    line=campaign.doc.line_of(key_path(key)),
                    key=key,
                    hint="a column holds values the expression cannot compare; cast it or fix the data",
                ) from None
        raise DataError(f"the audience could not be computed ({type(exc).__name__})", file=campaign.path) from None


def _schedule(con: duckdb.DuckDBPyConnection, ws: Workspace, campaign: Campaign, at: datetime) -> list[ZoneTime]:
    """``_dm_schedule(zone, base_at, planned_at, local_text)``: one row per effective zone of the contacts."""
    ws_zone = ws.config.timezone
    zones = [
        row[0]
        for row in con.execute(
            "SELECT DISTINCT coalesce(_dm_tz, $ws) FROM contacts ORDER BY 1",
            {"ws": ws_zone},
        ).fetchall()
    ]
    times = [zone_time(campaign, at, z, ws_zone, ws.config.quiet_hours) for z in zones]
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _dm_schedule AS
           SELECT unnest($zones::VARCHAR[]) AS zone, unnest($base::TIMESTAMP[]) AS base_at,
                  unnest($planned::TIMESTAMP[]) AS planned_at, unnest($local::VARCHAR[]) AS local_text""",
        {
            "zones": [t.zone for t in times],
            "base": [t.base.replace(tzinfo=None) for t in times],
            "planned": [naive_utc(t.planned) for t in times],
            "local": [t.local.strftime("%Y-%m-%d %H:%M:%S %Z (UTC%z)") for t in times],
        },
    )
    return times


def _assignment_sql(campaign: Campaign) -> tuple[str, str]:
    """SQL for (holdout hit, assigned variant) over ``_dm_base`` columns, its constants written as literals."""
    config = campaign.config
    explicit = all(v.where for v in config.variants)
    fraction = config.holdout if isinstance(config.holdout, float) else 0.0
    ids = [quote_literal(v.id) for v in config.variants]
    if isinstance(config.holdout, Cell):
        holdout_sql = "_dm_holdout_cell"
    elif fraction > 0:
        t0, _ = hash_thresholds(fraction, [1.0])
        holdout_sql = f"h < {int(t0)}"
    else:
        holdout_sql = "false"
    if explicit:
        cases = " ".join(f"WHEN _dm_cell_{i} THEN {variant}" for i, variant in enumerate(ids))
    else:
        weights = [v.weight if v.weight is not None else 1.0 for v in config.variants]
        _, bounds = hash_thresholds(fraction if not isinstance(config.holdout, Cell) else 0.0, weights)
        cases = " ".join(f"WHEN h < {int(bound)} THEN {variant}" for bound, variant in zip(bounds, ids, strict=True))
    return holdout_sql, f"CASE {cases} END"


# What the funnel reads besides the audience, handed to Spark (SPEC §13): name -> DuckDB query.
SPARK_INPUTS = {
    "contacts": "SELECT * FROM contacts",
    "_dm_run": "SELECT * FROM _dm_run",
    "_dm_schedule": "SELECT * FROM _dm_schedule",
    "suppressions_all": "SELECT * FROM suppressions_all",
    "ledger_entries": "SELECT campaign_id, occurrence, contact_id, kind, channel, purpose, planned_at,"
    " address_sha256 FROM ledger_entries",
}


def build(
    con: duckdb.DuckDBPyConnection,
    ws: Workspace,
    campaign: Campaign,
    at: datetime,
    *,
    spark: SparkRunner | None = None,
) -> PlanSummary:
    """Compute ``plan_rows`` for ``campaign`` at instant ``at`` (aware UTC); its summary.

    With ``spark``, the funnel's set work runs there: the schedule, the suppressions and the ledger's entries
    are handed over through Parquet files in the runner's folder (one every executor can read), the checked
    contacts too unless Spark can read their snapshot in place, the same statements run on Spark
    (:mod:`dmops.spark`), and ``plan_rows`` comes back into ``con``.
    Checking the campaign's expressions, the traits and the schedule stay on DuckDB."""
    config = campaign.config
    ws_zone = zone(ws.config.timezone)
    occurrence = occurrence_key(config.recurrence, at, ws_zone)
    local_at = at.astimezone(ws_zone).replace(tzinfo=None)
    if traits.mentioned(campaign.texts()):
        traits.add_to_contacts(con, ws, at)
    expressions.create_source(con, local_at.isoformat(sep=" "), local_at.date().isoformat())
    _check_expressions(con, campaign, on_spark=spark is not None)
    _schedule(con, ws, campaign, at)
    if spark is None:

        def run(sql: str, params: dict[str, Any] | None = None) -> None:
            con.execute(sql, params or None)

        def first(sql: str) -> Any:
            return con.execute(sql).fetchall()[0][0]

        _select_base(con, ws, campaign)
    else:
        in_place = read_in_place(con)
        for name, sql in SPARK_INPUTS.items():
            if name == "contacts" and in_place is not None:
                spark.share_file(con, name, sql, in_place)  # the checked snapshot, read where it is
            else:
                spark.share(con, name, sql)

        def run(sql: str, params: dict[str, Any] | None = None) -> None:
            spark.execute(sql, params)

        def first(sql: str) -> Any:
            return spark.fetchall(sql)[0][0]

        run(*_base_sql(ws, campaign))
    marketing = config.purpose == "marketing"
    channel = config.channel
    caps = applied_caps(ws, campaign) if marketing else []
    holdout_sql, variant_sql = _assignment_sql(campaign)

    run(query("plan_suppressed"), {"channel": channel, "marketing": marketing})
    run(
        """
        CREATE OR REPLACE TEMP TABLE _dm_prior AS
        SELECT contact_id, bool_or(kind = 'message') AS sent, bool_or(kind = 'holdout') AS held
        FROM ledger_entries WHERE campaign_id = $cid AND occurrence = $occ GROUP BY contact_id
        """,
        {"cid": campaign.id, "occ": occurrence},
    )
    # The addresses this occurrence's messages went to, and those held out: a re-keyed or merged list
    # never sends twice, and never moves a person out of the control group.
    run(
        """
        CREATE OR REPLACE TEMP TABLE _dm_prior_address AS
        SELECT address_sha256, bool_or(kind = 'message') AS sent, bool_or(kind = 'holdout') AS held
        FROM ledger_entries
        WHERE campaign_id = $cid AND occurrence = $occ AND address_sha256 IS NOT NULL GROUP BY address_sha256
        """,
        {"cid": campaign.id, "occ": occurrence},
    )
    any_address = first("SELECT count(*) > 0 FROM _dm_prior_address")
    address_sent = "coalesce(pa.sent, false)" if any_address else "false"
    address_held = "coalesce(pa.held, false)" if any_address else "false"
    address_join = "LEFT JOIN _dm_prior_address pa ON pa.address_sha256 = sha256(b.address_key)" if any_address else ""
    # Steps 1-3 of the funnel, which the contact keeping a shared address must pass.
    passes = f"b.address_ok AND {'b.consent' if marketing else 'true'} AND sp.contact_id IS NULL"
    # Per shared address, the lowest id among its contacts that pass steps 1-3 (a grouped aggregate: a
    # window over every audience row cost 10M-row plans most of their time). A contact whose address no
    # other has keeps it by definition: NULL here, and the funnel's `address_kept_by < contact_id` is false.
    run(
        f"""
        CREATE OR REPLACE TEMP TABLE _dm_kept AS
        SELECT b.address_key, min(b.contact_id) FILTER (WHERE {passes}) AS address_kept_by
        FROM _dm_base b LEFT JOIN _dm_suppressed sp USING (contact_id)
        WHERE b.address_key IS NOT NULL GROUP BY b.address_key HAVING count(*) > 1
        """
    )
    cap_columns = _cap_counts(run, caps)
    capped_sql = " OR ".join(f"coalesce(cap_{i}, 0) >= {c.cap.max}" for i, c in enumerate(caps)) or "false"
    # Each check's input, per campaign (caps, holdout and variant assignment are generated SQL); the
    # decision itself is the fixed funnel of dmops/sql/plan_rows.sql.
    flagged = f"""
        CREATE OR REPLACE TEMP VIEW _dm_flagged AS
        SELECT b.*, sp.contact_id IS NOT NULL AS suppressed,
               k.address_kept_by,
               coalesce(p.sent, false) OR {address_sent} AS ledger_sent,
               coalesce(p.held, false) OR {address_held} AS ledger_held,
               {cap_columns}
               ({capped_sql}) AS capped,
               {holdout_sql} AS holdout_hit,
               {variant_sql} AS assigned
        FROM _dm_base b
        LEFT JOIN _dm_suppressed sp USING (contact_id)
        LEFT JOIN _dm_prior p USING (contact_id)
        LEFT JOIN _dm_caps c USING (contact_id)
        LEFT JOIN _dm_kept k ON k.address_key = b.address_key
        {address_join}
    """
    run(flagged)
    run(query("plan_rows"), {"marketing": marketing})
    if spark is not None:
        spark.take(con, "plan_rows")
    return _summary(con, campaign, occurrence, at, caps)


def _cap_counts(run: Callable[[str, dict[str, Any]], None], caps: list[AppliedCap]) -> str:
    """Create ``_dm_caps(contact_id, cap_0, …)``: ledger marketing messages strictly within each cap's window."""
    if not caps:
        run("CREATE OR REPLACE TEMP TABLE _dm_caps AS SELECT CAST(NULL AS VARCHAR) AS contact_id WHERE false", {})
        return ""
    widest = max(c.seconds for c in caps)
    counts = []
    params: dict[str, Any] = {"widest": widest * 1_000_000}
    for i, applied in enumerate(caps):
        params[f"per{i}"] = applied.seconds * 1_000_000
        condition = f"abs(epoch_us(m.planned_at) - epoch_us(b.planned_at)) < $per{i}"
        if applied.cap.channel:
            params[f"ch{i}"] = applied.cap.channel
            condition += f" AND m.channel = $ch{i}"
        counts.append(f"count(*) FILTER (WHERE {condition}) AS cap_{i}")
    run(
        f"""
        CREATE OR REPLACE TEMP TABLE _dm_caps AS
        WITH span AS (SELECT min(planned_at) AS lo, max(planned_at) AS hi FROM _dm_base),
        recent AS (
            SELECT m.contact_id, m.channel, m.planned_at FROM ledger_entries m, span
            WHERE m.kind = 'message' AND m.purpose = 'marketing'
              AND epoch_us(m.planned_at) > epoch_us(span.lo) - $widest
              AND epoch_us(m.planned_at) < epoch_us(span.hi) + $widest
        )
        SELECT b.contact_id, {", ".join(counts)}
        FROM _dm_base b JOIN recent m ON m.contact_id = b.contact_id
        GROUP BY b.contact_id
        """,
        params,
    )
    return "".join(f"c.cap_{i}, " for i in range(len(caps)))


def _summary(
    con: duckdb.DuckDBPyConnection, campaign: Campaign, occurrence: str, at: datetime, caps: list[AppliedCap]
) -> PlanSummary:
    counts = dict(con.execute("SELECT reason, count(*) FROM plan_rows WHERE reason IS NOT NULL GROUP BY 1").fetchall())
    variants = dict(
        con.execute("SELECT variant, count(*) FROM plan_rows WHERE variant IS NOT NULL GROUP BY 1").fetchall()
    )
    row = con.execute(
        "SELECT count(*), count(variant), min(planned_at) FILTER (WHERE variant IS NOT NULL),"
        " max(planned_at) FILTER (WHERE variant IS NOT NULL) FROM plan_rows"
    ).fetchone()
    assert row is not None
    return PlanSummary(
        campaign=campaign.id,
        occurrence=occurrence,
        at=at,
        audience=int(row[0]),
        to_send=int(row[1]),
        excluded={reason: int(counts.get(reason, 0)) for reason in REASONS},
        variants={v.id: int(variants.get(v.id, 0)) for v in campaign.config.variants},
        first_send=row[2],
        last_send=row[3],
        caps=caps,
    )


def check_out_path(path: Path) -> None:
    """``--out`` must be .csv or .parquet in an existing folder."""
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise UsageError(f"--out '{path}' must end in .csv or .parquet")
    if not path.parent.is_dir():
        raise OutputError(f"folder '{path.parent}' does not exist", file=path)


def write_out(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Write one row per audience contact to ``path`` (CSV or Parquet), atomically."""
    staging = free_staging_path(path)  # DuckDB creates it by name: it would follow a planted link
    parquet = path.suffix.lower() == ".parquet"
    options = "FORMAT parquet, COMPRESSION zstd" if parquet else "FORMAT csv, HEADER true"
    try:
        con.execute(
            f"COPY ({query('plan_out')}) TO {quote_literal(str(staging))} ({options})",
            {"empty": "" if parquet else None, "formula_starts": [] if parquet else list(FORMULA_STARTS)},
        )
        publish(staging, path)
    except BaseException as exc:  # a DuckDB or file error, or Ctrl-C: the staging file goes either way
        staging.unlink(missing_ok=True)
        if isinstance(exc, duckdb.Error | OSError) and not isinstance(exc, duckdb.InterruptException):
            raise OutputError(f"cannot write the plan file ({type(exc).__name__})", file=path) from None
        raise


def run_plan(
    ws: Workspace, campaign: Campaign, at: datetime, *, out: Path | None = None, reads: Sequence[Path] = ()
) -> tuple[duckdb.DuckDBPyConnection, PlanSummary]:
    """Prepare, build (on Spark when ``engine:`` says so), and write ``out`` if given: the open connection
    (for --explain and --diff, which may read the files ``reads``) and the summary."""
    allowed = [str(staging_path(out))] if out is not None else []
    allowed += [name for path in reads for name in (str(path), str(path.resolve()))]
    if out is not None:
        check_out_path(out)
    with hand_over(ws.state_dir, "plan", spark=ws.config.spark is not None) as folder:
        con = prepare(ws, campaign, allowed_paths=allowed, allowed_directories=[str(folder)] if folder else [])
        try:
            summary = build(con, ws, campaign, at, spark=spark_runner(ws, folder))
            if out is not None:
                write_out(con, out)
        except DmopsError:
            con.close()
            raise
    return con, summary


def spark_runner(ws: Workspace, folder: Path | None) -> SparkRunner | None:
    """With ``engine: spark`` and a hand-over ``folder`` (:func:`dmops.durable.hand_over`), the runner the
    funnel runs on; None on DuckDB. PySpark and SQLGlot are imported only then."""
    if folder is None:
        return None
    from dmops.spark import runner_for

    return runner_for(ws, folder)


@dataclass(frozen=True)
class Check:
    """One line of ``--explain``: a step of the funnel, what it saw, and its outcome."""

    step: str
    outcome: str
    detail: str


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    return con.execute(sql, bound(sql, params)).fetchone()


def _duplicate_check(con: duckdb.DuckDBPyConnection, r: dict[str, Any], channel: str, show_pii: bool) -> Check:
    """``duplicate_address``: which audience contact keeps a shared address (ids masked unless --show-pii)."""
    from dmops.pii import mask_id

    step = "3 duplicate_address"
    if not r["address_ok"]:
        return Check(step, "pass", "no valid address to share")
    shared = con.execute(
        "SELECT count(*) FROM plan_rows WHERE address_key = $a AND contact_id <> $id",
        {"a": r["address_key"], "id": r["contact_id"]},
    ).fetchall()[0][0]
    kept_by = r["address_kept_by"]
    shown = kept_by if show_pii or kept_by is None else mask_id(kept_by)
    if kept_by is not None and kept_by < r["contact_id"]:
        return Check(step, "EXCLUDED", f"same {channel} address as contact {shown}, which keeps the message")
    if shared:
        return Check(step, "pass", f"{shared} other audience contact(s) share this address; the lowest id keeps it")
    return Check(step, "pass", "no other audience contact has this address")


def explain(
    con: duckdb.DuckDBPyConnection,
    ws: Workspace,
    campaign: Campaign,
    summary: PlanSummary,
    contact_id: str,
    *,
    show_pii: bool,
) -> list[Check]:
    """Every check of the funnel for one contact, in order, with its inputs (after :func:`build`)."""
    from dmops.pii import mask

    config = campaign.config
    marketing = config.purpose == "marketing"
    p = {"id": contact_id}
    if _one(con, "SELECT 1 FROM contacts WHERE CAST(contact_id AS VARCHAR) = $id", p) is None:
        raise UsageError(f"no contact with contact_id '{contact_id}' in {ws.contacts_path.name}")
    checks: list[Check] = []
    where = config.audience.where or "(no audience.where: every contact)"
    row = _one(con, "SELECT * FROM plan_rows WHERE contact_id = $id", p)
    if row is None:
        checks.append(Check("audience", "not in audience", f"audience.where is false or null: {where}"))
        return checks
    names = [d[0] for d in con.execute("SELECT * FROM plan_rows LIMIT 0").description]
    r = dict(zip(names, row, strict=True))
    checks.append(Check("audience", "in audience", f"audience.where: {where}"))

    address_column = CHANNEL_ADDRESS[config.channel][0]
    address = _one(con, f"SELECT {address_column} FROM contact_channels WHERE contact_id = $id", p)
    shown = (
        mask(address[0], {"email": "email", "sms": "phone"}.get(config.channel, "text"), show_pii)
        if address and address[0]
        else "none"
    )
    checks.append(
        Check("1 invalid_address", "pass" if r["address_ok"] else "EXCLUDED", f"{config.channel} address: {shown}")
    )
    consent_column = ws.config.consent_column(config.channel)
    if not marketing:
        checks.append(Check("2 no_consent", "skipped", "transactional campaigns need no consent"))
    elif consent_column is None:
        checks.append(Check("2 no_consent", "pass", f"no consent column configured for {config.channel}"))
    else:
        raw = _one(
            con, f"SELECT CAST({quote_ident(consent_column)} AS VARCHAR) FROM contacts WHERE contact_id = $id", p
        )
        value = repr(raw[0]) if raw and raw[0] is not None else "(blank)"
        checks.append(Check("2 no_consent", "pass" if r["consent"] else "EXCLUDED", f"{consent_column} = {value}"))
    matches = con.execute(
        """
        SELECT s.source, s.line, s.reason, coalesce(s.channel, 'all channels'),
               CASE WHEN s.contact_id = c.contact_id THEN 'contact_id'
                    WHEN s.email_key = c.email_key THEN 'email'
                    WHEN s.phone_key = c.phone THEN 'phone' ELSE 'dm handle' END
        FROM suppressions_all s, contact_channels c
        WHERE c.contact_id = $id AND (s.contact_id = c.contact_id OR s.email_key = c.email_key
              OR s.phone_key = c.phone OR s.dm_key = c.dm_handle)
        ORDER BY s.source, s.line
        """,
        p,
    ).fetchall()
    detail = (
        "; ".join(
            source  # an erasure says when, and nothing else (SPEC §12)
            if reason == "erasure"
            else f"{source}{':' + str(line) if line else ''} {reason} on {channel} (by {by})"
            + (
                ""
                if (channel in ("all channels", config.channel)) and (marketing or reason != "unsubscribe")
                else " — does not apply"
            )
            for source, line, reason, channel, by in matches
        )
        or "no suppression matches"
    )
    checks.append(Check("3 suppressed", "EXCLUDED" if r["suppressed"] else "pass", detail))
    checks.append(_duplicate_check(con, r, config.channel, show_pii))
    prior = con.execute(
        "SELECT kind, coalesce(variant, '-'), planned_at FROM ledger_entries"
        " WHERE campaign_id = $cid AND occurrence = $occ AND contact_id = $id",
        {"cid": campaign.id, "occ": summary.occurrence, "id": contact_id},
    ).fetchall()
    prior_text = (
        "; ".join(
            f"message variant {v} planned {iso_z(t)}" if kind == "message" else f"held out, planned {iso_z(t)}"
            for kind, v, t in prior
        )
        or "nothing in the ledger"
    )
    outcome = "EXCLUDED" if r["ledger_sent"] else ("HOLDOUT (kept)" if r["ledger_held"] else "pass")
    checks.append(Check("4 already_sent", outcome, f"occurrence {summary.occurrence}: {prior_text}"))
    t = r["planned_at"]
    if not marketing:
        checks.append(Check("5 frequency_cap", "skipped", "transactional campaigns are not capped"))
    elif not summary.caps:
        checks.append(Check("5 frequency_cap", "pass", "no caps apply"))
    else:
        parts = []
        for i, applied in enumerate(summary.caps):
            count = r.get(f"cap_{i}") or 0
            parts.append(f"{applied.describe()}: {count} within ±{applied.cap.per} of {iso_z(t)}")
        checks.append(Check("5 frequency_cap", "EXCLUDED" if r["capped"] else "pass", "; ".join(parts)))
    fallback = " (contact timezone missing or invalid: workspace zone)" if r["zone_fallback"] else ""
    shift = f"; quiet hours moved it from {iso_z(r['base_at'])}" if r["base_at"] != t else ""
    checks.append(Check("time", "info", f"zone {r['zone']}{fallback}; t = {iso_z(t)} = {r['local_text']}{shift}"))
    u = r["h"] / HASH_SPACE
    holdout = config.holdout
    if isinstance(holdout, Cell):
        hold_detail = f"holdout.where: {holdout.where}"
    else:
        hold_detail = f"u = {u:.6f} (md5 of '{campaign.id}:{contact_id}'), holdout {holdout}"
    checks.append(
        Check(
            "6 holdout",
            "HOLDOUT" if r["holdout_hit"] else "pass",
            hold_detail,
        )
    )
    if all(v.where for v in config.variants):
        matched = next((v.id for i, v in enumerate(config.variants) if r.get(f"_dm_cell_{i}")), None)
        checks.append(
            Check("7 no_variant", "pass" if matched else "EXCLUDED", f"first matching cell: {matched or 'none'}")
        )
    elif r["holdout_hit"] and not isinstance(holdout, Cell):
        checks.append(Check("7 variant", "info", f"u = {u:.6f} is in the holdout slice [0, {holdout})"))
    else:
        fraction = 0.0 if isinstance(holdout, Cell) else float(holdout)
        weights = [v.weight if v.weight is not None else 1.0 for v in config.variants]
        _, bounds = hash_thresholds(fraction, weights)
        index = next(i for i, b in enumerate(bounds) if r["h"] < b)
        low = fraction if index == 0 else bounds[index - 1] / HASH_SPACE
        checks.append(
            Check(
                "7 variant",
                "info",
                f"u = {u:.6f} is in [{low:.6f}, {bounds[index] / HASH_SPACE:.6f}): variant {config.variants[index].id}",
            )
        )
    decision = f"send variant {r['variant']} at {iso_z(t)}" if r["variant"] else f"excluded: {r['reason']}"
    checks.append(Check("decision", decision, ""))
    return _mark_unreached(checks)


def _mark_unreached(checks: list[Check]) -> list[Check]:
    """Steps after the one that decided are shown with their inputs but marked not reached."""
    out: list[Check] = []
    decided = False
    for check in checks:
        numbered = check.step[:1].isdigit()
        if decided and numbered and check.outcome not in ("info", "skipped"):
            check = Check(check.step, f"not reached ({check.outcome})", check.detail)
        if numbered and (check.outcome == "EXCLUDED" or check.outcome.startswith("HOLDOUT")):
            decided = True
        out.append(check)
    return out
