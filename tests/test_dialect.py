"""The SQL dmops generates for each engine (dmops.dialect) gives the same answers on DuckDB and on a real
Apache Spark (local[2], bound to loopback), starting with the hash split of SPEC §4."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

from dmops.dialect import ENGINES, hash15_sql, to_engine
from dmops.plan import HASH_SPACE, hash_thresholds
from tests.planning import dead_pid, write
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


FUNNEL_WORKSPACE = {
    "dmops.yaml": (
        "version: 1\ntimezone: Asia/Shanghai\ncontacts: contacts.csv\nsuppressions: [optouts.csv]\n"
        "consent: {email: email_opt_in}\ncaps:\n  - {max: 1, per: 1d}\n"
    ),
    "contacts.csv": "contact_id,email,email_opt_in,timezone\n"
    + "".join(
        f"{i},{'not-an-address' if n % 11 == 0 else f'p{n % 97}@example.com'},{'no' if n % 7 == 0 else 'yes'},"
        f"{['Europe/London', 'America/New_York', ''][n % 3]}\n"
        for n, i in enumerate([f"c{n:04d}" for n in range(400)] + ["=cmd", "+1", "@x", "-2", "用户"])
    ),
    "optouts.csv": "contact_id,address\nc0003,\n,P5@Example.com\nc0100,\n",
    "campaigns/promo.yaml": (
        'id: promo\nname: Promo\nchannel: email\nsender: {from: "Shop <news@shop.example.com>"}\n'
        'unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"\nholdout: 0.15\n'
        "send_time: '09:00'\nlocal_time: true\n"
        "variants:\n  - {id: a, weight: 3, subject: S, text: T}\n  - {id: b, weight: 1, subject: S, text: T}\n"
    ),
}


def test_the_funnels_named_queries_give_the_same_rows_on_spark(tmp_path: Path, spark, cli) -> None:
    """plan_suppressed.sql, plan_rows.sql and plan_out.sql, run on Spark by dmops.spark over the inputs a
    real DuckDB plan built, give DuckDB's rows, and plan_out's rows are the `--out` file's."""
    import csv

    from dmops.campaign import load_campaign
    from dmops.plan import FORMULA_STARTS, build, prepare
    from dmops.spark import SparkRunner
    from dmops.sql import query
    from dmops.workspace import load_workspace
    from tests.planning import message, seed

    root = write(tmp_path / "ws", FUNNEL_WORKSPACE)
    seed(root, message("c0010", "2026-12-01 06:00:00"), message("c0006", "2026-11-20 00:30:00"))
    out = tmp_path / "plan.csv"
    assert cli("-w", root, "plan", "promo", "--at", "2026-12-01T10:00", "--out", out).exit_code == 0
    ws = load_workspace(root)
    campaign = load_campaign(root / "campaigns" / "promo.yaml", ws)
    con = prepare(ws, campaign, allowed_directories=[str(tmp_path)])
    build(con, ws, campaign, datetime(2026, 12, 1, 2, 0, tzinfo=UTC))
    runner = SparkRunner(spark, tmp_path)
    for name in ("_dm_base", "suppressions_all", "_dm_flagged"):  # the inputs, carried over as Parquet
        path = tmp_path / f"input-{name}.parquet"  # Spark skips files named _…
        con.execute(f"COPY (SELECT * FROM {name}) TO '{path}' (FORMAT parquet)")
        spark.read.parquet(str(path)).createOrReplaceTempView(name)
    params: dict[str, object] = {"channel": "email", "marketing": True}
    runner.execute(query("plan_suppressed"), params)
    suppressed = "SELECT contact_id FROM _dm_suppressed ORDER BY contact_id"
    assert (
        runner.fetchall(suppressed) == con.execute(suppressed).fetchall()
        and len(con.execute(suppressed).fetchall()) >= 3
    )
    runner.execute(query("plan_rows"), {"marketing": True})
    rows = "SELECT contact_id, reason, variant, planned_at FROM plan_rows ORDER BY contact_id"
    assert runner.fetchall(rows) == con.execute(rows).fetchall()
    csv_inputs = {"empty": None, "formula_starts": list(FORMULA_STARTS)}
    on_duckdb = con.execute(query("plan_out"), csv_inputs).fetchall()
    on_spark = runner.fetchall(query("plan_out"), csv_inputs)
    assert on_spark == on_duckdb
    with out.open(encoding="utf-8", newline="") as handle:
        written = [tuple(None if v == "" else v for v in r) for r in list(csv.reader(handle))[1:]]
    assert on_spark == written
    reasons = {r[2] for r in on_spark}
    assert {"invalid_address", "no_consent", "suppressed", "frequency_cap", "holdout", None} <= reasons
    assert {"'=cmd", "'+1", "'@x", "'-2"} <= {r[0] for r in on_spark}
    con.close()


