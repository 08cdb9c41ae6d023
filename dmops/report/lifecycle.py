"""``dmops report lifecycle``: stages month by month.

Each contact of the contacts file gets its ``lifecycle_stage`` (:mod:`dmops.traits`)
as of the end of each month, in the workspace time zone (the last month ends at
``--at``); the report counts the stages, the flows between consecutive months and
the churn rate.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from dateutil.relativedelta import relativedelta

from dmops import traits
from dmops.db import Queries, quote_literal
from dmops.timeutil import zone
from dmops.workspace import Workspace

CUSTOMERS = ("new", "active", "reactivated", "at_risk")
CHURN_DEFINITION = (
    "churn rate of month m = contacts whose stage was new, active, reactivated or at_risk at the end of month m-1 "
    "and is churned at the end of m / contacts whose stage was new, active, reactivated or at_risk at the end of m-1"
)


def month_ends(ws: Workspace, at: datetime, months: int) -> list[tuple[str, datetime]]:
    """(label, instant in UTC) for the end of each of the last ``months`` months; the last is ``at`` itself."""
    tz = zone(ws.config.timezone)
    local = at.astimezone(tz)
    first_of_month = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    ends: list[tuple[str, datetime]] = [(first_of_month.strftime("%Y-%m"), at.astimezone(UTC))]
    for back in range(1, months):
        start = first_of_month - relativedelta(months=back)
        end = (start + relativedelta(months=1)).replace(tzinfo=tz)
        ends.append((start.strftime("%Y-%m"), end.astimezone(UTC)))
    return list(reversed(ends))


def lifecycle_report(con: Queries, ws: Workspace, at: datetime, months: int = 12) -> dict[str, Any]:
    """Stage counts, flows and churn per month; ``con`` (DuckDB, or Spark's queries) reads ``contacts``
    (the contact ids) and the ledger's entries and events."""
    ends = month_ends(ws, at, months)
    months_sql = []
    for index, (label, instant) in enumerate(ends):
        table = traits.compute(con, ws, instant)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _dm_stages_{index} AS SELECT contact_id, lifecycle_stage FROM {table}"
        )
        months_sql.append(
            f"SELECT {quote_literal(label)} AS month, contact_id, lifecycle_stage AS stage FROM _dm_stages_{index}"
        )
    con.execute("CREATE OR REPLACE TEMP TABLE _dm_stages AS " + " UNION ALL ".join(months_sql))
    counts = {label: dict.fromkeys(traits.STAGES, 0) for label, _ in ends}
    for month, stage, n in con.execute("SELECT month, stage, count(*) FROM _dm_stages GROUP BY ALL").fetchall():
        counts[month][stage] = int(n)
    labels = [label for label, _ in ends]
    flows: list[dict[str, Any]] = []
    churn: list[dict[str, Any]] = []
    for before, after in itertools.pairwise(labels):
        rows = con.execute(
            """SELECT a.stage AS from_stage, b.stage AS to_stage, count(*) AS contacts
               FROM _dm_stages a JOIN _dm_stages b USING (contact_id)
               WHERE a.month = $a AND b.month = $b AND a.stage <> b.stage
               GROUP BY a.stage, b.stage ORDER BY contacts DESC, from_stage, to_stage""",
            {"a": before, "b": after},
        ).fetchall()
        moves = {(f, t): int(n) for f, t, n in rows}
        base = sum(counts[before][s] for s in CUSTOMERS)
        churned = sum(n for (f, t), n in moves.items() if t == "churned" and f in CUSTOMERS)
        flows.append(
            {
                "from_month": before,
                "to_month": after,
                "won_back": sum(n for (f, t), n in moves.items() if f == "at_risk" and t in ("active", "reactivated")),
                "reactivated_from_churned": moves.get(("churned", "reactivated"), 0),
                "slipped": sum(
                    n for (f, t), n in moves.items() if f in ("new", "active", "reactivated") and t == "at_risk"
                ),
                "moves": [{"from": f, "to": t, "contacts": n} for (f, t), n in moves.items()],
            }
        )
        churn.append(
            {"month": after, "customers_before": base, "churned": churned, "rate": churned / base if base else None}
        )
    return {
        "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "stages": list(traits.STAGES),
        "months": [{"month": label, "counts": counts[label]} for label in labels],
        "flows": flows,
        "churn": churn,
        "definitions": {
            "churn_rate": CHURN_DEFINITION,
            "month_end": "stages as of the first instant of the next month in the workspace time zone; "
            "the current month as of --at",
            "lifecycle": dict(ws.config.lifecycle.model_dump()),
        },
    }
