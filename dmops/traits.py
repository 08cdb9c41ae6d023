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

from dmops.db import Queries, quote_ident
from dmops.sql import query
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


def compute(con: Queries, ws: Workspace, at: datetime) -> str:
    """``_dm_traits``: every trait for each contact id of ``contacts`` as of ``at``; the table name. ``con``:
    a DuckDB connection, or Spark's queries (the lifecycle report)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dm_traits AS " + query("traits"),
        {"at": naive_utc(at), "day_us": DAY_US, **windows(ws)},
    )
    return "_dm_traits"


def add_to_contacts(con: duckdb.DuckDBPyConnection, ws: Workspace, at: datetime | None) -> list[str]:
    """Add the traits the contacts file does not itself have as columns of ``contacts``; their names.

    With ``at`` None the columns are typed NULLs (enough to check expressions and templates).
    """
    from dmops.contacts import replace_contacts

    present = {row[0].lower() for row in con.execute("SELECT column_name FROM (DESCRIBE contacts)").fetchall()}
    names = [name for name in TRAITS if name not in present]
    if not names:
        return []
    if at is None:
        added = ", ".join(f"CAST(NULL AS {TRAITS[n]}) AS {quote_ident(n)}" for n in names)
        replace_contacts(con, f"SELECT *, {added} FROM contacts")
        return names
    compute(con, ws, at)
    added = ", ".join(f"t.{quote_ident(n)}" for n in names)
    replace_contacts(con, f"SELECT c.*, {added} FROM contacts c LEFT JOIN _dm_traits t USING (contact_id)")
    con.execute("DROP TABLE _dm_traits")
    return names