@pytest.mark.parametrize(
    ("strftime", "java"),
    [
        ("%Y-%m-%dT%H:%M:%SZ", "yyyy-MM-dd'T'HH:mm:ss'Z'"),
        ("%Y-%m-%d %H:%M:%S.%f", "yyyy-MM-dd HH:mm:ss.SSSSSS"),
        ("at %H o'clock, 100%%", "'at 'HH' o''clock, 100%'"),
    ],
)
def test_strftime_patterns_become_javas(strftime: str, java: str) -> None:
    from dmops.dialect import java_pattern

    assert java_pattern(strftime) == java


def test_duckdbs_hash_split_and_epochs_carry_over_to_spark(spark) -> None:
    """The DuckDB spelling of the hash split and of epoch_us, written once, give the same numbers on Spark."""
    sql = f"""SELECT contact_id, {hash15_sql("'promo' || ':' || contact_id")} AS h,
                     epoch_us(TIMESTAMP '2026-03-29 01:30:00') + length(contact_id) AS us,
                     strftime(TIMESTAMP '2026-03-29 01:30:00.25', '%Y-%m-%dT%H:%M:%S.%fZ') AS iso
              FROM ids"""
    con = both(spark, IDS)
    on_spark = sorted(tuple(r) for r in spark.sql(to_engine(sql, "spark")).collect())
    assert on_spark == sorted(con.execute(sql).fetchall())
    assert on_spark[0][3] == "2026-03-29T01:30:00.250000Z"


@pytest.mark.parametrize(("campaign", "validated"), [("promo", False), ("notice", True)])
def test_plan_on_spark_writes_the_same_file_as_on_duckdb(
    tmp_path: Path, spark, cli, campaign: str, validated: bool
) -> None:
    """`engine: spark` in dmops.yaml: the funnel runs on Spark, and `plan --out` (CSV and Parquet) and the
    summary are byte for byte DuckDB's; nothing is left in the state folder. After `validate`, Spark reads
    the checked contacts snapshot where it is (SPEC §13: state as Parquet every executor reads), not a copy."""
    from tests.planning import message, seed

    notice = (
        "id: notice\nname: Notice\nchannel: email\npurpose: transactional\n"
        'sender: {from: "Shop <news@shop.example.com>"}\n'
        "audience: {where: \"contact_id >= 'c0200' OR contact_id = '用户'\"}\n"
        "variants:\n  - {id: a, subject: S, text: T}\n"
    )
    outputs = {}
    for view in spark.catalog.listTables():
        spark.catalog.dropTempView(view.name)
    for engine in ("duckdb", "spark"):
        files = {**FUNNEL_WORKSPACE, "campaigns/notice.yaml": notice}
        files["dmops.yaml"] += f"engine: {engine}\n"
        root = write(tmp_path / engine, files)
        seed(root, message("c0010", "2026-12-01 06:00:00"), message("c0006", "2026-11-20 00:30:00"))
        if validated:
            assert cli("-w", root, "validate").exit_code == 0
        (snapshot,) = (root / ".dmops").rglob("contacts-*.parquet") if validated else (None,)
        for suffix in ("csv", "parquet"):
            out = tmp_path / f"{engine}.{suffix}"
            result = cli("-w", root, "plan", campaign, "--at", "2026-12-01T10:00", "--out", out, "--format", "json")
            assert result.exit_code == 0, result.output
            outputs[engine, suffix] = (out.read_bytes(), result.stdout)
            if engine == "spark":  # where Spark read the contacts: the snapshot, or the plan's hand-over copy
                (read,) = spark.table("contacts").inputFiles()
                assert (Path(read.removeprefix("file:")) == snapshot) if validated else "/.dmops/spark/plan-" in read
        assert not (root / ".dmops" / "spark").exists()
        views = {t.name for t in spark.catalog.listTables() if t.isTemporary}
        assert ({"_dm_base", "_dm_flagged", "plan_rows"} <= views) == (engine == "spark")  # it ran there
    for suffix in ("csv", "parquet"):
        assert outputs["spark", suffix] == outputs["duckdb", suffix]
    summary = json.loads(outputs["spark", "csv"][1])
    assert summary["to_send"] > 0 and sum(summary["excluded"].values()) > 0


