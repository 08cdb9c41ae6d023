"""KPIs per campaign, variant and holdout, lift and A/B statistics, goals, retention (SPEC §9).

All aggregation runs in DuckDB over the ledger (who was messaged or held out,
and when) and the imported events. The module returns plain data; the CLI
formats it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import duckdb

from dmops import ledger
from dmops.campaign import MAX_GOALS, Campaign, Cell
from dmops.db import Queries, connect
from dmops.report.stats import sample_ratio_mismatch, sample_sd, small_sample, two_proportions, welch, wilson
from dmops.sql import REASONS, query
from dmops.tabular import csv_safe
from dmops.workspace import Workspace

DEFINITIONS = {
    "recipients": "messages sent (variant) / contacts held out (holdout)",
    "sent": "messages written to the outbox",
    "bounced": "unique messages with a bounce and no open or click",
    "delivered": "sent - bounced (delivered events are informational)",
    "open_rate": "unique opened messages / delivered",
    "click_rate": "unique clicked messages / delivered",
    "ctor": "unique clicked messages / unique opened messages",
    "unsubscribe_rate": "unique messages with an unsubscribe / delivered",
    "complaint_rate": "unique messages with a complaint / delivered",
    "bounce_rate": "bounced / sent",
    "conversions": "recipients with >= 1 conversion in (t, t + window], t = their planned send time",
    "conversion_rate": "conversions / recipients",
    "revenue": "sum of the revenue of those conversions",
    "revenue_per_recipient": "revenue / recipients",
}
RATES = ("open_rate", "click_rate", "ctor", "unsubscribe_rate", "complaint_rate", "bounce_rate", "conversion_rate")

PERIOD_UNITS = {"month": "month", "quarter": "quarter"}


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _revenue_sd(counts: dict[str, Any]) -> float:
    """The standard deviation of revenue per recipient (0 for every recipient without a conversion)."""
    return sample_sd(counts["recipients"], counts["revenue"] or 0, counts["revenue_sq"] or 0)


def _interval(successes: int, trials: int) -> list[float] | None:
    low, high = wilson(successes, trials)
    return None if low is None or high is None else [low, high]


def _metrics(counts: dict[str, Any], opens: bool = True) -> dict[str, Any]:
    """The metrics of SPEC §9 from counts; without opens (SMS, DM) open rate and CTOR are null."""
    sent = counts["sent"]
    delivered = sent - counts["bounced"]
    recipients = counts["recipients"]
    revenue = float(counts["revenue"] or 0)
    return {
        "recipients": recipients,
        "sent": sent,
        "bounced": counts["bounced"],
        "delivered": delivered,
        "opened": counts["opened"],
        "clicked": counts["clicked"],
        "open_rate": _ratio(counts["opened"], delivered) if opens else None,
        "click_rate": _ratio(counts["clicked"], delivered),
        "ctor": _ratio(counts["clicked"], counts["opened"]) if opens else None,
        "unsubscribe_rate": _ratio(counts["unsubscribed"], delivered),
        "complaint_rate": _ratio(counts["complained"], delivered),
        "bounce_rate": _ratio(counts["bounced"], sent),
        "conversions": counts["conversions"],
        "conversion_rate": _ratio(counts["conversions"], recipients),
        "conversion_rate_ci": _interval(counts["conversions"], recipients),
        "revenue": round(revenue, 2),
        "revenue_per_recipient": _ratio(revenue, recipients),
    }


def _lift(x1: int, n1: int, x0: int, n0: int) -> dict[str, Any] | None:
    """The conversion-rate comparison, with SPEC §9's "small sample" caution when it applies."""
    found: dict[str, Any] | None = two_proportions(x1, n1, x0, n0)
    if found is not None and small_sample(x1, n1, x0, n0):
        found["caution"] = "small sample"
    return found


def _goal(metric: str, target: float, actual: float | None) -> dict[str, Any]:
    """A goal's verdict: bounce, unsubscribe and complaint rates are maxima, the rest minima; no data is None."""
    met = None if actual is None else (actual <= target if metric in MAX_GOALS else actual >= target)
    return {"metric": metric, "target": target, "actual": actual, "met": met}


@dataclass
class CampaignReport:
    campaign: str
    name: str
    rows: list[dict[str, Any]]
    goals: list[dict[str, Any]]
    ab: dict[str, Any]
    definitions: dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))
    decisions: dict[str, int] = field(default_factory=dict)  # the funnel at each occurrence's latest send
    channel: str = "email"  # what the HTML page may show (an SMS has no opens)

    def as_json(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "name": self.name,
            "definitions": self.definitions,
            "rows": self.rows,
            "goals": self.goals,
            "ab": self.ab,
            "decisions": self.decisions,
        }


