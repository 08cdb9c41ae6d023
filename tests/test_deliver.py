"""`dmops deliver --dry-run` (SPEC §11): the configuration and environment checked, what is due counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dmops.deliver import rate_seconds
from dmops.workspace import Rate
from tests.planning import run_cli as run
from tests.planning import write
from tests.test_send import EMAIL, WS, contacts

TRANSPORTS = """\
transports:
  mail:
    kind: smtp
    host: smtp.example.com
    username_env: DMOPS_TEST_USER
    password_env: DMOPS_TEST_PASSWORD
    rate: {per_second: 10, per_hour: 20}
channels: {email: mail}
"""


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DMOPS_TEST_USER", "mailer")
    monkeypatch.setenv("DMOPS_TEST_PASSWORD", "hunter2")
    root = write(
        tmp_path / "ws",
        {"dmops.yaml": WS + TRANSPORTS, "contacts.csv": contacts(40), "campaigns/promo.yaml": EMAIL},
    )
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00")[0] == 0  # send_at 2026-12-01 10:00 Shanghai
    return root


def _due(root: Path, at: str, *extra: str) -> dict:
    code, output = run(root, "deliver", "--dry-run", "--at", at, "--format", "json", *extra)
    assert code == 0, output
    return json.loads(output)


def test_messages_are_due_from_their_send_after(root: Path) -> None:
    assert _due(root, "2026-12-01T09:59")["transports"] == []
    found = _due(root, "2026-12-01T10:00")
    [mail] = found["transports"]
    sent = sum(1 for line in (root / "outbox").rglob("messages.jsonl") for _ in line.read_text().splitlines())
    assert mail == {
        "transport": "mail",
        "kind": "smtp",
        "where": "smtp.example.com:587",
        "channel": "email",
        "due": sent,
        "first_send_after": "2026-12-01T02:00:00Z",
        "last_send_after": "2026-12-01T02:00:00Z",
        "seconds": 3600.0,  # more than 20 messages at 20 an hour: the rest wait an hour
    }
    assert found["at"] == "2026-12-01T02:00:00Z" and 20 < sent <= 40
    assert _due(root, "2026-12-01T10:00", "other")["transports"] == []  # only the campaigns named
    code, output = run(root, "deliver", "--dry-run", "--at", "2026-12-01T10:00")
    assert code == 0 and f"mail (smtp, smtp.example.com:587): {sent} email messages due" in output
    assert "about 1h" in output
    assert "hunter2" not in output and "mailer" not in output


def test_unset_credentials_and_a_channel_without_transport_are_configuration_errors(root: Path, monkeypatch) -> None:
    monkeypatch.delenv("DMOPS_TEST_PASSWORD")
    code, output = run(root, "deliver", "--dry-run", "--at", "2026-12-01T10:00")
    assert code == 78
    assert "key 'transports.mail.password_env': the environment variable DMOPS_TEST_PASSWORD is not set" in output
    monkeypatch.setenv("DMOPS_TEST_PASSWORD", "hunter2")
    write(root, {"dmops.yaml": WS + TRANSPORTS.replace("channels: {email: mail}\n", "")})
    code, output = run(root, "deliver", "--dry-run", "--at", "2026-12-01T10:00")
    assert code == 78 and "key 'channels.email': email messages are due and no transport delivers email" in output


def test_a_changed_outbox_run_is_refused(root: Path) -> None:
    [messages] = list((root / "outbox").rglob("messages.jsonl"))
    messages.write_bytes(messages.read_bytes().replace(b"Hello", b"Hallo"))
    code, output = run(root, "deliver", "--dry-run", "--at", "2026-12-01T10:00")
    assert code == 74 and "outbox run does not match its manifest" in output
    assert str(messages.parent.relative_to(root)) in output  # the run is named


def test_an_unreachable_relay_defers_the_first_message_and_leaves_the_rest_queued(root: Path) -> None:
    import socket

    with socket.socket() as refusing:  # bound, never listening: connections are refused, and no test can take it
        refusing.bind(("127.0.0.1", 0))
        port = refusing.getsockname()[1]
        yaml = (root / "dmops.yaml").read_text().replace("host: smtp.example.com", f"host: 127.0.0.1\n    port: {port}")
        (root / "dmops.yaml").write_text(yaml)
        code, output = run(root, "deliver", "--at", "2026-12-01T10:00", "--format", "json")
    assert code == 75, output
    result = json.loads(output)
    [mail] = result["transports"]
    due = _due(root, "2026-12-01T10:00")["transports"][0]["due"]
    # the relay refused the connection: each of the (up to 4) connections' first message is deferred, the
    # rest stay queued, none was handed over
    assert set(mail["states"]) == {"deferred"} and 1 <= mail["states"]["deferred"] <= 4
    assert mail["stopped"].startswith("unreachable: cannot connect to 127.0.0.1:")
    assert result["deferred_waiting"] == mail["states"]["deferred"]
    assert result["not_handed_over"] == due - mail["states"]["deferred"]
    assert not (root / ".dmops" / "deliveries").glob("*") or all(
        '"in_flight"' not in p.read_text() for p in (root / ".dmops" / "deliveries").glob("*.jsonl")
    )


def test_rate_seconds() -> None:
    assert rate_seconds(0, Rate(per_second=10)) == 0
    assert rate_seconds(100, Rate(per_second=20)) == 5
    assert rate_seconds(100, Rate()) == 0
    assert rate_seconds(100, Rate(per_second=50, per_hour=30)) == 3 * 3600  # 4 hourly batches: 3 hours of waiting
    assert rate_seconds(30, Rate(per_hour=30)) == 0
    assert rate_seconds(31, Rate(per_hour=30, per_day=31)) == 3600
    assert rate_seconds(32, Rate(per_hour=1000, per_day=31)) == 86400


def test_delivery_journals_are_read_in_number_order_past_a_million(tmp_path: Path) -> None:
    import duckdb

    from dmops import ledger
    from dmops.workspace import load_workspace

    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(1)})
    folder = root / ".dmops" / "deliveries"
    folder.mkdir(parents=True)
    line = '{{"seq": 1, "message_id": "m", "campaign_id": "c", "channel": "email", "state": "{}", "at": "{}"}}\n'
    (folder / "run-999999.jsonl").write_text(line.format("deferred", "2026-12-01T00:00:00"))
    (folder / "run-1000000.jsonl").write_text(line.format("accepted", "2026-12-01T00:01:00"))
    ws = load_workspace(root)
    assert [p.name for p in ledger.delivery_journals(ws)] == ["run-999999.jsonl", "run-1000000.jsonl"]
    con = duckdb.connect()
    ledger.delivery_states(con, ws)
    assert con.execute("SELECT state FROM delivery_states").fetchall() == [("accepted",)]
    journal = ledger.DeliveryJournal(ws)
    journal.close()
    assert journal.path.name == "run-1000001.jsonl"


def test_only_numbered_journal_files_are_journals(workspace) -> None:
    """A note, a file named like a journal without a number, or a folder with a journal's name in the
    deliveries folder is not read as a journal."""
    import duckdb

    from dmops import ledger
    from dmops.workspace import load_workspace

    ws = load_workspace(workspace())
    folder = ledger.delivery_dir(ws)
    (folder / "run-000000.jsonl").mkdir(parents=True)
    (folder / "run-x1.jsonl").write_text("not a journal\n", encoding="utf-8")
    (folder / "notes.txt").write_text("not a journal\n", encoding="utf-8")
    line = '{"seq": 1, "message_id": "m", "campaign_id": "c", "channel": "email", "state": "accepted", "at": "%s"}\n'
    (folder / "run-000001.jsonl").write_text(line % "2026-12-01T00:00:00", encoding="utf-8")
    assert [p.name for p in ledger.delivery_journals(ws)] == ["run-000001.jsonl"]
    con = duckdb.connect()
    ledger.delivery_states(con, ws)
    assert con.execute("SELECT message_id, state FROM delivery_states").fetchall() == [("m", "accepted")]


def test_a_synced_line_is_forced_to_disk_once_and_a_closed_journal_is_closed_once(
    workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPEC §11: ``in_flight`` is on disk before the message is handed over: the first synced line calls
    fdatasync, a sync of lines already on disk does not; close syncs and closes the file once, however
    often it is called, and removes a journal that recorded nothing (also when someone removed it first)."""
    import os

    from dmops.ledger import DeliveryJournal
    from dmops.workspace import load_workspace

    ws = load_workspace(workspace())
    journal = DeliveryJournal(ws)
    fd = journal._fd
    calls: list[str] = []
    real_sync, real_close = os.fdatasync, os.close

    def fdatasync(n: int) -> None:
        calls.append("fdatasync" if n == fd else f"fdatasync({n})")
        real_sync(n) if n == fd else None

    def close(n: int) -> None:
        calls.append("close" if n == fd else f"close({n})")
        real_close(n) if n == fd else None  # a wrong descriptor is noted, not closed

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "close", close)
    assert journal.append({"state": "in_flight"}, sync=True) == 1
    assert calls == ["fdatasync"]
    journal.sync(1)
    assert calls == ["fdatasync"]
    journal.close()
    journal.close()
    monkeypatch.undo()
    assert calls == ["fdatasync", "fdatasync", "close"]
    assert journal.path.read_text(encoding="utf-8") == '{"seq": 1, "state": "in_flight"}\n'

    empty = DeliveryJournal(ws)
    assert empty.path.name == "run-000002.jsonl" and empty.path.exists()
    empty.close()
    assert not empty.path.exists()
    removed = DeliveryJournal(ws)
    removed.path.unlink()
    removed.close()
    assert not removed.path.exists() and journal.path.exists()


