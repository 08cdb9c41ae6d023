"""The SQL dmops generates for each engine (dmops.dialect) gives the same answers on DuckDB and on a real
Apache Spark (local[2], bound to loopback), starting with the hash split of SPEC §4."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

from dmops.dialect import ENGINES, hash15_sql, to_engine
from dmops.plan import HASH_SPACE, hash_thresholds
from tests.planning import write
from tests.spark_cluster import session

pyspark = pytest.importorskip("pyspark", reason="pip install 'dmops[spark]'")

# ids a contact list holds: padded numbers, prefixed ids, non-ASCII, quotes, spaces
IDS = [f"{i:06d}" for i in range(0, 3000, 7)] + ["c-1", "用户42", "o'brien", " padded ", "Ünïcode", "a,b", ""]


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real local Spark session, every socket on 127.0.0.1, no web UI, UTC."""
    running = session("local[2]", tmp_path_factory.mktemp("spark"))
    try:
        yield running
    finally:
        running.stop()


def both(spark, ids: list[str]) -> duckdb.DuckDBPyConnection:
    """The table ``ids`` (one column, contact_id) on a DuckDB connection and as a Spark view."""
    con = duckdb.connect()
    con.execute("CREATE TABLE ids AS SELECT unnest($ids::VARCHAR[]) AS contact_id", {"ids": ids})
    spark.createDataFrame([(i,) for i in ids], "contact_id string").createOrReplaceTempView("ids")
    return con


def test_the_hash_is_the_same_on_both_engines(spark) -> None:
    key = "'promo' || ':' || contact_id"
    con = both(spark, IDS)
    on_duckdb = dict(con.execute(f"SELECT contact_id, {hash15_sql(key, 'duckdb')} FROM ids").fetchall())
    on_spark = {r[0]: r[1] for r in spark.sql(f"SELECT contact_id, {hash15_sql(key, 'spark')} FROM ids").collect()}
    assert on_spark == on_duckdb
    # and both are SPEC §4's definition, computed here in Python
    import hashlib

    assert on_duckdb == {i: int(hashlib.md5(f"promo:{i}".encode()).hexdigest()[:15], 16) for i in IDS}
    assert max(on_duckdb.values()) < HASH_SPACE


