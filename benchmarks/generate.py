"""Seeded benchmark data: a workspace with N contacts, an opt-out file and an M-row ledger.

    python benchmarks/generate.py DIR --contacts 1000000 --ledger 10000000

Everything is generated inside DuckDB from fixed seeds, so the same arguments
give the same data. The workspace has the full funnel on: consent, a
suppression file, two caps, a campaign with two variants and a holdout and a
template with an ``if`` block and filters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import duckdb

WORKSPACE = """\
version: 1
timezone: Asia/Shanghai
contacts: contacts.parquet
suppressions: [optouts.csv]
consent: {email: email_opt_in, sms: sms_opt_in}
caps:
  - {max: 1, per: 1d}
  - {max: 3, per: 7d}
quiet_hours: {start: "21:00", end: "08:00"}
phone_region: CN
"""

CAMPAIGN = """\
id: bench
name: Benchmark campaign
channel: email
audience:
  where: "tier IN ('gold', 'silver', 'bronze') AND orders >= 0"
send_at: "2026-12-01 10:00"
local_time: true
sender: {from: "Shop <news@shop.example.com>"}
unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"
variants:
  - id: a
    weight: 1
    subject: "{{ first_name | default('Hi there') | title }}, we miss you"
    text: |
      Hi {{ first_name | default('there') }},
      {% if tier == 'gold' %}As a gold member you get 25% off.{% else %}Here is 15% off.{% endif %}
      Shop: https://shop.example.com/?c={{ campaign }}&v={{ variant }}
      Unsubscribe: {{ unsubscribe_url }}
  - id: b
    weight: 1
    subject: "A gift for you, {{ first_name | default('friend') | upper }}"
    text: |
      {{ first_name | default('Hello') }}, your {{ tier }} voucher is waiting.
      Unsubscribe: {{ unsubscribe_url }}
holdout: 0.1
"""

ZONES = ["Asia/Shanghai", "Asia/Hong_Kong", "Asia/Tokyo", "Europe/London", "America/New_York", "", "EST"]


def generate(out: Path, contacts: int, ledger_rows: int, contacts_format: str = "parquet") -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "campaigns").mkdir(exist_ok=True)
    workspace = WORKSPACE if contacts_format == "parquet" else WORKSPACE.replace("contacts.parquet", "contacts.csv")
    (out / "dmops.yaml").write_text(workspace)
    (out / "campaigns" / "bench.yaml").write_text(CAMPAIGN)
    con = duckdb.connect()
    con.execute("SELECT setseed(0.42)")
    con.execute(
        """
        CREATE TABLE c AS
        SELECT lpad(CAST(i AS VARCHAR), 8, '0') AS contact_id,
               CASE WHEN hash(i, 1) % 17 = 0 THEN NULL ELSE 'name' || (hash(i, 2) % 5000) END AS first_name,
               CASE WHEN hash(i, 3) % 50 = 0 THEN 'broken' || i ELSE 'user' || i || '@example.com' END AS email,
               CASE WHEN hash(i, 4) % 2 = 0 THEN '+86138' || lpad(CAST(i % 100000000 AS VARCHAR), 8, '0')
                    ELSE '139' || lpad(CAST(i % 100000000 AS VARCHAR), 8, '0') END AS phone,
               ($zones)[CAST(1 + hash(i, 5) % $nz AS BIGINT)] AS timezone,
               CASE WHEN hash(i, 6) % 5 = 0 THEN 'no' ELSE 'yes' END AS email_opt_in,
               CASE WHEN hash(i, 7) % 3 = 0 THEN 'no' ELSE 'yes' END AS sms_opt_in,
               (['gold', 'silver', 'bronze'])[CAST(1 + hash(i, 8) % 3 AS BIGINT)] AS tier,
               CAST(hash(i, 9) % 20 AS BIGINT) AS orders
        FROM range(1, $n + 1) r(i)
        """,
        {"n": contacts, "zones": ZONES, "nz": len(ZONES)},
    )
    if contacts_format == "parquet":
        con.execute(f"COPY c TO '{out / 'contacts.parquet'}' (FORMAT parquet)")
    else:
        con.execute(f"COPY c TO '{out / 'contacts.csv'}' (FORMAT csv, HEADER true)")
    con.execute(
        f"""COPY (SELECT contact_id, NULL AS address, NULL AS channel, 'unsubscribe' AS reason
                  FROM c WHERE hash(contact_id, 10) % 40 = 0
                  UNION ALL
                  SELECT NULL, email, 'email', 'bounce' FROM c WHERE hash(contact_id, 11) % 100 = 0)
            TO '{out / "optouts.csv"}' (FORMAT csv, HEADER true)"""
    )
    state = out / ".dmops"
    state.mkdir(exist_ok=True)
    ledger = duckdb.connect(str(state / "ledger.duckdb"))
    from dmops.ledger import SCHEMA_VERSION
    from dmops.sql import query

    ledger.execute(query("ledger_schema"))
    ledger.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', $v)", {"v": SCHEMA_VERSION})
    ledger.execute(
        """
        INSERT INTO entries (campaign_id, occurrence, contact_id, kind, channel, purpose, variant, planned_at,
                             message_id, run_id, recorded_at)
        SELECT 'past-' || (i % 200), 'once', lpad(CAST(1 + hash(i, 20) % $n AS VARCHAR), 8, '0'),
               CASE WHEN i % 10 = 0 THEN 'holdout' ELSE 'message' END,
               (['email', 'sms'])[CAST(1 + i % 2 AS BIGINT)], CASE WHEN i % 7 = 0 THEN 'transactional' ELSE 'marketing' END,
               CASE WHEN i % 10 = 0 THEN NULL ELSE 'a' END,
               TIMESTAMP '2026-12-01 02:00:00' - to_seconds(CAST(hash(i, 21) % (180 * 86400) AS BIGINT)),
               'm' || i, 'seed', NULL
        FROM range($m) r(i)
        """,
        {"n": contacts, "m": ledger_rows},
    )
    ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--ledger", type=int, default=10_000_000)
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    args = parser.parse_args()
    generate(args.out, args.contacts, args.ledger, args.format)


if __name__ == "__main__":
    main()