def test_a_journal_on_descriptor_0_is_synced_and_closed(workspace) -> None:
    """cron can start dmops with standard input closed; the journal's file then gets descriptor 0, and
    closing the journal must still sync and close it."""
    import os

    from dmops.ledger import DeliveryJournal
    from dmops.workspace import load_workspace

    ws = load_workspace(workspace())
    DeliveryJournal(ws).close()  # the folder exists: opening the next journal opens no other file first
    saved = os.dup(0)
    os.close(0)
    try:
        journal = DeliveryJournal(ws)
        assert journal._fd == 0
        journal.append({"state": "accepted"})
        journal.close()
        with pytest.raises(OSError):
            os.fstat(0)  # closed
    finally:
        os.dup2(saved, 0)
        os.close(saved)
    assert journal.path.read_text(encoding="utf-8") == '{"seq": 1, "state": "accepted"}\n'


WHOLE = b'{"seq": 1, "state": "accepted"}\n{"seq": 2, "state": "accepted"}\n'


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (WHOLE, WHOLE),  # whole lines: untouched
        (WHOLE + b'{"seq": 3, "sta', WHOLE),  # a power loss cut the last line: it goes
        (WHOLE + b"{", WHOLE),  # one byte of it
        (b'{"seq": 1, "sta', b""),  # the only line
        (b"", b""),
    ],
)
def test_the_next_journal_cuts_a_torn_last_line_of_the_previous_one(workspace, before: bytes, after: bytes) -> None:
    """SPEC §11: a journal line is written whole, so only a power loss leaves a last line without its
    newline; the next delivery run cuts it before starting its own journal, keeping every whole line."""
    from dmops.ledger import DeliveryJournal, delivery_dir
    from dmops.workspace import load_workspace

    ws = load_workspace(workspace())
    folder = delivery_dir(ws)
    folder.mkdir(parents=True)
    (folder / "run-000001.jsonl").write_bytes(b'{"seq": 1, "state": "sent"}\n{"seq": 2, "sta')  # an older run
    (folder / "run-000002.jsonl").write_bytes(before)
    journal = DeliveryJournal(ws)
    journal.close()
    assert (folder / "run-000002.jsonl").read_bytes() == after
    assert (folder / "run-000001.jsonl").read_bytes().endswith(b'"sta')  # only the last journal is repaired
    assert journal.path.name == "run-000003.jsonl"


