"""Computed traits: per-contact facts derived in DuckDB from the ledger and imported events, as of an instant.

A trait is available to audience ``where`` expressions and templates exactly
like a contact column (a column of the contacts file with the same name wins).
Every trait is computed from events with ``ts <= at`` and ledger messages
planned at or before ``at``, so a plan for a past ``--at`` sees the history as
it was then. Definitions (``age(x)`` is ``at - x``):

``first_conversion_at`` / ``last_conversion_at``
    the first / last conversion event (UTC); NULL without one.
``conversions_90d`` / ``conversions_365d``
    conversions with ``age(ts) <= 90 days`` / ``<= 365 days``; 0 without one.
``revenue_365d``
    the revenue of the conversions with ``age(ts) <= 365 days``; 0 without one.
``recency_days``
    whole days since the last conversion (``floor(age / 1 day)``); NULL without one.
``r_score`` / ``f_score`` / ``m_score``
    quintiles 1 to 5 among the contacts with ``conversions_365d > 0``,
    of recency (more recent scores higher), ``conversions_365d`` and
    ``revenue_365d``: ``1 + floor(5 * (rank - 1) / n)`` where ``rank`` is the
    contact's rank in ascending order (ties share the lowest rank, so equal
    values get equal scores) and ``n`` the number of scored contacts; NULL for
    the others.
``lifecycle_stage``
    with the windows of ``dmops.yaml`` ``lifecycle`` (defaults 30d, 90d, 180d),
    the first that applies of: ``prospect`` (never converted); ``new`` (first
    conversion ``age <= new_within``); ``reactivated`` (last conversion
    ``age <= active_within``, and some conversion within ``active_within``
    came more than ``churned_after`` after the conversion before it);
    ``active`` (last conversion ``age <= active_within``); ``at_risk`` (last
    conversion ``active_within < age <= churned_after``); ``churned`` (older).
``messages_30d``
    marketing messages dmops wrote to the contact, planned in ``[at - 30 days, at]``.
``last_open_at``
    the last open event (UTC); NULL without one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta

import duckdb

from dmops import ledger
from dmops.db import quote_ident
from dmops.timeutil import naive_utc
from dmops.workspace import Workspace

DAY_US = 86_400_000_000
TRAITS: dict[str, str] = {
    "first_conversion_at": "TIMESTAMP",
    "last_conversion_at": "TIMESTAMP",
    "conversions_90d": "BIGINT",
    "conversions_365d": "BIGINT",
    "revenue_365d": "DOUBLE",
    "recency_days": "BIGINT",
    "r_score": "BIGINT",
    "f_score": "BIGINT",
    "m_score": "BIGINT",
    "lifecycle_stage": "VARCHAR",
    "messages_30d": "BIGINT",
    "last_open_at": "TIMESTAMP",
}
STAGES = ("prospect", "new", "active", "reactivated", "at_risk", "churned")

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def mentioned(texts: Iterable[str]) -> set[str]:
    """Trait names that occur as words in ``texts`` (expressions, template sources)."""
    words: set[str] = set()
    for text in texts:
        words.update(_WORD.findall(text))
    return words & set(TRAITS)


def windows(ws: Workspace) -> dict[str, int]:
    """The lifecycle windows in microseconds."""
    config = ws.config.lifecycle
    return {
        "new_us": _us(config.new_window),
        "active_us": _us(config.active_window),
        "churned_us": _us(config.churned_window),
    }


def _us(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


TRAITS_SQL = f"""
WITH conv AS (
    SELECT contact_id, ts, revenue, epoch_us(ts) - epoch_us(lag(ts) OVER (PARTITION BY contact_id ORDER BY ts)) AS gap
    FROM {ledger.ALIAS}.events
    WHERE event = 'conversion' AND contact_id IS NOT NULL AND ts <= $at
),
agg AS (
    SELECT contact_id, min(ts) AS first_conversion_at, max(ts) AS last_conversion_at,
           count(*) FILTER (WHERE epoch_us($at) - epoch_us(ts) <= 90 * {DAY_US}) AS conversions_90d,
           count(*) FILTER (WHERE epoch_us($at) - epoch_us(ts) <= 365 * {DAY_US}) AS conversions_365d,
           coalesce(sum(revenue) FILTER (WHERE epoch_us($at) - epoch_us(ts) <= 365 * {DAY_US}), 0) AS revenue_365d,
           max(ts) FILTER (WHERE gap > $churned_us) AS reactivated_at
    FROM conv GROUP BY contact_id
),
aged AS (
    SELECT *, (epoch_us($at) - epoch_us(last_conversion_at)) // {DAY_US} AS recency_days FROM agg
),
scored AS (
    SELECT contact_id,
           1 + (5 * (rank() OVER (ORDER BY recency_days DESC) - 1)) // count(*) OVER () AS r_score,
           1 + (5 * (rank() OVER (ORDER BY conversions_365d) - 1)) // count(*) OVER () AS f_score,
           1 + (5 * (rank() OVER (ORDER BY revenue_365d) - 1)) // count(*) OVER () AS m_score
    FROM aged WHERE conversions_365d > 0
),
opens AS (
    SELECT contact_id, max(ts) AS last_open_at FROM {ledger.ALIAS}.events
    WHERE event = 'open' AND contact_id IS NOT NULL AND ts <= $at GROUP BY contact_id
),
messages AS (
    SELECT contact_id, count(*) AS messages_30d FROM {ledger.ALIAS}.entries
    WHERE kind = 'message' AND purpose = 'marketing' AND planned_at <= $at
      AND epoch_us($at) - epoch_us(planned_at) <= 30 * {DAY_US}
    GROUP BY contact_id
)
SELECT c.contact_id, a.first_conversion_at, a.last_conversion_at,
       coalesce(a.conversions_90d, 0) AS conversions_90d, coalesce(a.conversions_365d, 0) AS conversions_365d,
       CAST(coalesce(a.revenue_365d, 0) AS DOUBLE) AS revenue_365d, CAST(a.recency_days AS BIGINT) AS recency_days,
       CAST(s.r_score AS BIGINT) AS r_score, CAST(s.f_score AS BIGINT) AS f_score, CAST(s.m_score AS BIGINT) AS m_score,
       CASE WHEN a.contact_id IS NULL THEN 'prospect'
            WHEN epoch_us($at) - epoch_us(a.first_conversion_at) <= $new_us THEN 'new'
            WHEN epoch_us($at) - epoch_us(a.last_conversion_at) <= $active_us
                 AND epoch_us($at) - epoch_us(a.reactivated_at) <= $active_us THEN 'reactivated'
            WHEN epoch_us($at) - epoch_us(a.last_conversion_at) <= $active_us THEN 'active'
            WHEN epoch_us($at) - epoch_us(a.last_conversion_at) <= $churned_us THEN 'at_risk'
            ELSE 'churned' END AS lifecycle_stage,
       coalesce(m.messages_30d, 0) AS messages_30d, o.last_open_at