def test_a_snapshot_column_spark_cannot_read_does_not_stop_a_plan_that_does_not_read_it(
    tmp_path: Path, spark, cli
) -> None:
    """A Parquet contacts file keeps its own column types, so the snapshot may hold one Spark cannot read (an
    INTERVAL). Spark reads the snapshot in place, told only the columns the campaign reads: the plan is
    DuckDB's, and the column it does not read stays unread."""
    outputs = {}
    for engine in ("duckdb", "spark"):
        files = dict(FUNNEL_WORKSPACE)
        files["dmops.yaml"] = files["dmops.yaml"].replace("contacts.csv", "contacts.parquet") + f"engine: {engine}\n"
        csv_contacts = files.pop("contacts.csv")
        root = write(tmp_path / engine, {**files, "people.csv": csv_contacts})
        duckdb.sql(
            f"""COPY (SELECT *, INTERVAL 3 DAY AS since FROM read_csv('{root / "people.csv"}', all_varchar = true))
                TO '{root / "contacts.parquet"}' (FORMAT parquet)"""
        )
        assert cli("-w", root, "validate").exit_code == 0
        out = tmp_path / f"{engine}.csv"
        result = cli("-w", root, "plan", "promo", "--at", "2026-12-01T10:00", "--out", out)
        assert result.exit_code == 0, result.output
        outputs[engine] = out.read_bytes()
    (read,) = spark.table("contacts").inputFiles()
    assert "/.dmops/snapshots/contacts-" in read and "since" not in spark.table("contacts").columns
    assert outputs["spark"] == outputs["duckdb"] and outputs["duckdb"].count(b"\n") > 100


def test_a_killed_spark_plans_copies_of_the_contacts_are_removed(tmp_path: Path, spark, cli) -> None:
    """A Spark plan killed mid-way leaves its hand-over folder (the contacts as Parquet) in state_dir/spark:
    the next Spark plan, and `dmops forget`, remove the folders whose process is gone, and only those."""
    files = dict(FUNNEL_WORKSPACE)
    files["dmops.yaml"] += "engine: spark\n"
    root = write(tmp_path / "ws", files)
    hand_overs = root / ".dmops" / "spark"
    killed, running = hand_overs / f"plan-{dead_pid()}-0a1b", hand_overs / f"plan-{os.getpid()}-2c3d"
    for folder in (killed, running):
        folder.mkdir(parents=True)
        (folder / "in-contacts.parquet").write_bytes(b"c0001,p1@example.com")
    assert cli("-w", root, "plan", "promo", "--at", "2026-12-01T10:00").exit_code == 0
    assert sorted(hand_overs.iterdir()) == [running]  # this plan's own folder went too
    killed.mkdir()
    assert cli("-w", root, "forget", "c0001").exit_code == 0
    assert sorted(hand_overs.iterdir()) == [running]


def test_spark_without_pyspark_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from dmops.errors import ConfigError
    from dmops.spark import session
    from dmops.workspace import SparkEngine

    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # as if PySpark were not installed
    with pytest.raises(ConfigError) as caught:
        session(SparkEngine(kind="spark"))
    assert caught.value.exit_code == 78 and "pip install 'dmops[spark]'" in str(caught.value.hint)


