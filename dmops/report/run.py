"""``dmops report``'s choices in one place: which report, in which format, from which campaigns."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from dmops.campaign import campaign_files, find_campaign_file, load_campaign
from dmops.db import Queries
from dmops.durable import hand_over
from dmops.errors import UsageError
from dmops.report.kpis import CampaignReport, campaign_report, open_report, period_report, retention, to_csv
from dmops.workspace import Workspace


@dataclass
class Output:
    """A finished report: its text, or (for the campaign table) the reports the command prints itself."""

    text: str | None
    reports: list[CampaignReport] = field(default_factory=list)
    goals_missed: int = 0


@dataclass(frozen=True)
class Request:
    """What ``dmops report`` was asked for (its arguments and options)."""

    names: list[str]
    fmt: str = "table"  # table, json, csv, md, html
    occurrence: str | None = None
    period: str | None = None  # campaigns: month | quarter; retention: month | week
    event: str = "conversion"  # retention: the event that counts
    at: datetime | None = None  # lifecycle: the last month ends here
    months: int = 12  # lifecycle
    threshold: float = 0.005  # fatigue


def run_report(ws: Workspace, request: Request) -> Output:
    """The report ``request`` names, formatted (UsageError for options that do not fit it)."""
    if request.names in (["lifecycle"], ["fatigue"]):
        return Output(_lifecycle_or_fatigue(ws, request))
    con = open_report(ws)
    engine = contextlib.ExitStack()
    try:
        queries = engine.enter_context(_on_engine(ws, con))
        if request.names == ["retention"]:
            if request.period not in (None, "month", "week"):
                raise UsageError("--period must be month or week for retention")
            view = retention(queries, ws, request.period or "month", request.event)
            if request.fmt == "html":
                from dmops.report.formats import page

                return Output(page([], view, page_language(ws)))
            return Output(json.dumps(view, ensure_ascii=False, indent=2))
        paths = [find_campaign_file(ws, n) for n in request.names] if request.names else campaign_files(ws)
        campaigns = [load_campaign(p, ws) for p in paths]
        if request.period is not None:
            if request.period not in ("month", "quarter"):
                raise UsageError("--period must be month or quarter")
            if request.fmt not in ("table", "md", "json"):
                raise UsageError(f"the --period report comes as table, md or json, not {request.fmt}")
            periods = period_report(queries, ws, campaigns, request.period)
            missed = sum(1 for p in periods if p["goals_missed"])
            if request.fmt == "json":
                payload = {"period": request.period, "periods": periods}
                return Output(json.dumps(payload, ensure_ascii=False, indent=2, default=str), goals_missed=missed)
            from dmops.report.formats import period_markdown

            return Output(period_markdown(periods), goals_missed=missed)
        reports = [campaign_report(queries, c, request.occurrence) for c in campaigns]
        cohorts = retention(queries, ws, "month", "conversion") if request.fmt == "html" else None
    finally:
        engine.close()
        con.close()
    missed = sum(1 for r in reports for g in r.goals if g["met"] is False)
    return Output(_campaigns_text(reports, request.fmt, cohorts, page_language(ws)), reports, missed)


# What the campaign, period and retention reports read of the ledger: handed to Spark with engine: spark.
SPARK_INPUTS = {
    "ledger_entries": "SELECT campaign_id, occurrence, contact_id, kind, variant, planned_at, message_id FROM ledger_entries",
    "ledger_message_events": "SELECT * FROM ledger_message_events",
    "ledger_events": "SELECT event, ts, contact_id, campaign_id, revenue FROM ledger_events",
    "ledger_decisions": "SELECT campaign_id, occurrence, reason, contacts, recorded_at FROM ledger_decisions",
}

# What the fatigue report reads: the marketing messages, and the unsubscribes and complaints about messages.
FATIGUE_INPUTS = {
    "ledger_entries": "SELECT message_id, contact_id, channel, planned_at, kind, purpose FROM ledger_entries"
    " WHERE kind = 'message' AND purpose = 'marketing'",
    "ledger_events": "SELECT message_id, event FROM ledger_events"
    " WHERE message_id IS NOT NULL AND event IN ('unsubscribe', 'complaint')",
}

# What the lifecycle report reads: the contact ids, conversions and opens, marketing messages (dmops/sql/traits.sql).
LIFECYCLE_INPUTS = {
    "contacts": "SELECT DISTINCT contact_id FROM contacts",
    "ledger_events": "SELECT event, ts, contact_id, revenue FROM ledger_events"
    " WHERE event IN ('conversion', 'open') AND contact_id IS NOT NULL",
    "ledger_entries": "SELECT contact_id, kind, purpose, planned_at FROM ledger_entries"
    " WHERE kind = 'message' AND purpose = 'marketing'",
}


@contextlib.contextmanager
def _on_engine(
    ws: Workspace, con: duckdb.DuckDBPyConnection, inputs: dict[str, str] = SPARK_INPUTS
) -> Iterator[Queries]:
    """Where the report's queries run: ``con`` (DuckDB), or with ``engine: spark`` on Spark, over what
    ``inputs`` selects (of the ledger; of the contacts for the lifecycle), handed over as Parquet in a private
    folder of the state folder (removed afterwards)."""
    with hand_over(ws.state_dir, "report", spark=ws.config.spark is not None) as folder:
        if folder is None:
            yield con
            return
        from dmops.spark import SparkQueries, runner_for

        runner = runner_for(ws, folder)
        assert runner is not None, "engine: spark gives a runner"
        for name, sql in inputs.items():
            runner.share(con, name, sql)
        yield SparkQueries(runner)


def page_language(ws: Workspace) -> str:
    """The HTML ``lang`` of the workspace's reports, from its timezone (Chinese, Japanese, Korean zones), else en."""
    zone = ws.config.timezone
    by_zone = {
        "Asia/Shanghai": "zh-CN", "Asia/Chongqing": "zh-CN", "Asia/Harbin": "zh-CN", "Asia/Urumqi": "zh-CN",
        "Asia/Hong_Kong": "zh-HK", "Asia/Macau": "zh-MO", "Asia/Taipei": "zh-TW", "Asia/Tokyo": "ja",
        "Asia/Seoul": "ko",
    }  # fmt: skip
    return by_zone.get(zone, "en")


