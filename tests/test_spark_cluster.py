"""The generated SQL of SPEC §13 on a real Spark standalone cluster — a master and two workers started by
the test on loopback — gives DuckDB's answers, plan, send, events import and report on it write DuckDB's
files, and nothing the cluster starts listens or connects anywhere but 127.0.0.1. A send on Spark killed
with kill -9 is completed by reruns. The slow Spark runs live here and in tests/test_dialect.py (local
Spark: local times, the funnel's queries, every allowed function, the whole loop on the sample workspace)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dmops.dialect import hash15_sql
from dmops.plan import hash_thresholds
from tests.spark_cluster import LOOPBACK, Cluster, descendants, off_loopback, session, sockets_of, standalone

pytest.importorskip("pyspark", reason="pip install 'dmops[spark]'")

ROWS = 50_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Any]]:
    folder = tmp_path_factory.mktemp("spark-cluster")
    with standalone(folder, workers=2, cores=1, memory="1G") as running:
        spark = session(
            running.master_url,
            folder / "warehouse",
            **{"spark.executor.memory": "512m", "spark.executor.cores": "1", "spark.cores.max": "2"},
        )
        try:
            yield running, spark
        finally:
            spark.stop()


def test_two_workers_run_the_job_and_everything_stays_on_loopback(cluster: tuple[Cluster, Any]) -> None:
    running, spark = cluster
    ids = spark.range(ROWS, numPartitions=8).selectExpr("concat('c-', CAST(id AS STRING)) AS contact_id")
    ids.createOrReplaceTempView("ids")
    assert spark.sql("SELECT count(DISTINCT contact_id) FROM ids").collect()[0][0] == ROWS
    status = running.status()
    assert status["aliveworkers"] == 2
    (app,) = status["activeapps"]
    assert app["cores"] == 2  # one executor on each worker
    executors = [e for e in spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos() if e.port() > 0]
    assert len({e.host() for e in executors}) == 1 and len(executors) == 3  # the driver and two executors
    sockets = sockets_of(descendants(os.getpid()))
    assert len({pid for pid, *_ in sockets}) >= 4  # driver, master, two workers (and their executors)
    assert off_loopback(sockets) == []


def test_the_hash_split_on_the_cluster_is_duckdbs_and_the_specs(cluster: tuple[Cluster, Any]) -> None:
    _, spark = cluster
    ids = spark.range(ROWS, numPartitions=8).selectExpr("concat('c-', CAST(id AS STRING)) AS contact_id")
    ids.createOrReplaceTempView("ids")
    key = "'promo' || ':' || contact_id"
    on_spark = dict(
        (r[0], r[1]) for r in spark.sql(f"SELECT contact_id, {hash15_sql(key, 'spark')} FROM ids").collect()
    )
    con = duckdb.connect()
    on_duckdb = dict(
        con.execute(
            f"SELECT contact_id, {hash15_sql(key)} FROM (SELECT 'c-' || CAST(range AS VARCHAR) AS contact_id"
            f" FROM range({ROWS}))"
        ).fetchall()
    )
    assert on_spark == on_duckdb
    sample = [f"c-{i}" for i in range(0, ROWS, 997)]
    assert {i: on_spark[i] for i in sample} == {
        i: int(hashlib.md5(f"promo:{i}".encode()).hexdigest()[:15], 16) for i in sample
    }
    # the cells of a 10% holdout and weights 2:1, counted on the cluster, are the ones DuckDB counts
    holdout, bounds = hash_thresholds(0.1, [2.0, 1.0])
    cells = f"CASE WHEN h < {holdout} THEN 'holdout' WHEN h < {bounds[0]} THEN 'a' ELSE 'b' END"
    count = f"SELECT {cells} AS cell, count(*) FROM (SELECT {{h}} AS h FROM {{ids}}) GROUP BY 1 ORDER BY 1"
    spark_cells = [tuple(r) for r in spark.sql(count.format(h=hash15_sql(key, "spark"), ids="ids")).collect()]
    ids_sql = f"(SELECT 'c-' || CAST(range AS VARCHAR) AS contact_id FROM range({ROWS}))"
    assert spark_cells == con.execute(count.format(h=hash15_sql(key), ids=ids_sql)).fetchall()


def test_plan_send_events_and_report_on_the_cluster_are_duckdbs(
    cluster: tuple[Cluster, Any], tmp_path: Path, cli
) -> None:
    """`engine: {kind: spark, master: spark://127.0.0.1:…}` on the sample workspace: plan --out, a send, an
    events import and the campaign report, with the funnels and the report's queries on the two workers'
    executors, write the same bytes as the DuckDB engine."""
    from tests.test_dialect import REPORTS, SENDS, _sample_workspace, whole_loop

    running, spark = cluster
    for view in spark.catalog.listTables():
        spark.catalog.dropTempView(view.name)
    steps = {"sends": SENDS[:1], "reports": REPORTS[:1]}
    duckdbs = whole_loop(_sample_workspace(tmp_path / "duckdb", cli), cli, **steps)
    engine = f"{{kind: spark, master: '{running.master_url}'}}"
    on_cluster = whole_loop(_sample_workspace(tmp_path / "spark", cli, engine), cli, **steps)
    views = {t.name for t in spark.catalog.listTables() if t.isTemporary}
    assert {"_dm_base", "_dm_flagged", "plan_rows", "ledger_entries"} <= views  # in the cluster's application
    assert on_cluster == duckdbs
    assert len(duckdbs["entries"]) > 1000 and json.loads(str(duckdbs[REPORTS[0]]))["campaigns"]


def _spark_send(root: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "dmops", "-w", str(root), "send", "promo", "--at", "2026-11-30T12:00", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "SPARK_LOCAL_IP": LOOPBACK},  # with the conf's driver host: nothing off loopback
        start_new_session=True,  # the dmops process and the JVM it starts: killed together
    )


def _wait_for(proc: subprocess.Popen[bytes], seen: Callable[[], bool], timeout: float = 120) -> bool:
    """Poll until ``seen()`` (True) or the process ends (False)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if seen():
            return True
        assert time.monotonic() < deadline, "the send neither reached the moment nor ended"
        time.sleep(0.02)
    return False