def campaign_report(con: Queries, campaign: Campaign, occurrence: str | None = None) -> CampaignReport:
    """Rows per variant and the holdout, with lift, goals and the A/B comparison."""
    window = int(campaign.window.total_seconds())
    cursor = con.execute(
        query("report_rows"), {"c": campaign.id, "occ": occurrence, "window": window, "unit": None, "tz": "UTC"}
    )
    names = [d[0] for d in cursor.description if d[0] != "period"]
    counts = {row[0]: dict(zip(names, row[:1] + row[2:], strict=True)) for row in cursor.fetchall()}
    variant_ids = [v.id for v in campaign.config.variants]
    opens = campaign.config.channel == "email"  # only email has opens
    empty = dict.fromkeys(names[1:], 0)
    holdout = counts.get("holdout", {**empty, "grp": "holdout"})
    rows: list[dict[str, Any]] = []
    for vid in variant_ids:
        c = counts.get(vid, {**empty, "grp": vid})
        row = {"variant": vid, **_metrics(c, opens)}
        sd0, sd1 = _revenue_sd(holdout), _revenue_sd(c)
        n0, n1 = holdout["recipients"], c["recipients"]
        row["lift"] = {
            "conversion_rate": _lift(c["conversions"], n1, holdout["conversions"], n0),
            "revenue_per_recipient": welch(
                float(c["revenue"] or 0) / n1 if n1 else 0,
                sd1,
                n1,
                float(holdout["revenue"] or 0) / n0 if n0 else 0,
                sd0,
                n0,
            ),
        }
        rows.append(row)
    held = {"variant": "holdout", **_metrics(holdout)}
    for key in ("sent", "bounced", "delivered", "opened", "clicked"):
        held[key] = None
    for rate in ("open_rate", "click_rate", "ctor", "unsubscribe_rate", "complaint_rate", "bounce_rate"):
        held[rate] = None
    rows.append(held)
    total = {k: sum(counts.get(v, empty).get(k, 0) or 0 for v in variant_ids) for k in names[1:]}
    overall = _metrics(total, opens)
    has_events, has_conversions = con.execute(
        """SELECT count(*) FILTER (WHERE campaign_id = $c) > 0, count(*) FILTER (WHERE event = 'conversion') > 0
           FROM ledger_events""",
        {"c": campaign.id},
    ).fetchall()[0]
    goals = []
    for metric, target in campaign.config.goals.items():
        # before any event is imported a rate is unknown, not 0: such a goal has no data
        known = has_conversions if metric in ("conversion_rate", "revenue_per_recipient") else has_events
        goals.append(_goal(metric, target, overall.get(metric) if known else None))
    pairs = []
    for i, a in enumerate(variant_ids):
        for b in variant_ids[i + 1 :]:
            ca, cb = counts.get(a, empty), counts.get(b, empty)
            pairs.append(
                {
                    "a": a,
                    "b": b,
                    "conversion_rate": _lift(cb["conversions"], cb["recipients"], ca["conversions"], ca["recipients"]),
                }
            )
    weights = [v.weight if v.weight is not None else 1.0 for v in campaign.config.variants]
    observed = [counts.get(v, empty)["recipients"] for v in variant_ids]
    fraction = campaign.config.holdout if isinstance(campaign.config.holdout, float) else 0.0
    if (
        fraction > 0
        and not isinstance(campaign.config.holdout, Cell)
        and all(v.where is None for v in campaign.config.variants)
    ):
        planned = [fraction, *[(1 - fraction) * w / sum(weights) for w in weights]]
        srm = sample_ratio_mismatch([holdout["recipients"], *observed], planned)
    elif all(v.where is None for v in campaign.config.variants):
        srm = sample_ratio_mismatch(observed, weights)
    else:
        srm = {"chi2": None, "p_value": None, "mismatch": None}  # explicit cells have no planned ratio
    return CampaignReport(
        campaign.id,
        campaign.config.name,
        rows,
        goals,
        {"pairs": pairs, "sample_ratio": srm},
        decisions=_decisions(con, campaign.id, occurrence),
        channel=campaign.config.channel,
    )


def _decisions(con: Queries, campaign_id: str, occurrence: str | None) -> dict[str, int]:
    """Contacts per decision at each occurrence's latest send, summed, in funnel order (send last)."""
    rows = con.execute(
        """
        SELECT reason, sum(contacts) FROM ledger_decisions d
        WHERE campaign_id = $c AND ($occ IS NULL OR occurrence = $occ)
          AND recorded_at = (SELECT max(recorded_at) FROM ledger_decisions l
                             WHERE l.campaign_id = d.campaign_id AND l.occurrence = d.occurrence)
        GROUP BY reason
        """,
        {"c": campaign_id, "occ": occurrence},
    ).fetchall()
    found = {reason: int(n) for reason, n in rows}
    order = [*REASONS, "send"]
    return {reason: found[reason] for reason in sorted(found, key=lambda r: order.index(r) if r in order else 99)}


