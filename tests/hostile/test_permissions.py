"""Files dmops creates are owner-only (0600, folders 0700) whatever the user's umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.planning import write
from tests.test_send import EMAIL, WS, contacts


def _dmops(root: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dmops", "-w", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),  # the common umask: files 644, folders 755
    )
    assert done.returncode == 0, done.stderr


def test_outbox_ledger_and_out_files_are_owner_only(tmp_path: Path) -> None:
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(20), "campaigns/promo.yaml": EMAIL})
    _dmops(root, "send", "promo", "--at", "2026-11-30T12:00")
    _dmops(root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", str(root / "plan.csv"))
    _dmops(root, "report", "promo", "--format", "json", "--out", str(root / "report.json"))
    created = [root / "plan.csv", root / "report.json", *(root / ".dmops").rglob("*"), *(root / "outbox").rglob("*")]
    created += [root / ".dmops", root / "outbox"]
    modes = {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in created}
    assert "outbox/promo/once/run-0001/messages.jsonl" in modes and ".dmops/ledger.duckdb" in modes
    loose = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert loose == {}