# One expression per function an expression may call on Spark, over the values below.
SAME_ON_BOTH = {
    **{f: f"{f}(s)" for f in ("lower", "upper", "trim", "ltrim", "rtrim", "length", "reverse", "md5")},
    **{"substr": "substr(s, 2, 3)", "substring": "substring(s, 2, 3)", "left": "left(s, 2)", "right": "right(s, 2)"},
    **{"starts_with": "starts_with(s, 'a')", "ends_with": "ends_with(s, 'a')", "contains": "contains(s, 'b')"},
    **{"replace": "replace(s, 'b', 'x')", "instr": "instr(s, 'b')", "strpos": "strpos(s, 'b')"},
    **{
        "split_part": "split_part(s, 'b', 1)",
        "concat_ws": "concat_ws('-', s, 'z')",
        "levenshtein": "levenshtein(s, 'abd')",
    },
    **{
        "list_contains": "list_contains(['abc', ''], s)",
        "||": "s || 'x'",
        "~~": "s LIKE 'a%'",
        "!~~": "s NOT LIKE '%b%'",
    },
    **{"+": "n + 1", "-": "n - 1", "*": "n * 2", "/": "n / 2", "%": "n % 3", "mod": "mod(n, 3)", "abs": "abs(n)"},
    **{"greatest": "greatest(n, 0)", "least": "least(n, 0)", "coalesce": "coalesce(n, 0)", "ifnull": "ifnull(n, 0)"},
    **{"nullif": "nullif(n, 0)", "sign": "sign(n)", "power": "power(n, 2)", "sqrt": "sqrt(abs(x))"},
    **{"floor": "floor(x)", "ceil": "ceil(x)", "round": "round(x, 1)"},
    **{f: f"{f}(d)" for f in ("year", "month", "day", "quarter", "dayofyear", "last_day")},
    **{"hour": "hour(t)", "minute": "minute(t)", "date_part": "date_part('year', d)"},
    **{"date_diff": "date_diff('day', d, DATE '2026-12-01')", "datediff": "datediff('day', d, DATE '2026-12-01')"},
    **{"date_trunc": "date_trunc('month', d)"},
}
VALUES = [
    (1, "abc", 5, 2.5, "2026-01-31", "2026-03-29 01:30:00"),
    (2, "  Bé b ", -7, -2.5, "2024-02-29", "2026-10-25 01:30:00"),
    (3, "", 0, 0.0, "2026-12-01", "2026-12-01 00:00:00"),
    (4, None, None, None, None, None),
    (5, "用户a", 12, 1.25, "1999-12-31", "2000-01-01 23:59:59"),
]


def test_every_function_allowed_on_spark_gives_duckdbs_answers(tmp_path: Path, spark) -> None:
    from dmops.dialect import SPARK_SAME_FUNCTIONS

    assert set(SAME_ON_BOTH) == SPARK_SAME_FUNCTIONS
    con = duckdb.connect()
    con.execute("CREATE TABLE c (id INT, s VARCHAR, n BIGINT, x DOUBLE, d DATE, t TIMESTAMP)")
    con.executemany("INSERT INTO c VALUES (?, ?, ?, ?, ?, ?)", VALUES)
    con.execute(f"COPY c TO '{tmp_path / 'c.parquet'}' (FORMAT parquet)")
    spark.read.parquet(str(tmp_path / "c.parquet")).createOrReplaceTempView("c")
    differ = {}
    for name, expression in SAME_ON_BOTH.items():
        sql = f"SELECT id, {expression} FROM c ORDER BY id"
        on_duckdb = con.execute(sql).fetchall()
        on_spark = [tuple(r) for r in spark.sql(to_engine(sql, "spark")).collect()]
        if on_spark != on_duckdb:
            differ[name] = (on_duckdb, on_spark)
    assert differ == {}
    # and the reason the list exists: these differ without an error
    for expression in ("hash(s)", "dayofweek(d)"):
        sql = f"SELECT id, {expression} FROM c ORDER BY id"
        assert [tuple(r) for r in spark.sql(to_engine(sql, "spark")).collect()] != con.execute(sql).fetchall()


@pytest.mark.parametrize("where", ["hash(contact_id) % 2 = 0", "regexp_matches(contact_id, '^c00')"])
def test_an_expression_that_may_differ_on_spark_is_refused_there(tmp_path: Path, spark, cli, where: str) -> None:
    files = dict(FUNNEL_WORKSPACE)
    files["dmops.yaml"] += "engine: spark\n"
    files["campaigns/promo.yaml"] += f'audience: {{where: "{where}"}}\n'
    root = write(tmp_path / "ws", files)
    result = cli("-w", root, "plan", "promo", "--at", "2026-12-01T10:00")
    assert result.exit_code == 78
    assert "campaigns/promo.yaml:12, key 'audience.where'" in result.stderr
    assert "may not give the same answer on Spark as on DuckDB" in result.stderr
    files["dmops.yaml"] = files["dmops.yaml"].replace("engine: spark\n", "")
    assert cli("-w", write(tmp_path / "duckdb", files), "plan", "promo", "--at", "2026-12-01T10:00").exit_code == 0


