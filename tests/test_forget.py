"""``dmops forget`` (SPEC §12): a person erased from everything dmops keeps, and kept out of every later plan."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dmops.ledger import DeliveryJournal
from dmops.outbox import verified_messages
from dmops.workspace import load_workspace
from tests.conftest import BASIC_WORKSPACE

WORKSPACE = BASIC_WORKSPACE + "suppressions: [optouts.csv]\n"

# The person to erase: every one of these strings is theirs alone.
PERSON = {
    "id": "zq-erin-7731",
    "name": "Zebulonia",
    "email": "Erin.Erasable@Example.org",
    "phone": "+8613912345678",
}
SECRETS = [PERSON["id"], PERSON["name"], "erin.erasable@example.org", "Erin.Erasable", "13912345678"]


def contacts(extra: str = "") -> str:
    rows = ["contact_id,first_name,email,phone,email_opt_in,sms_opt_in,tier"]
    rows.append(f"{PERSON['id']},{PERSON['name']},{PERSON['email']},{PERSON['phone']},yes,yes,gold")
    rows += [f"keep-{i:04d},Kept{i},kept{i}@example.com,+86139000{i:05d},yes,yes,gold" for i in range(1, 40)]
    return "\n".join(rows) + "\n" + extra


MARKETING = """\
id: hello
name: Hello
channel: email
sender: {from: "Shop <news@shop.example.com>"}
unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"
variants:
  - id: a
    subject: "Hi {{ first_name }}"
    text: "Hello {{ first_name }}, your address is {{ email }}. Unsubscribe: {{ unsubscribe_url }}"
holdout: 0.2
"""

NOTICE = """\
id: notice
name: Notice
channel: sms
purpose: transactional
variants:
  - id: a
    text: "{{ first_name }}: your order shipped"
