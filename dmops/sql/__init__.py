"""The fixed queries, kept as package data: one ``.sql`` file per query, every input bound as ``$name``.

Queries that are the same for every campaign live here, where they read as SQL (and an editor
highlights them); SQL generated per campaign (audience expressions, caps, compiled templates) is
built in Python through :func:`dmops.db.quote_ident` and :func:`dmops.db.quote_literal`. The
ledger is read through the views :func:`dmops.ledger.attach` creates (``ledger_entries``,
``ledger_events``, ``ledger_suppressions``, ``ledger_decisions``), so no query spells the attached
database's name. The funnel's reasons and the address key are defined here too, beside the queries that
use them, for the modules that plan, record and report.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

# The reasons of plan_rows.sql, in the funnel's order (SPEC §6): the first that applies is reported.
REASONS = (
    "invalid_address",
    "no_consent",
    "suppressed",
    "duplicate_address",
    "already_sent",
    "frequency_cap",
    "holdout",
    "no_variant",
)


def address_key_sql(channel: str, address: str) -> str:
    """SQL: the key one person's address is known by, over SQL expressions for a channel and its normalised
    address (E.164 phone, trimmed handle, email compared case-insensitively): duplicates share it, and the
    ledger keeps its SHA-256 for every message and holdout."""
    return f"CASE WHEN {channel} = 'email' THEN lower({address}) ELSE {address} END"


@cache
def query(name: str) -> str:
    """The text of ``dmops/sql/<name>.sql``."""
    return resources.files(__name__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
