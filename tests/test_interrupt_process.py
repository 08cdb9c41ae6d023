"""Ctrl-C on a real ``dmops`` process, at several moments of each command: one line, exit 130, nothing half-written.

Each command is first run to the end on its own copy of the workspace to learn how long it takes; then,
on fresh copies, SIGINT goes to its process group (as a terminal's Ctrl-C does, workers included) at
fixed fractions of that time: while Python loads, while the contacts are read, while the work runs.
Whatever the moment, the command either finished (exit 0) or said in one line what it had and had
not written and exited 130, with no traceback; and the workspace holds either the whole result or none.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from tests.planning import write
from tests.test_send import EMAIL, WS, contacts, outbox_messages

CONTACTS = 30_000  # above send's parallel threshold: rendering runs in worker processes
EVENTS = 200_000
AT = "2026-11-30T12:00"
MOMENTS = (0.15, 0.5, 0.85)  # fractions of the command's uninterrupted run time

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="process groups and SIGINT are POSIX")


def _events(n: int) -> str:
    rows = ["event_id,event,ts,contact_id,revenue"]
    rows += [
        f"ord-{i:07d},conversion,2026-10-{1 + i % 28:02d} 10:00:00,{i % CONTACTS:05d},{i % 97}.50" for i in range(n)
    ]
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("interrupt") / "ws"
    write(root, {"dmops.yaml": WS, "contacts.csv": contacts(CONTACTS), "campaigns/promo.yaml": EMAIL})
    (root / "events.csv").write_text(_events(EVENTS), encoding="utf-8")
    return root


def _start(root: Path, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dmops", "-w", str(root), *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so the signal reaches it and its workers only
    )


def _interrupt(root: Path, args: list[str], after: float) -> tuple[int, str]:
    proc = _start(root, args)
    time.sleep(after)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 130:
        assert err.strip(), f"exit 130 after {after:.2f} s with nothing on stderr; stdout: {out!r}"
    return proc.returncode, err


def _no_staging_files(root: Path) -> None:
    staged = [p.relative_to(root) for p in root.rglob(".*") if p.is_file() and p.name != ".gitignore"]
    assert [p for p in staged if ".tmp" in p.name or p.name.startswith(".plan") or p.name.startswith(".report")] == []


def _plan_file(root: Path, code: int) -> None:
    out = root / "plan.parquet"
    if code == 130:
        assert not out.exists()
    else:
        assert duckdb.sql(f"SELECT count(*) FROM '{out}'").fetchall() == [(CONTACTS,)]


def _send_state(root: Path, code: int) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dmops", "-w", str(root), "send", "promo", "--at", AT],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    messages = outbox_messages(root)  # every manifest's count and sha256 checked
    ids = [m["contact_id"] for m in messages]
    assert len(ids) == len(set(ids)) > 0.7 * CONTACTS  # the rerun completed it, nothing twice


def _events_state(root: Path, code: int) -> None:
    imported = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True) if code == 0 else None
    if imported is not None:
        assert imported.execute("SELECT count(*) FROM events").fetchall() == [(EVENTS,)]
        imported.close()
        return
    done = subprocess.run(
        [sys.executable, "-m", "dmops", "-w", str(root), "events", "import", "events.csv"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"{EVENTS:,} imported, 0 already there" in done.stdout  # the interrupted import added nothing


def _report_file(root: Path, code: int) -> None:
    out = root / "report.json"
    if code == 130:
        assert not out.exists()
    else:
        assert json.loads(out.read_text(encoding="utf-8"))["campaigns"][0]["campaign"] == "promo"


CASES: dict[str, tuple[list[str], str, Callable[[Path, int], None] | None]] = {
    "plan": (["plan", "promo", "--at", AT, "--out", "plan.parquet"], "nothing was written", _plan_file),
    "send": (["send", "promo", "--at", AT], "`dmops send promo` again completes the occurrence", _send_state),
    "lint": (["lint", "promo", "--at", AT], "nothing was written", None),
    "events import": (["events", "import", "events.csv"], "no events of events.csv were imported", _events_state),
    "report": (["report", "promo", "--format", "json", "--out", "report.json"], "nothing was written", _report_file),
}


@pytest.mark.parametrize("command", list(CASES))
def test_ctrl_c_at_several_moments(workspace: Path, tmp_path: Path, command: str) -> None:
    args, said, check = CASES[command]
    timing = tmp_path / "timing"
    shutil.copytree(workspace, timing)
    started = time.monotonic()
    whole = _start(timing, args)
    _, err = whole.communicate(timeout=180)
    took = time.monotonic() - started
    assert whole.returncode == 0, err
    codes = []
    for index, fraction in enumerate(MOMENTS):
        root = tmp_path / f"at-{index}"
        shutil.copytree(workspace, root)
        code, err = _interrupt(root, args, fraction * took)
        assert "Traceback" not in err, err
        assert code in (0, 130), (fraction, code, err)
        if code == 130:
            last = err.strip().splitlines()[-1]
            assert last.startswith("interrupted: "), err
            assert said in last or last == "interrupted: nothing was written", last
        _no_staging_files(root)
        if check is not None:
            check(root, code)
        codes.append(code)
    assert codes.count(130) >= 2, f"{command}: {codes} after {took:.1f} s"