"""

AT = "2026-12-01T10:00"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    files = {
        "dmops.yaml": WORKSPACE,
        "contacts.csv": contacts(),
        "optouts.csv": "contact_id,address\nkeep-0003,\n",
        "campaigns/hello.yaml": MARKETING,
        "campaigns/notice.yaml": NOTICE,
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def message_of(root: Path, contact_id: str) -> dict[str, Any]:
    for path in sorted((root / "outbox").rglob("messages.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            message = json.loads(line)
            if message["contact_id"] == contact_id and message["campaign_id"] == "hello":
                return message
    raise AssertionError(f"no message for {contact_id}")


def busy_workspace(root: Path, cli: Callable[..., Any]) -> None:
    """Two sends, events about the person (a click whose URL holds their address, a conversion, an
    unsubscribe that suppresses them) and a delivery journal line quoting their address."""
    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    assert cli("-w", root, "send", "notice", "--at", AT).exit_code == 0
    theirs = message_of(root, PERSON["id"])["message_id"]
    other = message_of(root, "keep-0001")["message_id"]
    (root / "events.csv").write_text(
        "event,ts,message_id,contact_id,revenue,url\n"
        f"open,2026-12-01 11:00,{theirs},,,\n"
        f"click,2026-12-01 11:01,{theirs},,,https://shop.example.com/?who=erin.erasable@example.org\n"
        f"conversion,2026-12-01 12:00,,{PERSON['id']},99.5,\n"
        f"unsubscribe,2026-12-01 12:30,{theirs},,,\n"
        f"open,2026-12-01 11:00,{other},,,\n"
        f"conversion,2026-12-01 12:00,,keep-0001,10,\n",
        encoding="utf-8",
    )
    assert cli("-w", root, "events", "import", root / "events.csv").exit_code == 0
    journal = DeliveryJournal(load_workspace(root))
    for message_id, detail in ((theirs, "550 5.1.1 <erin.erasable@example.org>: no such user"), (other, "250 ok")):
        journal.append(
            {
                "message_id": message_id,
                "campaign_id": "hello",
                "channel": "email",
                "transport": "mail",
                "state": "bounced" if message_id == theirs else "accepted",
                "at": datetime(2026, 12, 1, 3, tzinfo=UTC),
                "detail": detail,
            },
            sync=True,
        )
    journal.close()


def found_anywhere(root: Path, needles: list[str], *, skip: tuple[str, ...] = ()) -> list[str]:
    """Files of the workspace (the ledger checkpointed first) holding one of ``needles``, case-insensitive."""
    ledger = root / ".dmops" / "ledger.duckdb"
    if ledger.exists():
        con = duckdb.connect(str(ledger))
        con.execute("CHECKPOINT")
        con.close()
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name in skip:
            continue
        data = path.read_bytes().lower()
        hits += [f"{path.relative_to(root)}: {n}" for n in needles if n.lower().encode() in data]
    return hits


def report(root: Path, cli: Callable[..., Any]) -> dict[str, Any]:
    result = cli("-w", root, "report", "hello", "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_forget_erases_them_from_everything_and_keeps_every_report_number(root: Path, cli: Callable[..., Any]) -> None:
    busy_workspace(root, cli)
    assert found_anywhere(root, SECRETS, skip=("contacts.csv", "events.csv"))  # they are everywhere first
    before = report(root, cli)
    # their message ids and event keys are plain hashes of their contact id: a guess would give it back
    theirs = [
        json.loads(line)["message_id"]
        for path in (root / "outbox").rglob("messages.jsonl")
        for line in path.read_text(encoding="utf-8").splitlines()
        if json.loads(line)["contact_id"] == PERSON["id"]
    ]
    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    their_keys = {
        r[0] for r in con.execute("SELECT event_key FROM events WHERE contact_id = $c", {"c": PERSON["id"]}).fetchall()
    }
    con.close()
    assert len(theirs) == 2 and len(their_keys) == 4

    result = cli("-w", root, "forget", PERSON["id"], "--reason", "ticket 4711")
    assert result.exit_code == 0, result.output
    assert "1 outbox line " not in result.stdout  # two sends: one email and one SMS line
    assert "2 outbox lines removed" in result.stdout
    # the person is still in the user's own contact file, which forget names (masked) for cleaning
    assert "contacts.csv:2 still holds them" in result.stderr
    assert PERSON["email"] not in result.output and PERSON["id"] not in result.output

    assert found_anywhere(root, [*SECRETS, *theirs], skip=("contacts.csv", "events.csv")) == []
    assert report(root, cli) == before  # every total, rate and interval
    for run in (root / "outbox").rglob("manifest.json"):
        verified_messages(run.parent)  # each rewritten run matches its manifest
    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    assert not their_keys & {r[0] for r in con.execute("SELECT event_key FROM events").fetchall()}
    audit = con.execute("SELECT pseudonym, entries, events, outbox_lines, reason FROM erasure_log").fetchall()
    tombstones = con.execute("SELECT count(*) FROM erasures").fetchall()[0][0]
    suppressed = con.execute("SELECT count(*) FROM suppressions WHERE contact_id LIKE 'zq-%'").fetchall()[0][0]
    con.close()
    assert len(audit) == 1 and audit[0][0].startswith("erased-") and audit[0][3:] == (2, "ticket 4711")
    assert tombstones == 3  # the id, the email, the phone
    assert suppressed == 0  # their unsubscribe became the tombstone
    journal = next((root / ".dmops" / "deliveries").glob("run-*.jsonl")).read_text(encoding="utf-8")
    assert "250 ok" in journal  # someone else's line is untouched

    # the events file imported before the erasure, imported again: the rows about them are recognised by
    # their message's keyed id, and every row is already there
    again = cli("-w", root, "events", "import", root / "events.csv")
    assert again.exit_code == 0, again.output
    assert "0 imported, 6 already there" in again.stdout
    assert found_anywhere(root, [*SECRETS, *theirs], skip=("contacts.csv", "events.csv")) == []

    # a rerun finds nothing more to do and adds no tombstone
    again = cli("-w", root, "forget", PERSON["id"])
    assert again.exit_code == 0 and "0 outbox lines removed" in again.stdout and "0 new tombstones" in again.stdout


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(f"{PERSON['id']},Z,fresh@example.net,+8613700001111,yes,yes,gold", id="same id, new addresses"),
        pytest.param(
            "new-0099,Z, ERIN.erasable@example.ORG ,+8613700002222,yes,yes,gold", id="new id, the email in capitals"
        ),
        pytest.param(
            "new-0098,Z,other@example.net,139 1234 5678,yes,yes,gold", id="new id, the phone written nationally"
        ),
    ],
)
def test_the_erased_stay_out_of_every_plan(root: Path, cli: Callable[..., Any], row: str) -> None:
    assert cli("-w", root, "forget", PERSON["id"]).exit_code == 0
    (root / "contacts.csv").write_text(contacts().split("\n", 2)[0] + "\n" + row + "\n", encoding="utf-8")
    contact = row.split(",")[0]
    for campaign in ("hello", "notice"):  # marketing and transactional alike
        planned = cli("-w", root, "plan", campaign, "--at", AT, "--format", "json")
        assert planned.exit_code == 0, planned.output
        assert json.loads(planned.stdout)["excluded"]["suppressed"] == 1, campaign
    explained = cli("-w", root, "plan", "hello", "--at", AT, "--explain", contact)
    lines = explained.stdout.splitlines()
    check = next(i for i, line in enumerate(lines) if line.strip().startswith("3 suppressed"))
    assert "EXCLUDED" in lines[check]
    assert re.fullmatch(r"erased on \d{4}-\d{2}-\d{2}", lines[check + 1].strip())  # when, and nothing else
    assert "ERIN" not in explained.stdout and "13912345678" not in explained.stdout


def test_forget_by_address_finds_the_contact(root: Path, cli: Callable[..., Any]) -> None:
    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    result = cli("-w", root, "forget", "--address", " erin.ERASABLE@example.org ")
    assert result.exit_code == 0, result.output
    assert "forgot 1 contact id " in result.stdout and "1 outbox line removed" in result.stdout
    assert found_anywhere(root, SECRETS, skip=("contacts.csv",)) == []


def test_forget_from_a_file(root: Path, cli: Callable[..., Any]) -> None:
    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    (root / "gone.csv").write_text(f"contact_id,address\n{PERSON['id']},\n,kept1@example.com\n", encoding="utf-8")
    result = cli("-w", root, "forget", "--file", root / "gone.csv")
    assert result.exit_code == 0, result.output
    assert "forgot 2 contact ids" in result.stdout
    assert found_anywhere(root, [*SECRETS, "kept1@example.com", "keep-0001,"], skip=("contacts.csv", "gone.csv")) == []


def test_an_interrupted_erasure_blocks_plans_until_it_is_finished(root: Path, cli: Callable[..., Any]) -> None:
    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    (root / ".dmops" / "forget.pending.json").write_text(
        json.dumps({"ids": [PERSON["id"]], "emails": [], "phones": [], "handles": []}), encoding="utf-8"
    )
    blocked = cli("-w", root, "plan", "hello", "--at", AT)
    assert blocked.exit_code == 75 and "dmops forget" in blocked.stderr
    finished = cli("-w", root, "forget")
    assert finished.exit_code == 0, finished.output
    assert not (root / ".dmops" / "forget.pending.json").exists()
    assert cli("-w", root, "plan", "hello", "--at", AT).exit_code == 0
    assert found_anywhere(root, SECRETS, skip=("contacts.csv",)) == []


def test_forget_without_anyone_named_is_a_usage_error(root: Path, cli: Callable[..., Any]) -> None:
    result = cli("-w", root, "forget")
    assert result.exit_code == 78 and "name someone" in result.stderr


def test_kill_9_during_forget_of_1000_people_then_a_rerun_leaves_nothing_half_done(tmp_path: Path) -> None:
    people = 1000
    rows = ["contact_id,first_name,email,phone,email_opt_in,sms_opt_in,tier"]
    rows += [f"gone-{i:05d},Gone{i},gone{i}@erased.example,,yes,no,gold" for i in range(people)]
    rows += [f"stay-{i:05d},Stay{i},stay{i}@kept.example,,yes,no,gold" for i in range(200)]
    base = tmp_path / "base"
    files = {
        "dmops.yaml": WORKSPACE.replace("suppressions: [optouts.csv]\n", ""),
        "contacts.csv": "\n".join(rows) + "\n",
        "campaigns/hello.yaml": MARKETING,
        "gone.txt": "\n".join(f"gone-{i:05d}" for i in range(people)) + "\n",
    }
    for name, text in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text, encoding="utf-8")
    env = {**os.environ, "NO_COLOR": "1"}

    def dmops(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "dmops", "-w", str(root), *args]
        return subprocess.run(command, capture_output=True, text=True, env=env)

    def copy(name: str) -> Path:
        target = tmp_path / name
        subprocess.run(["cp", "-a", str(base), str(target)], check=True)
        return target

    assert dmops(base, "send", "hello", "--at", AT).returncode == 0
    before = json.loads(dmops(base, "report", "hello", "--format", "json").stdout)
    erased = [f"gone{i}@erased.example" for i in range(people)] + [f"gone-{i:05d}" for i in range(people)]

    def clean(root: Path) -> None:
        hits = found_anywhere(root, erased, skip=("contacts.csv", "gone.txt"))
        assert hits == [], hits[:5]
        for run in (root / "outbox").rglob("manifest.json"):
            verified_messages(run.parent)
        assert json.loads(dmops(root, "report", "hello", "--format", "json").stdout) == before
        assert not (root / ".dmops" / "forget.pending.json").exists()

    whole = copy("whole")
    started = time.monotonic()
    assert dmops(whole, "forget", "--file", str(whole / "gone.txt")).returncode == 0
    took = time.monotonic() - started
    clean(whole)

    # the same erasure, each time on a fresh copy, killed at a moment after it began in earnest (the
    # pending file written), then the same command run again
    interrupted = 0
    for attempt, delay in enumerate((0.0, 0.1, 0.3)):
        root = copy(f"kill{attempt}")
        command = [sys.executable, "-m", "dmops", "-w", str(root), "forget", "--file", str(root / "gone.txt")]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        pending = root / ".dmops" / "forget.pending.json"
        while not pending.exists() and proc.poll() is None:
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        interrupted += pending.exists()
        rerun = dmops(root, "forget", "--file", str(root / "gone.txt"))
        assert rerun.returncode == 0, rerun.stderr
        clean(root)
    assert interrupted >= 2, f"killed mid-erasure only {interrupted} of 3 times (forget took {took:.2f} s)"


def test_events_about_an_erased_contact_come_back_under_the_pseudonym(root: Path, cli: Callable[..., Any]) -> None:
    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    theirs = message_of(root, PERSON["id"])["message_id"]
    assert cli("-w", root, "forget", PERSON["id"]).exit_code == 0
    # the provider's next export still names them, by message and by contact id
    (root / "late.csv").write_text(
        "event,ts,message_id,contact_id,revenue,url\n"
        f"click,2026-12-02 11:01,{theirs},{PERSON['id']},,https://shop.example.com/?who=erin.erasable@example.org\n"
        f"conversion,2026-12-02 12:00,,{PERSON['id']},42,\n",
        encoding="utf-8",
    )
    result = cli("-w", root, "events", "import", root / "late.csv")
    assert result.exit_code == 0, result.output
    assert "2 imported" in result.stdout
    assert found_anywhere(root, SECRETS, skip=("contacts.csv", "late.csv")) == []
    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    rows = con.execute("SELECT event, contact_id, url, revenue FROM events ORDER BY event").fetchall()
    alias = con.execute("SELECT DISTINCT contact_id FROM entries WHERE contact_id LIKE 'erased-%'").fetchall()
    con.close()
    assert [(e, c, u, r) for e, c, u, r in rows] == [
        ("click", alias[0][0], None, 0.0),
        ("conversion", alias[0][0], None, 42.0),
    ]
    # imported again: the same rows, already there
    assert "0 imported, 2 already there" in cli("-w", root, "events", "import", root / "late.csv").stdout


def test_where_they_still_are_names_only_their_lines(root: Path, cli: Callable[..., Any]) -> None:
    (root / "optouts.csv").write_text(
        "contact_id,address\nkeep-0003,\n,erin.erasable@EXAMPLE.org\n,139-1234-5678\n", encoding="utf-8"
    )
    result = cli("-w", root, "forget", "--address", "erin.erasable@example.org")  # no phone named: none matched
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "still holds them" in line]
    # the contact's row (by its id, email and phone: the contact list gives the phone) and both opt-out rows
    assert [w.split(" still")[0] for w in warnings] == [
        "warning: contacts.csv:2",
        "warning: optouts.csv:3",
        "warning: optouts.csv:4",
    ]
    by_address_only = cli("-w", root, "forget", "--address", "nobody@example.net")
    assert "still holds them" not in by_address_only.stderr  # a cell without digits is not a phone match


def test_without_the_secret_the_tombstones_are_not_ignored(root: Path, cli: Callable[..., Any]) -> None:
    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    assert cli("-w", root, "forget", PERSON["id"]).exit_code == 0
    (root / ".dmops" / "secret.key").unlink()  # lost, or deleted on a wrong hint
    for args in (["plan", "hello", "--at", AT], ["send", "notice", "--at", AT]):
        result = cli("-w", root, *args)
        assert result.exit_code == 78, result.output
        assert "the workspace secret is missing, and the erasure tombstones need it" in result.stderr
    assert not (root / ".dmops" / "secret.key").exists()  # never replaced by a new one
    assert not (root / "outbox" / "notice").exists()


def test_an_outbox_export_waits_for_an_unfinished_erasure(root: Path, cli: Callable[..., Any], tmp_path: Path) -> None:
    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    (root / ".dmops" / "forget.pending.json").write_text(json.dumps({"ids": [PERSON["id"]]}), encoding="utf-8")
    result = cli("-w", root, "outbox", "export", "--eml", tmp_path / "eml")
    assert result.exit_code == 75 and not (tmp_path / "eml").exists()


def test_finishing_an_interrupted_erasure_counts_it_once(root: Path, cli: Callable[..., Any]) -> None:
    """Killed after the outbox was rewritten (and with a half-written ledger copy left): the rerun records
    the run's new count, the lines removed before the kill and the reason once, and leaves no copy."""
    from dmops import forget

    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    ws = load_workspace(root)
    people = forget.People(ids={PERSON["id"]}, emails={"erin.erasable@example.org"})
    state = {"reason": "ticket 9", "started_at": "2026-12-02T08:00:00", "outbox_lines": 0}
    forget._write_pending(ws, people, state)
    state["outbox_lines"] = forget._outbox(ws, people, set())
    forget._write_pending(ws, people, state)
    stale = root / ".dmops" / ".ledger.duckdb.99999.tmp"
    stale.write_bytes(b"a half copy holding erin.erasable@example.org")
    assert state["outbox_lines"] == 1

    finished = cli("-w", root, "forget")
    assert finished.exit_code == 0, finished.output
    assert not stale.exists()
    manifest = json.loads(next((root / "outbox" / "hello").rglob("manifest.json")).read_text())
    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    runs = con.execute("SELECT count, sha256 FROM runs WHERE campaign_id = 'hello'").fetchall()
    audit = con.execute("SELECT erased_at, outbox_lines, reason FROM erasure_log").fetchall()
    con.close()
    assert runs == [(manifest["count"], manifest["sha256"])]
    assert audit == [(datetime(2026, 12, 2, 8, 0), 1, "ticket 9")]
    assert found_anywhere(root, SECRETS, skip=("contacts.csv",)) == []

    # killed again after the new ledger was in place, before the pending file went: nothing is added
    forget._write_pending(ws, people, state)
    assert cli("-w", root, "forget").exit_code == 0
    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM erasure_log").fetchall() == [(1,)]
    con.close()


