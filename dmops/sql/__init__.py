"""The fixed queries, kept as package data: one ``.sql`` file per query, every input bound as ``$name``.

Queries that are the same for every campaign live here, where they read as SQL (and an editor
highlights them); SQL generated per campaign (audience expressions, caps, compiled templates) is
built in Python through :func:`dmops.db.quote_ident` and :func:`dmops.db.quote_literal`. The
ledger is read through the views :func:`dmops.ledger.attach` creates (``ledger_entries``,
``ledger_events``, ``ledger_suppressions``), so no query spells the attached database's name.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def query(name: str) -> str:
    """The text of ``dmops/sql/<name>.sql``."""
    return resources.files(__name__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
