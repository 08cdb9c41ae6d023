"""The generated SQL of SPEC §13 on a real Spark standalone cluster — a master and two workers started by
the test on loopback — gives DuckDB's answers, a plan on it writes DuckDB's file, and nothing the cluster
starts listens or connects anywhere but 127.0.0.1. The slow Spark runs live here and in
tests/test_dialect.py (local Spark: local times, the funnel's queries, every allowed function)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dmops.dialect import hash15_sql
from dmops.plan import hash_thresholds
from tests.spark_cluster import Cluster, descendants, off_loopback, session, sockets_of, standalone

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


def test_a_plan_on_the_cluster_writes_duckdbs_file(cluster: tuple[Cluster, Any], tmp_path: Path, cli) -> None:
    """`engine: {kind: spark, master: spark://127.0.0.1:…}`: the plan's funnel runs on the two workers'
    executors, and `plan --out` is byte for byte the DuckDB engine's."""
    from tests.planning import message, seed, write
    from tests.test_dialect import FUNNEL_WORKSPACE

    running, spark = cluster
    for view in spark.catalog.listTables():
        spark.catalog.dropTempView(view.name)
    written = {}
    for engine in ("duckdb", f"{{kind: spark, master: '{running.master_url}'}}"):
        files = dict(FUNNEL_WORKSPACE)
        files["dmops.yaml"] += f"engine: {engine}\n"
        root = write(tmp_path / ("duckdb" if engine == "duckdb" else "spark"), files)
        seed(root, message("c0010", "2026-12-01 06:00:00"))
        out = tmp_path / f"{root.name}.csv"
        result = cli("-w", root, "plan", "promo", "--at", "2026-12-01T10:00", "--out", out)
        assert result.exit_code == 0, result.output
        written[root.name] = out.read_bytes()
    assert written["spark"] == written["duckdb"] and written["duckdb"].count(b"\n") == 406
    views = {t.name for t in spark.catalog.listTables() if t.isTemporary}
    assert {"_dm_base", "_dm_flagged", "plan_rows"} <= views  # the funnel ran in the cluster's application