FROM (SELECT DISTINCT contact_id FROM {{source}}) c
LEFT JOIN aged a USING (contact_id) LEFT JOIN scored s USING (contact_id)
LEFT JOIN opens o USING (contact_id) LEFT JOIN messages m USING (contact_id)
"""


def compute(con: duckdb.DuckDBPyConnection, ws: Workspace, at: datetime, source: str = "contacts") -> str:
    """``_dm_traits``: every trait for each contact id of ``source`` as of ``at``; the table name."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dm_traits AS " + TRAITS_SQL.replace("{source}", source),
        {"at": naive_utc(at), **windows(ws)},
    )
    return "_dm_traits"


def add_to_contacts(con: duckdb.DuckDBPyConnection, ws: Workspace, at: datetime | None) -> list[str]:
    """Add the traits the contacts file does not itself have as columns of ``contacts``; their names.

    With ``at`` None the columns are typed NULLs (enough to check expressions and templates).
    """
    present = {row[0].lower() for row in con.execute("SELECT column_name FROM (DESCRIBE contacts)").fetchall()}
    names = [name for name in TRAITS if name not in present]
    if not names:
        return []
    if at is None:
        added = ", ".join(f"CAST(NULL AS {TRAITS[n]}) AS {quote_ident(n)}" for n in names)
        con.execute(f"CREATE OR REPLACE TEMP TABLE contacts AS SELECT *, {added} FROM contacts")
        return names
    compute(con, ws, at)
    added = ", ".join(f"t.{quote_ident(n)}" for n in names)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE contacts AS
            SELECT c.*, {added} FROM contacts c LEFT JOIN _dm_traits t USING (contact_id)"""
    )
    con.execute("DROP TABLE _dm_traits")
    return names