def test_an_address_is_lower_cased_as_the_contact_list_is(root: Path, cli: Callable[..., Any]) -> None:
    (root / "contacts.csv").write_text(contacts("greek-0001,Sigma,ΣΑΣ@example.org,,yes,yes,gold\n"), encoding="utf-8")
    result = cli("-w", root, "forget", "--address", "ΣΑΣ@Example.ORG")
    assert result.exit_code == 0, result.output
    assert "forgot 1 contact id " in result.stdout  # greek-0001, found by its email key


def test_each_erasure_keeps_the_earlier_ones(root: Path, cli: Callable[..., Any]) -> None:
    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    assert cli("-w", root, "forget", PERSON["id"], "--reason", "first").exit_code == 0
    assert cli("-w", root, "forget", "keep-0001", "--reason", "second").exit_code == 0
    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    reasons = con.execute("SELECT reason FROM erasure_log ORDER BY reason").fetchall()
    tombstones = con.execute("SELECT count(*) FROM erasures").fetchall()[0][0]
    con.close()
    assert reasons == [("first",), ("second",)] and tombstones == 6  # each: the id, the email, the phone


def test_copies_a_killed_erasure_left_are_removed(root: Path, cli: Callable[..., Any]) -> None:
    """A kill while a delivery journal or the pending file was being rewritten leaves its hidden copy,
    which holds their message ids or their id and addresses: the next erasure removes it."""
    busy_workspace(root, cli)
    journal = next((root / ".dmops" / "deliveries").glob("run-*.jsonl"))
    copies = [
        journal.with_name(f".{journal.name}.99999.tmp"),
        root / ".dmops" / ".forget.pending.json.99999.tmp",
    ]
    for copy in copies:
        copy.write_text(f'{{"ids": ["{PERSON["id"]}"], "emails": ["erin.erasable@example.org"]}}\n', encoding="utf-8")
    assert cli("-w", root, "forget", "keep-0002").exit_code == 0
    assert [c for c in copies if c.exists()] == []


