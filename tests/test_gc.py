"""``dmops gc`` (SPEC §12): outbox runs and events older than the retention are deleted, nothing else."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.test_forget import MARKETING, WORKSPACE, contacts

AT = "2026-12-01T10:00"  # Asia/Shanghai: the run's manifest says 2026-12-01T02:00:00Z


@pytest.fixture
def root(tmp_path: Path) -> Path:
    files = {
        "dmops.yaml": WORKSPACE + "retention: {outbox: 90d, events: 30d}\n",
        "contacts.csv": contacts(),
        "optouts.csv": "contact_id\n",
        "campaigns/hello.yaml": MARKETING,
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def occurrence(root: Path) -> Path:
    return root / "outbox" / "hello" / "once"


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_run_exactly_as_old_as_the_limit_is_kept_and_one_second_older_is_deleted(
    root: Path, cli: Callable[..., Any]
) -> None:
    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    kept = cli("-w", root, "gc", "--at", "2027-03-01T02:00:00Z")  # 2026-12-01T02:00Z + 90 days to the second
    assert kept.exit_code == 0, kept.output
    assert "deleted 0 outbox runs (0 messages) older than 90d" in kept.stdout
    assert (occurrence(root) / "run-0001" / "messages.jsonl").is_file()

    gone = cli("-w", root, "gc", "--at", "2027-03-01T02:00:01Z")
    assert gone.exit_code == 0, gone.output
    assert "deleted 1 outbox runs (35 messages) older than 90d" in gone.stdout
    assert not (occurrence(root) / "run-0001").exists()
    reserved = occurrence(root) / ".run-0001.gone"
    assert reserved.is_dir() and list(reserved.iterdir()) == []  # the number stays taken

    # the ledger still knows who was sent: the same occurrence sends only to someone new, in run-0002
    (root / "contacts.csv").write_text(contacts("late-0001,Late,late@example.com,,yes,yes,gold\n"), encoding="utf-8")
    again = cli("-w", root, "send", "hello", "--at", AT)
    assert again.exit_code == 0, again.output
    assert "wrote 1 messages to outbox/hello/once/run-0002 (35 already sent)" in again.stdout


def events_file(root: Path) -> Path:
    first = json.loads((occurrence(root) / "run-0001" / "messages.jsonl").read_text().splitlines()[0])
    path = root / "events.csv"
    path.write_text(
        "event,ts,message_id\n"
        f"open,2026-12-01T03:00:00Z,{first['message_id']}\n"
        f"click,2026-12-20T03:00:00Z,{first['message_id']}\n"
        f"unsubscribe,2026-12-01T04:00:00Z,{first['message_id']}\n",
        encoding="utf-8",
    )
    return path


def test_events_older_than_the_limit_go_and_their_suppressions_stay(root: Path, cli: Callable[..., Any]) -> None:
    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    assert cli("-w", root, "events", "import", events_file(root)).exit_code == 0
    edge = cli("-w", root, "gc", "--at", "2026-12-31T03:00:00Z")  # the open: exactly 30 days old
    assert "0 events older than 30d" in edge.stdout
    result = cli("-w", root, "gc", "--at", "2026-12-31T04:00:01Z")  # the open and the unsubscribe: older
    assert result.exit_code == 0, result.output
    assert "2 events older than 30d" in result.stdout
    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    left = con.execute("SELECT event FROM events").fetchall()
    folded = con.execute("SELECT opened, clicked, unsubscribed FROM message_events").fetchall()
    suppressions = con.execute("SELECT reason FROM suppressions").fetchall()
    con.close()
    assert left == [("click",)]
    assert folded == [(False, True, False)]  # the message's row says what its remaining events say
    assert suppressions == [("unsubscribe",)]  # an opt-out is not an event: it is kept
    report = json.loads(cli("-w", root, "report", "hello", "--format", "json").stdout)
    row = report["campaigns"][0]["rows"][0]
    assert (row["opened"], row["clicked"], row["unsubscribe_rate"]) == (0, 1, 0.0)  # what is left is counted


def test_a_dry_run_writes_nothing(root: Path, cli: Callable[..., Any]) -> None:
    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    assert cli("-w", root, "events", "import", events_file(root)).exit_code == 0
    before = tree(root)
    result = cli("-w", root, "gc", "--dry-run", "--at", "2028-01-01T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert "would delete 1 outbox runs (35 messages) older than 90d and 3 events older than 30d" in result.stdout
    assert "nothing was changed" in result.stdout
    after = tree(root)
    assert after.keys() == before.keys()
    assert {k: v for k, v in after.items() if not k.endswith(".lock")} == {
        k: v for k, v in before.items() if not k.endswith(".lock")
    }


def test_a_run_being_written_is_never_touched(root: Path, cli: Callable[..., Any]) -> None:
    """A send writes its run under the run lock, which gc takes too: while a send holds it, gc exits 75
    and touches nothing. A hidden run with no send holding the lock is what a killed send left: gc removes
    it (it holds whole messages), as the next send would."""
    from tests.test_send import HOLD_LOCK, _holder

    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    hidden = occurrence(root) / ".run-0002.tmp"
    hidden.mkdir()
    (hidden / "messages.jsonl").write_text("{}\n", encoding="utf-8")
    before = tree(root)
    holder = _holder(HOLD_LOCK, root / ".dmops")
    try:
        busy = cli("-w", root, "gc", "--at", "2028-01-01T00:00:00Z")
        assert busy.exit_code == 75 and f"pid {holder.pid}" in busy.output
        assert {k: v for k, v in tree(root).items() if not k.endswith(".lock")} == {
            k: v for k, v in before.items() if not k.endswith(".lock")
        }
    finally:
        holder.communicate("")
    assert cli("-w", root, "gc", "--at", "2026-12-02T00:00:00Z").exit_code == 0  # nothing old enough yet
    assert not hidden.exists() and (occurrence(root) / "run-0001").is_dir()


def test_a_killed_gc_is_finished_by_the_next(root: Path, cli: Callable[..., Any]) -> None:
    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    run = occurrence(root) / "run-0001"
    (run / "attachments").mkdir()  # a folder inside too, and a link that must be removed, not followed
    (run / "attachments" / "a.txt").write_text("x", encoding="utf-8")
    (run / "elsewhere").symlink_to(root / "campaigns", target_is_directory=True)
    run.rename(occurrence(root) / ".run-0001.gone")  # killed after the rename, before emptying it
    assert cli("-w", root, "gc", "--at", AT).exit_code == 0
    assert list((occurrence(root) / ".run-0001.gone").iterdir()) == []
    assert (root / "campaigns" / "hello.yaml").is_file()  # the link's target is untouched


def test_stray_files_and_linked_folders_in_the_outbox_are_left_alone(
    root: Path, cli: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The outbox is shared with whoever picks it up: a note beside the campaigns or the occurrences is not
    an occurrence, and a linked folder is not followed (its runs live elsewhere, another tool's to keep)."""
    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    (root / "outbox" / "README.txt").write_text("picked up hourly\n", encoding="utf-8")
    (root / "outbox" / "hello" / "notes.txt").write_text("sent by hand\n", encoding="utf-8")
    elsewhere = tmp_path_factory.mktemp("archive")
    shutil.copytree(occurrence(root), elsewhere / "once")
    (root / "outbox" / "hello" / "archived").symlink_to(elsewhere / "once", target_is_directory=True)
    (root / "outbox" / "linked").symlink_to(elsewhere, target_is_directory=True)
    archived = tree(elsewhere)
    result = cli("-w", root, "gc", "--at", "2028-01-01T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert "deleted 1 outbox runs (35 messages) older than 90d" in result.stdout
    assert not (occurrence(root) / "run-0001").exists()
    assert tree(elsewhere) == archived
    assert (root / "outbox" / "README.txt").is_file() and (root / "outbox" / "hello" / "notes.txt").is_file()


def test_gc_without_a_retention_is_a_configuration_error(root: Path, cli: Callable[..., Any]) -> None:
    (root / "dmops.yaml").write_text(WORKSPACE, encoding="utf-8")
    result = cli("-w", root, "gc")
    assert result.exit_code == 78 and "no retention is set" in result.stderr


def test_validate_warns_when_the_state_or_the_outbox_is_open_to_others(root: Path, cli: Callable[..., Any]) -> None:
    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    assert "other users" not in cli("-w", root, "validate").output  # dmops creates them owner-only
    (occurrence(root) / "run-0001" / "messages.jsonl").chmod(0o644)  # e.g. copied back from an archive
    result = cli("-w", root, "validate")
    assert result.exit_code == 0, result.output  # a warning: validate still passes
    assert "1 files or folders here can be read by other users" in result.output
    assert "outbox/hello/once/run-0001/messages.jsonl, mode 644" in result.output
    assert "chmod -R go-rwx outbox" in result.output
