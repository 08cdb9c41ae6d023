"""Crash safety: kill -9 at random moments, rerun until done; every eligible contact exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.planning import write
from tests.test_send import EMAIL, WS, contacts, ledger_rows, outbox_messages

CONTACTS = 3000
KILLS = 12


def _send(root: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "dmops", "-w", str(root), "send", "promo", "--at", "2026-11-30T12:00", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def plan_summary(root: Path) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dmops",
            "-w",
            str(root),
            "plan",
            "promo",
            "--at",
            "2026-11-30T12:00",
            "--format",
            "json",
        ],
        capture_output=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_kill_9_at_random_moments_never_duplicates_or_loses(tmp_path: Path) -> None:
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(CONTACTS), "campaigns/promo.yaml": EMAIL})
    eligible = plan_summary(root)["to_send"]
    rng = random.Random(8450)
    kills = attempts = 0
    while kills < KILLS:
        attempts += 1
        proc = _send(root, "--limit", str(rng.choice([150, 400, 900])))
        time.sleep(rng.uniform(0.05, 1.6))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.returncode
        assert attempts < 200
    finished = 0
    while True:  # reruns without kills until the occurrence is complete
        proc = _send(root)
        assert proc.wait() == 0
        finished += 1
        if plan_summary(root)["to_send"] == 0:
            break
        assert finished < 5
    messages = outbox_messages(root)  # checks every manifest's count and sha256
    contact_ids = [m["contact_id"] for m in messages]
    message_ids = [m["message_id"] for m in messages]
    assert len(contact_ids) == len(set(contact_ids)) == eligible, "every eligible contact exactly once"
    assert len(message_ids) == len(set(message_ids))
    assert sorted((m["contact_id"], m["variant"], m["message_id"]) for m in messages) == ledger_rows(root)
    leftovers = [p.name for p in (root / "outbox/promo/once").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    final = plan_summary(root)
    assert final["excluded"]["already_sent"] == eligible and final["to_send"] == 0
    print(f"{kills} kills in {attempts} attempts, {eligible} messages")


def test_a_crash_between_the_visible_run_and_the_ledger_is_recovered(tmp_path: Path, monkeypatch) -> None:
    from datetime import UTC, datetime

    import dmops.send as sending
    from dmops.campaign import load_campaign
    from dmops.workspace import load_workspace

    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(50), "campaigns/promo.yaml": EMAIL})
    ws = load_workspace(root)
    campaign = load_campaign(root / "campaigns/promo.yaml", ws)
    at = datetime(2026, 11, 30, 4, tzinfo=UTC)

    def die(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt("killed after the rename, before the ledger commit")

    monkeypatch.setattr(sending, "_record", die)
    with pytest.raises(KeyboardInterrupt):
        sending.send(ws, campaign, at)
    written = outbox_messages(root)
    assert written and ledger_rows(root) == []
    monkeypatch.undo()
    result = sending.send(ws, campaign, at)
    assert result.recovered == len(written) and result.run is None
    assert sorted((m["contact_id"], m["variant"], m["message_id"]) for m in written) == ledger_rows(root)
    assert result.holdouts == len(ledger_rows(root, "holdout")) > 0
    import duckdb

    with duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True) as con:
        planned = con.execute("SELECT DISTINCT planned_at FROM entries WHERE kind = 'message'").fetchall()
        hashes = dict(con.execute("SELECT contact_id, address_sha256 FROM entries WHERE kind = 'message'").fetchall())
    assert planned == [(datetime(2026, 12, 1, 2, 0),)]  # send_after 02:00Z read back as that UTC instant
    import hashlib

    # a recovered message keeps its address too, so a re-keyed list cannot send it again
    assert hashes == {m["contact_id"]: hashlib.sha256(m["to"].lower().encode()).hexdigest() for m in written}


def test_a_crash_while_rendering_leaves_nothing_visible(tmp_path: Path, monkeypatch) -> None:
    from datetime import UTC, datetime

    import dmops.outbox as outbox
    import dmops.send as sending
    from dmops.campaign import load_campaign
    from dmops.workspace import load_workspace

    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(50), "campaigns/promo.yaml": EMAIL})
    ws = load_workspace(root)
    campaign = load_campaign(root / "campaigns/promo.yaml", ws)
    at = datetime(2026, 11, 30, 4, tzinfo=UTC)
    original = outbox.RunWriter.finish

    def die(self: outbox.RunWriter, manifest: dict) -> Path:
        raise SystemExit(137)  # as if killed before the run became visible

    monkeypatch.setattr(outbox.RunWriter, "abort", lambda self: None)  # a killed process cleans nothing up
    monkeypatch.setattr(outbox.RunWriter, "finish", die)
    with pytest.raises(SystemExit):
        sending.send(ws, campaign, at)
    folder = root / "outbox/promo/once"
    assert [p.name for p in folder.iterdir()] == [".run-0001.tmp"]
    assert outbox_messages(root) == [] and ledger_rows(root) == []
    monkeypatch.setattr(outbox.RunWriter, "finish", original)
    monkeypatch.undo()
    sending.send(ws, campaign, at)
    assert [p.name for p in folder.iterdir()] == ["run-0001"]  # the hidden leftover was removed first
    assert len(outbox_messages(root)) == len(ledger_rows(root))


class SyncLog:
    """Records fsync and rename calls as (call, path relative to ``base``), in order."""

    def __init__(self, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.base = base.resolve()
        self.calls: list[tuple[str, ...]] = []
        fsync, rename, replace = os.fsync, os.rename, os.replace

        def logged_fsync(fd: int) -> None:
            self._log("fsync", os.readlink(f"/proc/self/fd/{fd}"))
            fsync(fd)

        def logged_rename(src: str | Path, dst: str | Path) -> None:
            self._log("rename", os.path.abspath(src), os.path.abspath(dst))
            rename(src, dst)

        def logged_replace(src: str | Path, dst: str | Path) -> None:
            self._log("rename", os.path.abspath(src), os.path.abspath(dst))
            replace(src, dst)

        monkeypatch.setattr(os, "fsync", logged_fsync)
        monkeypatch.setattr(os, "rename", logged_rename)
        monkeypatch.setattr(os, "replace", logged_replace)

    def _log(self, call: str, *paths: str) -> None:
        relative = []
        for path in paths:
            resolved = Path(path).resolve()
            if not resolved.is_relative_to(self.base):
                return  # the token secret, the run lock: not under test here
            relative.append(resolved.relative_to(self.base).as_posix() or ".")
        self.calls.append((call, *relative))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads fsync targets from /proc")
def test_the_outbox_is_synced_before_it_is_renamed_into_view(tmp_path: Path, monkeypatch) -> None:
    # SPEC §7: write, fsync, rename. The messages and the manifest reach the disk before the run becomes
    # visible, the run folder's entries before the rename, and the rename itself after it.
    from datetime import UTC, datetime

    from dmops.campaign import load_campaign
    from dmops.send import send
    from dmops.workspace import load_workspace

    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(20), "campaigns/promo.yaml": EMAIL})
    ws = load_workspace(root)
    log = SyncLog(root / "outbox" / "promo" / "once", monkeypatch)
    send(ws, load_campaign(root / "campaigns/promo.yaml", ws), datetime(2026, 11, 30, 4, tzinfo=UTC))
    assert log.calls == [
        ("fsync", ".run-0001.tmp/messages.jsonl"),
        ("fsync", ".run-0001.tmp/manifest.json"),
        ("fsync", ".run-0001.tmp"),
        ("rename", ".run-0001.tmp", "run-0001"),
        ("fsync", "."),
    ]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads fsync targets from /proc")
@pytest.mark.parametrize("name", ["plan.csv", "plan.parquet"])
def test_the_plan_file_is_synced_before_it_is_renamed_into_place(cli, tmp_path: Path, monkeypatch, name) -> None:
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(20), "campaigns/promo.yaml": EMAIL})
    out = tmp_path / "out"
    out.mkdir()
    log = SyncLog(out, monkeypatch)
    result = cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", out / name)
    assert result.exit_code == 0, result.output
    staging = [call[1] for call in log.calls if call[0] == "rename"]
    assert len(staging) == 1 and staging[0].startswith(f".{name}.") and staging[0].endswith(".tmp")
    assert log.calls == [("fsync", staging[0]), ("rename", staging[0], name), ("fsync", ".")]
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_a_write_error_drops_the_run_and_reports_that_error(tmp_path: Path, monkeypatch) -> None:
    # A full disk while the outbox is written: the error the user sees is the write error (not one
    # raised while cleaning up), and nothing of the run is left behind or recorded.
    from datetime import UTC, datetime

    import dmops.send as sending
    from dmops.campaign import load_campaign
    from dmops.errors import IOFailure
    from dmops.outbox import RunWriter
    from dmops.workspace import load_workspace

    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(40), "campaigns/promo.yaml": EMAIL})
    ws = load_workspace(root)

    def disk_full(self: RunWriter, lines: bytes) -> None:
        raise IOFailure("cannot write the outbox: No space left on device", file=self.tmp)

    monkeypatch.setattr(sending, "BATCH", 4)  # several blocks in flight when the first one fails
    monkeypatch.setattr(RunWriter, "_append", disk_full)
    with pytest.raises(IOFailure, match="No space left on device"):
        sending.send(ws, load_campaign(root / "campaigns/promo.yaml", ws), datetime(2026, 11, 30, 4, tzinfo=UTC))
    assert list((root / "outbox" / "promo" / "once").iterdir()) == []
    assert ledger_rows(root) == [] and ledger_rows(root, "holdout") == []


def test_an_outbox_that_cannot_be_written_or_finished_names_the_file(tmp_path: Path) -> None:
    import errno

    from dmops.errors import IOFailure
    from dmops.outbox import RunWriter

    class FullDisk:
        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            pass

    folder = tmp_path / "promo" / "once"
    writer = RunWriter.start(folder, tmp_path)
    writer._handle = FullDisk()
    writer.write_lines(b"{}\n", 1)
    with pytest.raises(IOFailure) as caught:
        writer.finish({})
    assert caught.value.message == "cannot write the outbox: No space left on device"
    assert caught.value.location.file == folder / ".run-0001.tmp" / "messages.jsonl"
    writer.abort()

    writer = RunWriter.start(folder, tmp_path)
    (folder / writer.name / "in-the-way").mkdir(parents=True)  # the run's name is taken: the rename fails
    writer.write_lines(b"{}\n", 1)
    with pytest.raises(IOFailure) as caught:
        writer.finish({})
    assert caught.value.message == "cannot finish the outbox run: Directory not empty"
    assert caught.value.location.file == folder / f".{writer.name}.tmp"


def test_an_outbox_folder_that_cannot_be_made_names_it(tmp_path: Path) -> None:
    from dmops.errors import OutputError
    from dmops.outbox import RunWriter

    (tmp_path / "outbox").write_text("a file where the outbox folder should be\n", encoding="utf-8")
    folder = tmp_path / "outbox" / "promo" / "once"
    with pytest.raises(OutputError) as caught:
        RunWriter.start(folder, tmp_path)
    assert caught.value.message == "cannot create the outbox folder: Not a directory"
    assert caught.value.location.file == folder


def test_blocks_reach_the_file_in_the_order_they_were_written(tmp_path: Path, monkeypatch) -> None:
    # The first block is slow to write; the second must still land after it (one writer thread, in order).
    import threading

    from dmops.outbox import MESSAGES, RunWriter, read_run

    original = RunWriter._append
    second_written = threading.Event()

    def append(self: RunWriter, lines: bytes) -> None:
        if lines.startswith(b'{"n": 1}'):
            second_written.wait(0.5)  # with a second thread, the next block would overtake this one
            original(self, lines)
        else:
            original(self, lines)
            second_written.set()

    monkeypatch.setattr(RunWriter, "_append", append)
    writer = RunWriter.start(tmp_path / "promo" / "once", tmp_path)
    writer.write_lines(b'{"n": 1}\n', 1)
    writer.write_lines(b'{"n": 2}\n', 1)
    run = writer.finish({})
    assert (run / MESSAGES).read_bytes() == b'{"n": 1}\n{"n": 2}\n'
    assert [m["n"] for m in read_run(run)] == [1, 2]
    assert not [t for t in threading.enumerate() if t.name.startswith("dmops-outbox")]  # the writer is gone


def test_a_stray_file_with_a_hidden_run_name_neither_stops_a_send_nor_has_its_number_reused(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from dmops.campaign import load_campaign
    from dmops.send import send
    from dmops.workspace import load_workspace

    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(20), "campaigns/promo.yaml": EMAIL})
    folder = root / "outbox" / "promo" / "once"
    folder.mkdir(parents=True)
    (folder / ".run-0007.tmp").write_text("not a folder\n", encoding="utf-8")
    (folder / "README").write_text("the team's notes\n", encoding="utf-8")
    ws = load_workspace(root)
    send(ws, load_campaign(root / "campaigns/promo.yaml", ws), datetime(2026, 11, 30, 4, tzinfo=UTC))
    assert sorted(p.name for p in folder.iterdir()) == [".run-0007.tmp", "README", "run-0008"]
    assert len(outbox_messages(root)) == len(ledger_rows(root)) > 0


def test_only_links_below_the_workspace_root_are_refused(tmp_path: Path) -> None:
    from dmops.errors import OutputError
    from dmops.outbox import RunWriter

    (tmp_path / "real" / "ws").mkdir(parents=True)
    (tmp_path / "via").symlink_to(tmp_path / "real", target_is_directory=True)
    root = tmp_path / "via" / "ws"  # the workspace as the user named it: through a link above it
    writer = RunWriter.start(root / "outbox" / "promo" / "once", root)
    writer.abort()
    (tmp_path / "real" / "ws" / "outbox" / "linked").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(OutputError, match="is a symbolic link"):
        RunWriter.start(root / "outbox" / "linked" / "once", root)