class _FailingConnection:
    """A DuckDB connection whose statements starting with ``fail_on`` raise an I/O error (a disk gone bad)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, fail_on: str) -> None:
        self._con, self._fail_on = con, fail_on

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.lstrip().startswith(self._fail_on):
            raise duckdb.IOException("write error")
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def ledger_rows(root: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    rows = con.execute("SELECT * FROM entries ORDER BY ALL").fetchall()
    con.close()
    return rows


@pytest.mark.parametrize("fail_on", ["ATTACH $p AS new", "INSERT INTO new.events"])  # before and after it exists
def test_a_failed_copy_of_the_ledger_leaves_it_whole_and_the_erasure_pending(
    root: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, fail_on: str
) -> None:
    import dmops.ledger

    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    before = ledger_rows(root)
    real_connect = dmops.ledger.connect
    monkeypatch.setattr(dmops.ledger, "connect", lambda *a, **k: _FailingConnection(real_connect(*a, **k), fail_on))
    result = cli("-w", root, "forget", PERSON["id"])
    assert result.exit_code == 74
    assert "cannot rewrite the ledger (IOException)" in result.stderr
    assert str(Path(".dmops") / "ledger.duckdb") in result.stderr
    assert [p.name for p in (root / ".dmops").iterdir() if p.name.startswith(".ledger")] == []  # no staging copy
    assert ledger_rows(root) == before
    assert (root / ".dmops" / "forget.pending.json").exists()
    monkeypatch.undo()
    assert cli("-w", root, "forget").exit_code == 0  # the rerun finishes it
    assert PERSON["id"] not in {row[2] for row in ledger_rows(root)}


def test_a_ledger_that_cannot_be_replaced_is_named_with_the_reason(
    root: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import dmops.ledger

    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0

    def full_disk(staging: Path, final: Path, *, result: bool = True) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(dmops.ledger, "publish", full_disk)
    result = cli("-w", root, "forget", PERSON["id"])
    assert result.exit_code == 74
    assert "cannot replace the ledger: No space left on device" in result.stderr
    assert str(Path(".dmops") / "ledger.duckdb") in result.stderr
    assert PERSON["id"] in {row[2] for row in ledger_rows(root)}


def test_a_ctrl_c_after_the_ledger_is_replaced_still_stops_forget(
    root: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replacing the ledger is not the erasure's end (the snapshots and the pending file follow): a Ctrl-C
    there stops the command as anywhere before, and the pending file makes the next run finish the work."""
    from dmops import interrupts, snapshot

    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    real_drop_all = snapshot.drop_all

    def ctrl_c_then_drop(ws: Any) -> int:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):  # the handler runs between two bytecodes of this thread
            time.sleep(0.01)
        return real_drop_all(ws)

    monkeypatch.setattr(snapshot, "drop_all", ctrl_c_then_drop)
    previous = signal.getsignal(signal.SIGINT)
    interrupts.install()
    try:
        stopped = cli("-w", root, "forget", PERSON["id"])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopped.exit_code == 130
    assert (root / ".dmops" / "forget.pending.json").exists()
    monkeypatch.undo()
    assert cli("-w", root, "forget").exit_code == 0
    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM erasure_log").fetchall() == [(1,)]
    con.close()


