"""Suppressions from every source, normalised for matching (SPEC §5).

Sources: the workspace's suppression files, and the ledger's suppressions
(imported unsubscribes, complaints and hard bounces, erasure tombstones).
:func:`load_suppressions` builds the temp table ``suppressions_all``:

``contact_id``, ``email_key`` (trimmed, lower-cased), ``phone_key`` (E.164),
``dm_key`` (trimmed handle) — the ways a row can match a contact — plus
``channel`` (NULL = every channel), ``reason``, ``source`` and ``line``.

An address with ``@`` is an email; one that parses as a phone (in the
workspace's ``phone_region`` when it has no ``+``) is a phone; anything else
is a DM handle matched exactly.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from dmops.addresses import phone_table
from dmops.db import quote_list
from dmops.errors import DataError, MissingInputError
from dmops.tabular import lines_where, raise_all, read_table
from dmops.workspace import Workspace

REASONS = ("unsubscribe", "bounce", "complaint", "manual")
CHANNEL_VALUES = ("email", "sms", "dm")


def missing_files(ws: Workspace) -> list[MissingInputError]:
    """One error per listed suppression file that does not exist, naming its key in dmops.yaml (exit 66)."""
    return [
        MissingInputError(
            f"suppression file '{ws.config.suppressions[index]}' not found",
            file=ws.file,
            line=ws.line_of("suppressions", index),
            key=f"suppressions[{index}]",
            hint="a listed suppression file must exist; it is never treated as empty",
        )
        for index, path in enumerate(ws.suppression_paths)
        if not path.is_file()
    ]


def _load_file(con: duckdb.DuckDBPyConnection, ws: Workspace, path: Path) -> None:
    names = {n.lower(): n for n in read_table(con, path, "_dm_sup_raw", "suppression")}
    if "contact_id" not in names and "address" not in names:
        raise DataError(
            "a suppression file needs a contact_id or an address column",
            file=path,
            line=1,
            hint="columns: contact_id or address, optional channel, reason, ts",
        )

    def col(name: str) -> str:
        return f"nullif(trim(CAST({names[name]} AS VARCHAR)), '')" if name in names else "CAST(NULL AS VARCHAR)"

    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW _dm_sup_view AS
            SELECT {col("contact_id")} AS contact_id, {col("address")} AS address,
                   lower({col("channel")}) AS channel, coalesce(lower({col("reason")}), 'unsubscribe') AS reason,
                   _dm_line
            FROM _dm_sup_raw"""
    )
    checks = [
        ("contact_id IS NULL AND address IS NULL", "the row has neither contact_id nor address", "contact_id"),
        (
            f"channel IS NOT NULL AND channel NOT IN {quote_list(CHANNEL_VALUES)}",
            "channel must be email, sms, dm or blank",
            "channel",
        ),
        (
            f"reason NOT IN {quote_list(REASONS)}",
            "reason must be unsubscribe, bounce, complaint, manual or blank",
            "reason",
        ),
    ]
    found = [
        (line, message, key)
        for condition, message, key in checks
        for line in lines_where(con, "_dm_sup_view", condition)
    ]
    raise_all([DataError(message, file=path, line=line, key=key) for line, message, key in sorted(found)])
    con.execute(
        "INSERT INTO _dm_sup_rows SELECT contact_id, address, channel, reason, $source, _dm_line FROM _dm_sup_view",
        {"source": str(path.relative_to(ws.root))},  # always inside: see load_workspace,
    )
    con.execute("DROP VIEW _dm_sup_view; DROP TABLE _dm_sup_raw")


def _tombstones(con: duckdb.DuckDBPyConnection, ws: Workspace) -> None:
    """The contacts an erasure tombstone (SPEC §12) matches — by the keyed hash of their id or of one of
    their normalised addresses — as suppressions of every channel, reason ``erasure``."""
    from dmops.ledger import ALIAS, has_tombstones
    from dmops.secret import subject_key_sql, tombstone_secret
    from dmops.sqlrender import hmac_pads

    if not has_tombstones(con):
        return
    ipad, opad = hmac_pads(tombstone_secret(ws))
    keys = " UNION ALL ".join(
        f"SELECT contact_id, {subject_key_sql(kind, column)} AS subject FROM contact_channels"
        f" WHERE {column} IS NOT NULL"
        for kind, column in (
            ("contact_id", "contact_id"),
            ("email", "email_key"),
            ("phone", "phone"),
            ("dm", "dm_handle"),
        )
    )
    con.execute(
        f"""INSERT INTO _dm_sup_rows
            SELECT k.contact_id, NULL, NULL, 'erasure', 'erased on ' || strftime(min(e.erased_at), '%Y-%m-%d'), NULL
            FROM ({keys}) k JOIN {ALIAS}.erasures e USING (subject) GROUP BY k.contact_id""",
        {"ipad": ipad, "opad": opad},
    )


def load_suppressions(con: duckdb.DuckDBPyConnection, ws: Workspace) -> int:
    """Build ``suppressions_all`` from the files and ``ledger_suppressions``; the number of rows."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _dm_sup_rows (
               contact_id VARCHAR, address VARCHAR, channel VARCHAR, reason VARCHAR, source VARCHAR, line BIGINT)"""
    )
    from dmops.forget import check_not_pending

    check_not_pending(ws)  # an unfinished erasure: the person is not protected yet
    raise_all(list(missing_files(ws)))
    for path in ws.suppression_paths:
        _load_file(con, ws, path)
    con.execute(
        """INSERT INTO _dm_sup_rows
           SELECT contact_id, nullif(trim(address), ''), channel, reason, source, NULL FROM ledger_suppressions"""
    )
    _tombstones(con, ws)
    region = ws.config.phone_region
    phone_table(con, "_dm_sup_phones", "SELECT address FROM _dm_sup_rows WHERE NOT contains(address, '@')", region)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE suppressions_all AS
        SELECT r.contact_id,
               CASE WHEN contains(r.address, '@') THEN lower(trim(r.address, ' \t')) END AS email_key,
               p.norm AS phone_key,
               CASE WHEN NOT contains(r.address, '@') AND p.norm IS NULL THEN r.address END AS dm_key,
               r.channel, r.reason, r.source, r.line
        FROM _dm_sup_rows r LEFT JOIN _dm_sup_phones p ON p.raw = r.address
        """
    )
    con.execute("DROP TABLE _dm_sup_rows; DROP TABLE _dm_sup_phones")
    row = con.execute("SELECT count(*) FROM suppressions_all").fetchone()
    return int(row[0]) if row else 0