def test_the_split_on_spark_is_the_plans_split(tmp_path: Path, spark, cli) -> None:
    """The holdout and variant each contact gets, computed on Spark from the generated SQL, are the ones
    `dmops plan --out` writes."""
    ids = [i for i in IDS if i and i == i.strip() and "," not in i]  # ids a contact list keeps as they are
    both(spark, ids)
    contacts = "contact_id,email,email_opt_in\n" + "".join(f"{i},u{n}@example.com,yes\n" for n, i in enumerate(ids))
    campaign = (
        'id: promo\nname: Promo\nchannel: email\nsender: {from: "Shop <news@shop.example.com>"}\n'
        'unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"\nholdout: 0.1\n'
        "variants:\n  - {id: a, weight: 2, subject: S, text: T}\n  - {id: b, weight: 1, subject: S, text: T}\n"
    )
    root = write(
        tmp_path / "ws",
        {
            "dmops.yaml": "version: 1\ntimezone: UTC\ncontacts: contacts.csv\nconsent: {email: email_opt_in}\n",
            "contacts.csv": contacts,
            "campaigns/promo.yaml": campaign,
        },
    )
    out = tmp_path / "plan.csv"
    assert cli("-w", root, "plan", "promo", "--at", "2026-12-01T10:00", "--out", out).exit_code == 0
    import csv

    planned = {r["contact_id"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    hold, bounds = hash_thresholds(0.1, [2, 1])
    split = f"""SELECT contact_id,
                       CASE WHEN h < {hold} THEN 'holdout' WHEN h < {bounds[0]} THEN 'a' ELSE 'b' END AS cell
                FROM (SELECT contact_id, {hash15_sql("'promo' || ':' || contact_id", "spark")} AS h FROM ids)"""
    cells = {r[0]: r[1] for r in spark.sql(split).collect()}
    expected = {i: ("holdout" if r["reason"] == "holdout" else r["variant"]) for i, r in planned.items()}
    assert len(expected) == len(ids) and {i: cells[i] for i in expected} == expected
    assert set(expected.values()) == {"holdout", "a", "b"}


def test_generated_sql_runs_on_spark(spark) -> None:
    """SQLGlot carries DuckDB's spelling of the everyday functions over (list_contains, regexp_matches,
    QUALIFY); what it cannot carry is filled in dmops.dialect."""
    sql = """SELECT contact_id, list_contains(['a', 'b'], lower(contact_id)) AS listed,
                    regexp_matches(contact_id, '^[0-9]+$') AS numeric
             FROM ids QUALIFY row_number() OVER (PARTITION BY length(contact_id) ORDER BY contact_id) = 1"""
    con = both(spark, IDS)
    on_duckdb = sorted(con.execute(sql).fetchall())
    on_spark = sorted(tuple(r) for r in spark.sql(to_engine(sql, "spark")).collect())
    assert on_spark == on_duckdb
    assert to_engine(sql, "duckdb") == sql
    assert ENGINES == ("duckdb", "spark")


ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Shanghai", "America/Sao_Paulo", "UTC"]


def test_a_local_time_is_read_by_the_specs_rule_on_both_engines(spark) -> None:
    """SPEC §6: a time in a DST gap moves forward by the gap, an ambiguous one takes its first occurrence
    (schedule.local_to_utc, Python's fold=0). DuckDB's timezone() alone takes the second occurrence."""
    from dmops.dialect import local_to_utc_sql, overlap_join_sql, overlaps, overlaps_table
    from dmops.schedule import local_to_utc

    cases: list[tuple[str, datetime]] = []
    for zone in ZONES:
        for start, end, _ in overlaps(zone, 2020, 2027):
            cases += [(zone, start), (zone, start + (end - start) / 2), (zone, end - timedelta(seconds=1)), (zone, end)]
            gap = end + timedelta(days=150)  # around the spring change: some of these fall in its gap
            cases += [(zone, gap.replace(hour=h, minute=30)) for h in (0, 1, 2, 3)]
        cases.append((zone, datetime(2026, 12, 1, 10, 0)))
    expected = [local_to_utc(local, ZoneInfo(zone)).replace(tzinfo=None) for zone, local in cases]

    con = duckdb.connect()
    con.execute("CREATE TABLE local (zone VARCHAR, t TIMESTAMP)")
    con.executemany("INSERT INTO local VALUES (?, ?)", cases)
    on_duckdb = []
    for zone in ZONES:  # the overlaps table is one zone's: the workspace's
        overlaps_table(con, zone)
        on_duckdb += con.execute(
            f"SELECT zone, t, {local_to_utc_sql('t', 'zone')} FROM local {overlap_join_sql('t')} WHERE zone = $z",
            {"z": zone},
        ).fetchall()
    plain = [r[0] for r in con.execute("SELECT timezone(zone, t) AT TIME ZONE 'UTC' FROM local").fetchall()]
    assert sum(p != e for p, e in zip(plain, expected, strict=True)) >= 40  # the overlaps timezone() alone misreads
    spark.createDataFrame([(z, t) for z, t in cases], "zone string, t timestamp_ntz").createOrReplaceTempView("local")
    on_spark = spark.sql(f"SELECT {local_to_utc_sql('t', 'zone', 'spark')} FROM local").collect()
    by_case = {(z, t): u for z, t, u in on_duckdb}
    assert [by_case[c] for c in cases] == expected
    assert [r[0] for r in on_spark] == expected


def test_events_import_reads_an_ambiguous_local_time_as_its_first_occurrence(tmp_path: Path, cli) -> None:
    """The night New York's clocks go back, 01:30 happens at 05:30 and at 06:30 UTC: the first one."""
    from tests.test_report import CAMPAIGN, CONTACTS

    root = write(
        tmp_path / "ws",
        {
            "dmops.yaml": "version: 1\ntimezone: America/New_York\ncontacts: contacts.csv\n",
            "contacts.csv": CONTACTS,
            "campaigns/promo.yaml": CAMPAIGN,
            "ev.csv": "event,ts,contact_id,revenue\nconversion,2026-11-01 01:30:00,c1,5\n",
        },
    )
    assert cli("-w", root, "events", "import", root / "ev.csv").exit_code == 0
    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    assert con.execute("SELECT ts FROM events").fetchall()[0][0].isoformat() == "2026-11-01T05:30:00"
    con.close()