def _sample_workspace(root: Path, cli, engine: str = "duckdb") -> Path:
    """A copy of the repository's sample workspace on ``engine``, with the shop's order history imported and
    a fixed secret (the same tokens and message ids in every copy)."""
    import shutil

    from tests.conftest import REPO

    root.mkdir(parents=True)
    shutil.copytree(REPO / "campaigns", root / "campaigns")
    shutil.copytree(REPO / "samples", root / "samples")
    shutil.copy(REPO / "dmops.yaml", root / "dmops.yaml")
    with (root / "dmops.yaml").open("a", encoding="utf-8") as config:
        config.write(f"\nengine: {engine}\n")
    (root / ".dmops").mkdir()
    (root / ".dmops" / "secret.key").write_bytes(b"k" * 32)
    assert cli("-w", root, "events", "import", root / "samples" / "events.csv").exit_code == 0
    return root


def message_events(root: Path) -> str:
    """An events CSV for every message in the outbox: opens, clicks, bounces, unsubscribes and conversions
    whose revenues sum to different doubles in different orders."""
    sent = sorted(
        (m["message_id"], m["contact_id"], m["send_after"])
        for f in (root / "outbox").rglob("messages.jsonl")
        for m in map(json.loads, f.read_text(encoding="utf-8").splitlines())
    )

    def later(after: str, hours: float) -> str:
        t = datetime.fromisoformat(after.replace("Z", "+00:00")).astimezone(UTC)
        return (t + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")

    rows = ["event,ts,message_id,contact_id,revenue,bounce_type"]
    for i, (message, contact, after) in enumerate(sent):
        if i % 3 == 0:
            rows.append(f"open,{later(after, 1)},{message},,,")
        if i % 7 == 0:
            rows.append(f"click,{later(after, 2)},{message},,,")
        if i % 11 == 5:
            rows.append(f"bounce,{later(after, 0.1)},{message},,,{'soft' if i % 2 else 'hard'}")
        if i % 13 == 0:
            rows.append(f"unsubscribe,{later(after, 3)},{message},,,")
        if i % 4 == 1:
            rows.append(f"conversion,{later(after, 5 + i % 30)},,{contact},{(i % 97) * 1.1 + 0.07:.2f},")
    return "\n".join(rows) + "\n"


SENDS = (  # caps over earlier sends are the plan tests' (test_the_funnels_named_queries_give_the_same_rows_on_spark)
    ("newsletter", "--at", "2026-11-19T09:00"),
    ("winback-2026-12", "--at", "2026-12-10T09:00"),  # computed traits from the order history
    ("flash-sale-1212", "--at", "2026-12-10T09:00"),  # SMS
)
REPORTS = (
    ("--format", "json"),
    ("--period", "quarter", "--format", "json"),
    ("retention", "--period", "week", "--format", "json"),
    ("fatigue", "--format", "json"),
    ("lifecycle", "--at", "2026-12-31T00:00", "--months", "3", "--format", "json"),
)


def whole_loop(
    root: Path, cli, sends: tuple[tuple[str, ...], ...] = SENDS, reports: tuple[tuple[str, ...], ...] = REPORTS
) -> dict[object, object]:
    """plan --out, send (``sends``), events import, report (``reports``) on the workspace ``root``: what each
    wrote."""
    from tests.test_send import files_under

    written: dict[object, object] = {}
    plan_file = root.parent / f"{root.name}-plan.csv"
    result = cli("-w", root, "plan", "newsletter", "--at", "2026-11-26T09:00", "--out", plan_file)
    assert result.exit_code == 0, result.stderr
    written["plan"] = plan_file.read_bytes()
    for args in sends:
        result = cli("-w", root, "send", *args)
        assert result.exit_code == 0, result.stderr
    written["outbox"] = files_under(root / "outbox")
    (root / "more.csv").write_text(message_events(root), encoding="utf-8")
    result = cli("-w", root, "events", "import", root / "more.csv")
    assert result.exit_code == 0, result.stderr
    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    written["entries"] = con.execute("SELECT * EXCLUDE (recorded_at) FROM entries ORDER BY ALL").fetchall()
    con.close()
    for args in reports:
        result = cli("-w", root, "report", *args)
        assert result.exit_code == 0, result.stderr
        written[args] = result.stdout
    assert not (root / ".dmops" / "spark").exists()  # every hand-over folder removed
    return written


def test_the_whole_loop_on_spark_writes_duckdbs_files_and_reports(tmp_path: Path, spark, cli) -> None:
    """SPEC §13 on local[2]: with engine: spark, plan's and send's funnels and the reports run there; the plan
    file, the outbox (messages and manifests, with computed traits and an SMS), the ledger's entries and the
    campaign, period, retention, fatigue and lifecycle reports are the same bytes and rows as on DuckDB;
    after the sends, a Spark plan compared with DuckDB's (`plan --diff`) finds no contact in another state."""
    for view in spark.catalog.listTables():
        spark.catalog.dropTempView(view.name)
    duckdbs = whole_loop(_sample_workspace(tmp_path / "duckdb", cli), cli)
    assert not {t.name for t in spark.catalog.listTables() if t.isTemporary}
    sparks = whole_loop(_sample_workspace(tmp_path / "spark", cli, "spark"), cli)
    views = {t.name for t in spark.catalog.listTables() if t.isTemporary}
    assert {"_dm_base", "plan_rows", "ledger_entries", "ledger_message_events"} <= views  # it ran there
    assert sparks.keys() == duckdbs.keys()
    for key, value in duckdbs.items():
        assert sparks[key] == value, key
    after = tmp_path / "after-sends.parquet"  # the next newsletter, over the ledger the sends wrote
    assert (
        cli("-w", tmp_path / "duckdb", "plan", "newsletter", "--at", "2026-11-26T09:00", "--out", after).exit_code == 0
    )
    diff = cli(
        "-w", tmp_path / "spark", "plan", "newsletter", "--at", "2026-11-26T09:00", "--diff", after, "--format", "json"
    )
    assert diff.exit_code == 0, diff.stderr
    found = json.loads(diff.stdout)
    assert found["moves"] == [] and found["joined"] == {} and found["left"] == {}
    assert found["unchanged"] == found["base_rows"] == found["current_rows"] > 1000
    outbox = duckdbs["outbox"]
    assert isinstance(outbox, dict) and len([n for n in outbox if n.endswith("messages.jsonl")]) == 3
    report = json.loads(str(duckdbs[REPORTS[0]]))
    rows = [r for c in report["campaigns"] for r in c["rows"]]
    assert sum(r["conversions"] for r in rows) > 100 and sum(r["opened"] or 0 for r in rows) > 100
    assert len(json.loads(str(duckdbs[REPORTS[2]]))["cohorts"]) > 3
    fatigue = json.loads(str(duckdbs[REPORTS[3]]))
    assert any(p["prior"] >= 1 for c in fatigue["channels"] for p in c["windows"]["30d"])
    lifecycle = json.loads(str(duckdbs[REPORTS[4]]))
    assert sum(1 for m in lifecycle["months"] for stage, n in m["counts"].items() if n and stage != "prospect") > 6


def test_the_lifecycle_report_on_spark_gives_duckdbs_stages_flows_and_churn(tmp_path: Path, spark, cli) -> None:
    """The stages of tests/test_lifecycle_report.py's history (new, active, reactivated, at risk, churned),
    month by month, with traits computed on Spark: the same JSON as on DuckDB."""
    from tests.test_lifecycle_report import HISTORY, add_events
    from tests.test_lifecycle_report import workspace as history_workspace

    for view in spark.catalog.listTables():  # what an earlier test left: this one's must be its own
        spark.catalog.dropTempView(view.name)
    outputs = {}
    for engine in ("duckdb", "spark"):
        root = history_workspace(tmp_path / engine, ["a", "b", "c", "d"])
        with (root / "dmops.yaml").open("a", encoding="utf-8") as config:
            config.write(f"engine: {engine}\n")
        add_events(root, [*HISTORY, ("open", "c", None, datetime(2026, 11, 2))])
        result = cli("-w", root, "report", "lifecycle", "--at", "2026-12-10T00:00", "--months", "4", "--format", "json")
        assert result.exit_code == 0, result.stderr
        outputs[engine] = result.stdout
        assert not (root / ".dmops" / "spark").exists()
    assert "_dm_stages" in {t.name for t in spark.catalog.listTables() if t.isTemporary}  # it ran there
    assert outputs["spark"] == outputs["duckdb"]
    view = json.loads(outputs["spark"])
    assert [m["counts"]["reactivated"] for m in view["months"]] == [0, 1, 1, 1]
    assert [c["churned"] for c in view["churn"]] == [0, 1, 0]


def test_the_fatigue_report_on_spark_counts_the_windows_and_replays_the_cap_as_duckdb(
    tmp_path: Path, spark, cli
) -> None:
    """A newsletter every 7 days exactly and a sale 2 days after each (tests/test_lifecycle_report.py): the
    windows (a message exactly 7 days before is not within 7 days), the rates and the suggested cap's replay
    are the same JSON on Spark as on DuckDB."""
    from dmops import ledger
    from dmops.ledger import Entry
    from dmops.workspace import load_workspace
    from tests.test_lifecycle_report import add_events
    from tests.test_lifecycle_report import workspace as history_workspace

    people = [f"p{i:02d}" for i in range(40)]
    for view in spark.catalog.listTables():  # what an earlier test left: this one's must be its own
        spark.catalog.dropTempView(view.name)
    outputs = {}
    for engine in ("duckdb", "spark"):
        root = history_workspace(tmp_path / engine, people)
        with (root / "dmops.yaml").open("a", encoding="utf-8") as config:
            config.write(f"engine: {engine}\n")
        entries, unsubscribes = [], []
        for week in range(4):
            for i, who in enumerate(people):
                for campaign, day in (("newsletter", 7 * week), ("flash", 7 * week + 2))[: 1 if week == 3 else 2]:
                    at = datetime(2026, 11, 1) + timedelta(days=day)
                    message_id = f"{campaign}-{week}-{who}"
                    entries.append(
                        Entry(campaign, f"w{week}", who, "message", "email", "marketing", "a", at, message_id)
                    )
                    if campaign == "flash" and i % 4 == week:
                        unsubscribes.append(("unsubscribe", who, message_id, at + timedelta(days=1)))
        ledger.record(load_workspace(root), entries)
        add_events(root, unsubscribes)
        result = cli("-w", root, "report", "fatigue", "--format", "json", "--threshold", "0.05")
        assert result.exit_code == 0, result.stderr
        outputs[engine] = result.stdout
        assert not (root / ".dmops" / "spark").exists()
    assert "_dm_fatigue" in {t.name for t in spark.catalog.listTables() if t.isTemporary}  # it ran there
    assert outputs["spark"] == outputs["duckdb"]
    email = json.loads(outputs["spark"])["channels"][0]
    assert {p["prior"]: p["messages"] for p in email["windows"]["7d"]} == {0: 40, 1: 240}
    assert email["suggestion"]["check"] == {"blamed": 240, "blamed_held": 120, "others_held": 0}


def test_the_funnels_property_test_holds_on_spark(spark) -> None:
    """The funnel's property test (tests/test_plan_properties.py: every contact's decision against SPEC §6
    computed from the drawn inputs alone) on random workspaces planned with engine: spark."""
    from hypothesis import HealthCheck, example, given, settings

    from tests.test_plan_properties import CAPPED_AND_IN_THE_HOLDOUT_SLICE, FUNNEL_CASES, check_funnel

    ran = []

    @settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @example(**CAPPED_AND_IN_THE_HOLDOUT_SLICE)
    @given(**FUNNEL_CASES)
    def on_spark(contacts, suppressions, cap_max, cap_days, cap_channel, purpose, holdout) -> None:
        for view in spark.catalog.listTables():
            spark.catalog.dropTempView(view.name)
        check_funnel(contacts, suppressions, cap_max, cap_days, cap_channel, purpose, holdout, engine="spark")
        assert "plan_rows" in {t.name for t in spark.catalog.listTables() if t.isTemporary}  # it ran there
        ran.append(len(contacts))

    on_spark()
    assert len(ran) >= 5  # the pinned example and four drawn workspaces