class _SpillWatch:
    """A DuckDB connection that notes, when the erasure's copy begins, where DuckDB would spill and what that
    folder then holds; at the copy's COMMIT it leaves a block file there, as DuckDB does when a copy larger
    than its memory limit spills."""

    seen: list[tuple[str, list[str]]]

    def __init__(self, con: duckdb.DuckDBPyConnection, seen: list[tuple[str, list[str]]]) -> None:
        self._con, self.seen = con, seen

    def execute(self, sql: str, *args: Any) -> Any:
        (spill,) = self._con.execute("SELECT current_setting('temp_directory')").fetchone() or ("",)
        folder = Path(spill)
        if sql.startswith("ATTACH $p AS old"):
            self.seen.append((spill, sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []))
        if sql == "COMMIT":
            folder.mkdir(exist_ok=True)
            (folder / "duckdb_temp_block-4611686018427387905.block").write_text(PERSON["email"], encoding="utf-8")
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def test_the_copy_spills_only_into_the_state_folder_and_leaves_nothing_there(
    root: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ledger copy larger than memory spills to disk: the spill (their rows) stays in the state folder, not
    the working directory or /tmp, and a killed erasure's spill files are gone before the next copy starts
    and the folder after it."""
    import dmops.ledger

    assert cli("-w", root, "send", "hello", "--at", AT).exit_code == 0
    spill = root / ".dmops" / ".erase-spill"
    spill.mkdir()
    (spill / "duckdb_temp_block-4611686018427387904.block").write_text(PERSON["email"], encoding="utf-8")
    seen: list[tuple[str, list[str]]] = []
    real_connect = dmops.ledger.connect
    monkeypatch.setattr(dmops.ledger, "connect", lambda *a, **k: _SpillWatch(real_connect(*a, **k), seen))
    assert cli("-w", root, "forget", PERSON["id"]).exit_code == 0
    assert seen == [(str(spill), [])]
    assert not spill.exists()