def period_report(con: Queries, ws: Workspace, campaigns: list[Campaign], period: str) -> list[dict[str, Any]]:
    """Every campaign summed per month or quarter of its planned send times (workspace timezone).

    Holdout rows are left out; each period lists its campaigns' goals as met, missed or without data.
    """
    unit = PERIOD_UNITS[period]
    totals: dict[Any, dict[str, Any]] = {}
    for campaign in campaigns:
        window = int(campaign.window.total_seconds())
        cursor = con.execute(
            query("report_rows"),
            {"c": campaign.id, "occ": None, "window": window, "unit": unit, "tz": ws.config.timezone},
        )
        names = [d[0] for d in cursor.description]
        per_period: dict[Any, dict[str, Any]] = {}
        for row in cursor.fetchall():
            values = dict(zip(names, row, strict=True))
            if values["grp"] != "holdout":  # periods sum what was sent
                bucket = per_period.setdefault(values["period"], {k: 0 for k in names[2:]})
                for key in names[2:]:
                    bucket[key] += values[key] or 0
        for start, counts in per_period.items():
            total = totals.setdefault(start, {**{k: 0 for k in counts}, "campaigns": [], "goals": []})
            for key, value in counts.items():
                total[key] += value
            total["campaigns"].append(campaign.id)
            metrics = _metrics(counts)
            for metric, target in campaign.config.goals.items():
                total["goals"].append({"campaign": campaign.id, **_goal(metric, target, metrics.get(metric))})
    out = []
    for start in sorted(totals):
        total = totals[start]
        label = f"{start.year}-{start.month:02d}" if unit == "month" else f"{start.year}-Q{(start.month - 1) // 3 + 1}"
        out.append(
            {
                "period": label,
                "campaigns": total["campaigns"],
                **_metrics(total),
                "goals": total["goals"],
                "goals_met": sum(1 for g in total["goals"] if g["met"] is True),
                "goals_missed": sum(1 for g in total["goals"] if g["met"] is False),
            }
        )
    return out


def open_report(ws: Workspace) -> duckdb.DuckDBPyConnection:
    """A connection with the ledger attached read-only (empty when there is none yet)."""
    con = connect()
    ledger.attach(con, ws)
    return con


def retention(con: Queries, ws: Workspace, period: str, event: str) -> dict[str, Any]:
    """Cohorts by the period of each contact's first ``event``; cell k = share active k periods later (SPEC §9)."""
    unit = "month" if period == "month" else "week"
    rows = con.execute(
        f"""
        WITH e AS (
            SELECT contact_id, date_trunc('{unit}', CAST(timezone('UTC', ts) AT TIME ZONE $tz AS DATE)) AS p
            FROM ledger_events WHERE event = $event AND contact_id IS NOT NULL
        ),
        firsts AS (SELECT contact_id, min(p) AS cohort FROM e GROUP BY contact_id),
        last AS (SELECT max(p) AS p FROM e),
        active AS (
            SELECT f.cohort, date_diff('{unit}', f.cohort, e.p) AS k, count(DISTINCT e.contact_id) AS n
            FROM e JOIN firsts f USING (contact_id) GROUP BY ALL
        ),
        sizes AS (SELECT cohort, count(*) AS size FROM firsts GROUP BY cohort)
        SELECT s.cohort, s.size, date_diff('{unit}', s.cohort, (SELECT p FROM last)) AS span,
               list(struct_pack(k := a.k, n := a.n)) AS cells
        FROM sizes s JOIN active a USING (cohort) GROUP BY ALL ORDER BY s.cohort
        """,
        {"tz": ws.config.timezone, "event": event},
    ).fetchall()
    cohorts = []
    for cohort, size, span, cells in rows:
        counts = {cell["k"]: cell["n"] for cell in cells}
        label = (
            cohort.strftime("%Y-%m") if unit == "month" else f"{cohort.isocalendar()[0]}-W{cohort.isocalendar()[1]:02d}"
        )
        cohorts.append(
            {
                "cohort": label,
                "size": size,
                "retention": [round(counts.get(k, 0) / size, 6) for k in range(int(span) + 1)],
            }
        )
    return {"period": period, "event": event, "cohorts": cohorts}


def to_csv(reports: list[CampaignReport]) -> str:
    columns = [
        "campaign",
        "variant",
        *[k for k in DEFINITIONS if k not in ("sent",)],
        "sent",
        "conversion_rate_ci_low",
        "conversion_rate_ci_high",
        "lift_conversion_abs",
        "lift_conversion_ci_low",
        "lift_conversion_ci_high",
        "lift_conversion_p_value",
        "lift_conversion_caution",
        "lift_revenue_abs",
        "lift_revenue_p_value",
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for report in reports:
        for row in report.rows:
            lift = row.get("lift") or {}
            conv, rev = lift.get("conversion_rate") or {}, lift.get("revenue_per_recipient") or {}
            interval = row.get("conversion_rate_ci") or [None, None]
            values = {
                **row,
                "campaign": report.campaign,
                "conversion_rate_ci_low": interval[0],
                "conversion_rate_ci_high": interval[1],
                "lift_conversion_abs": conv.get("abs"),
                "lift_conversion_ci_low": conv.get("ci_low"),
                "lift_conversion_ci_high": conv.get("ci_high"),
                "lift_conversion_p_value": conv.get("p_value"),
                "lift_conversion_caution": conv.get("caution"),
                "lift_revenue_abs": rev.get("abs"),
                "lift_revenue_p_value": rev.get("p_value"),
            }
            writer.writerow([csv_safe("" if values.get(c) is None else values.get(c)) for c in columns])
    return out.getvalue()