def test_kill_9_of_a_spark_send_then_reruns_send_every_contact_exactly_once(tmp_path: Path) -> None:
    """SPEC §7 and §13: a send on Spark killed (with its JVM) while it hands the contacts to Spark; the rerun
    completes the occurrence with every eligible contact exactly once and removes the killed command's
    hand-over folder (contact data). A kill while the outbox is written is the DuckDB send's (the rendering
    and the outbox do not run on Spark): tests/test_send_crash.py."""
    from tests.planning import write
    from tests.test_send import EMAIL, WS, contacts, ledger_rows, outbox_messages
    from tests.test_send_crash import plan_summary

    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(3000), "campaigns/promo.yaml": EMAIL})
    eligible = plan_summary(root)["to_send"]  # on DuckDB, before the engine is set
    with (root / "dmops.yaml").open("a", encoding="utf-8") as config:
        config.write(
            "engine: {kind: spark, master: 'local[2]', conf: {spark.driver.host: 127.0.0.1,"
            " spark.driver.bindAddress: 127.0.0.1, spark.ui.enabled: false, spark.sql.shuffle.partitions: 2}}\n"
        )
    hand_overs, occurrence = root / ".dmops" / "spark", root / "outbox" / "promo" / "once"
    proc = _spark_send(root, "--limit", "1000")
    assert _wait_for(proc, lambda: any(hand_overs.glob("send-*/in-*"))), "the send ended before handing over"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any(hand_overs.glob("send-*"))  # the killed send's copy of the contacts is still there
    for _ in range(4):  # reruns without kills until the occurrence is complete
        proc = _spark_send(root)
        assert proc.wait() == 0
        if len(ledger_rows(root)) == eligible:
            break
    messages = outbox_messages(root)  # checks every manifest's count and sha256
    contact_ids = [m["contact_id"] for m in messages]
    assert len(contact_ids) == len(set(contact_ids)) == eligible, "every eligible contact exactly once"
    assert sorted((m["contact_id"], m["variant"], m["message_id"]) for m in messages) == ledger_rows(root)
    assert [p.name for p in occurrence.iterdir() if p.name.startswith(".")] == []
    assert not hand_overs.exists()  # the killed sends' folders went with the reruns