def test_journal_lines_are_numbered_one_by_one_and_a_failed_write_names_the_journal(
    workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from dmops.errors import IOFailure
    from dmops.ledger import DeliveryJournal
    from dmops.workspace import load_workspace

    journal = DeliveryJournal(load_workspace(workspace()))  # the state folder does not exist yet
    assert journal.path.name == "run-000001.jsonl" and journal.path.stat().st_mode & 0o777 == 0o600
    assert [journal.append({"state": "accepted", "detail": "Grüße"}) for _ in range(3)] == [1, 2, 3]
    journal.sync(3)
    lines = journal.path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3] and "Grüße" in lines[0]

    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(IOFailure) as caught:
        journal.append({"state": "accepted"})
    assert caught.value.message == "cannot write the delivery journal: No space left on device"
    assert caught.value.location.file == journal.path
    monkeypatch.setattr(os, "fdatasync", full)
    with pytest.raises(IOFailure) as caught:
        journal.sync(4)
    assert caught.value.message == "cannot write the delivery journal: No space left on device"
    assert caught.value.location.file == journal.path
    monkeypatch.undo()
    journal.close()


def test_a_journal_that_cannot_start_names_its_folder_and_the_reason(workspace) -> None:
    from dmops.errors import IOFailure
    from dmops.ledger import DeliveryJournal, delivery_dir
    from dmops.workspace import load_workspace

    ws = load_workspace(workspace())
    folder = delivery_dir(ws)
    folder.parent.mkdir(parents=True)
    folder.write_text("not a folder\n", encoding="utf-8")  # a file where the journals' folder belongs
    with pytest.raises(IOFailure) as caught:
        DeliveryJournal(ws)
    assert caught.value.message == "cannot start a delivery journal: File exists"
    assert caught.value.location.file == folder
    assert folder.read_text(encoding="utf-8") == "not a folder\n"
