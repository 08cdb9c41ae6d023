"""Real Apache Spark for the tests (SPEC §13): a session on ``local[2]`` or on a standalone cluster (a master
and workers started from PySpark's own ``bin/spark-class``), every socket on 127.0.0.1.

Left alone, Spark binds the machine's other interface; ``SPARK_LOCAL_IP``, ``spark.driver.host`` and
``spark.driver.bindAddress`` keep the driver, the master, the workers and their executors on loopback, and
:func:`sockets_of` lets a test check that they did.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def session(master: str, warehouse: Path, **conf: str) -> Any:
    """A SparkSession on ``master``: driver on loopback, no web UI, UTC, two shuffle partitions."""
    from pyspark.sql import SparkSession

    os.environ["SPARK_LOCAL_IP"] = LOOPBACK
    builder = (
        SparkSession.builder.master(master)
        .appName("dmops-tests")
        .config("spark.driver.host", LOOPBACK)
        .config("spark.driver.bindAddress", LOOPBACK)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.sql.shuffle.partitions", "2")
    )
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports, all held at once while they are chosen: a port handed out
    twice would send a Spark process that finds it taken to the next one, where the tests do not look."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((LOOPBACK, 0))
        return [int(probe.getsockname()[1]) for probe in probes]


@dataclass
class Cluster:
    master_url: str  # spark://127.0.0.1:PORT
    ui_url: str  # the master's JSON status page
    processes: list[subprocess.Popen[bytes]]

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=5) as response:
            return dict(json.loads(response.read()))


class PortTaken(Exception):
    """A port chosen for the cluster was taken by another process before Spark bound it."""


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _launch(folder: Path, workers: int, cores: int, memory: str, processes: list[subprocess.Popen[bytes]]) -> Cluster:
    """Start the master and the workers (into ``processes``) and wait until every worker has registered.

    Each gets the ports chosen for it and no other (``spark.port.maxRetries=0``): a port another process took
    in the meantime (another test worker's server) ends it at once, with PortTaken, instead of moving it to
    the next port, where the tests would not look."""
    home = spark_home()
    no_retries = "-Dspark.port.maxRetries=0"
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": LOOPBACK,
        "SPARK_MASTER_OPTS": f"-Dspark.master.rest.enabled=false {no_retries}",  # no REST submission port
        "SPARK_WORKER_OPTS": no_retries,
        "SPARK_LOG_DIR": str(folder),
    }
    port, ui_port, *worker_ui_ports = free_ports(2 + workers)
    spark_class = str(home / "bin" / "spark-class")

    def start(name: str, *args: str) -> None:
        log = (folder / f"{name}.log").open("wb")
        processes.append(
            subprocess.Popen(  # its own process group: stopping it stops the executors it forked
                [spark_class, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    master = f"spark://{LOOPBACK}:{port}"
    cluster = Cluster(master, f"http://{LOOPBACK}:{ui_port}", processes)
    start(
        "master",
        "org.apache.spark.deploy.master.Master",
        *("--host", LOOPBACK, "--port", str(port), "--webui-port", str(ui_port)),
    )
    for n in range(workers):
        work = folder / f"worker-{n}"
        work.mkdir()
        start(
            f"worker-{n}",
            "org.apache.spark.deploy.worker.Worker",
            master,
            *("--host", LOOPBACK, "--cores", str(cores), "--memory", memory),
            *("--webui-port", str(worker_ui_ports[n]), "--work-dir", str(work)),
        )
    deadline = time.monotonic() + 120
    while True:
        try:
            if cluster.status().get("aliveworkers") == workers:
                return cluster
        except OSError:
            pass  # the master is not listening yet
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            logs = [p.read_text(errors="replace") for p in sorted(folder.glob("*.log"))]
            if any("java.net.BindException" in log for log in logs):
                raise PortTaken(folder)
            tails = "\n".join(log[-2000:] for log in logs)
            raise RuntimeError(f"the Spark cluster did not start:\n{tails}")
        time.sleep(0.5)


@contextmanager
def standalone(folder: Path, workers: int = 2, cores: int = 1, memory: str = "1G") -> Iterator[Cluster]:
    """A Spark standalone master and ``workers`` workers on loopback, started with PySpark's ``spark-class``
    and stopped (with everything they started) on exit; their logs in ``folder``. Started again on other
    ports, up to three times, when a port chosen for it was taken meanwhile."""
    for attempt in range(3):
        processes: list[subprocess.Popen[bytes]] = []
        tried = folder / f"try-{attempt}"
        tried.mkdir(parents=True)
        try:
            cluster = _launch(tried, workers, cores, memory, processes)
        except PortTaken:
            _stop(processes)
            continue
        except BaseException:
            _stop(processes)
            raise
        try:
            yield cluster
        finally:
            _stop(processes)
        return
    raise RuntimeError("the Spark cluster's ports were taken three times")


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children, …)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _address(text: str) -> str:
    """``0100007F:1F90`` or the IPv6 form from /proc/net/tcp* -> the IP address it names."""
    host = text.split(":")[0]
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))  # four little-endian 32-bit words
    return socket.inet_ntop(socket.AF_INET6, words)


def sockets_of(pids: set[int]) -> list[tuple[int, str, str, str]]:
    """(pid, state, local address, remote address) of every TCP socket the processes ``pids`` hold."""
    by_inode: dict[str, tuple[str, str, str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            by_inode[fields[9]] = (fields[3], _address(fields[1]), _address(fields[2]))
    found = []
    for pid in sorted(pids):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue  # gone meanwhile
        for link in links:
            if link.startswith("socket:[") and link[8:-1] in by_inode:
                state, local, remote = by_inode[link[8:-1]]
                found.append((pid, state, local, remote))
    return found


LISTEN = "0A"  # the state /proc/net/tcp shows for a listening socket


def off_loopback(sockets: list[tuple[int, str, str, str]]) -> list[tuple[int, str, str, str]]:
    """The sockets bound, or connected, anywhere but loopback (a listening socket's remote is all zeros)."""
    loopback = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
    return [
        s
        for s in sockets
        if s[2] not in loopback or (s[3] not in loopback and not (s[1] == LISTEN and s[3] in ("0.0.0.0", "::")))
    ]