def _campaigns_text(
    reports: list[CampaignReport], fmt: str, cohorts: dict[str, Any] | None, lang: str = "en"
) -> str | None:
    from dmops.report.formats import markdown, page

    if fmt == "json":
        return json.dumps({"campaigns": [r.as_json() for r in reports]}, ensure_ascii=False, indent=2)
    if fmt == "csv":
        return to_csv(reports)
    if fmt == "md":
        return markdown(reports)
    if fmt == "html":
        return page(reports, cohorts, lang)
    return None  # table: printed by the command


def _lifecycle_or_fatigue(ws: Workspace, request: Request) -> str:
    from dmops.contacts import load_contacts
    from dmops.report.fatigue import fatigue_report
    from dmops.report.formats import fatigue_page, fatigue_table, lifecycle_page, lifecycle_table
    from dmops.report.lifecycle import lifecycle_report

    which = request.names[0]
    if request.fmt not in ("table", "json", "html"):
        raise UsageError(f"the {which} report comes as table, json or html")
    if which == "lifecycle" and not 1 <= request.months <= 120:
        raise UsageError("--months must be between 1 and 120")
    if which == "fatigue" and not 0 <= request.threshold < 1:
        raise UsageError("--threshold must be a rate between 0 and 1, e.g. 0.005")
    con = open_report(ws)
    try:
        if which == "lifecycle":
            assert request.at is not None, "the lifecycle report needs --at (the CLI passes now)"
            load_contacts(con, ws, [])  # the contact ids: traits read nothing else of the file
            with _on_engine(ws, con, LIFECYCLE_INPUTS) as queries:
                view = lifecycle_report(queries, ws, request.at, request.months)
        else:
            with _on_engine(ws, con, FATIGUE_INPUTS) as queries:
                view = fatigue_report(queries, request.threshold)
    finally:
        con.close()
    if request.fmt == "json":
        return json.dumps(view, ensure_ascii=False, indent=2)
    if request.fmt == "html":
        return lifecycle_page(view) if which == "lifecycle" else fatigue_page(view)
    return lifecycle_table(view) if which == "lifecycle" else fatigue_table(view)
