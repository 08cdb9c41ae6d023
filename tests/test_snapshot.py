"""The checked contacts snapshot (dmops/snapshot.py): used when the file and its settings are unchanged,
never when anything that shapes the contacts changed, and never half-written."""

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

from tests.planning import run_cli as run
from tests.planning import write
from tests.test_send import EMAIL, WS

PEOPLE = """\
contact_id,first_name,email,phone,email_opt_in,sms_opt_in,tier
00001,Li,li@example.com,13800138000,yes,yes,gold
00002,Emma,emma@example.org,+447700900123,yes,no,gold
00003,Wei,wei@example.com,13800138001,no,yes,gold
"""


def _snapshots(root: Path) -> list[str]:
    folder = root / ".dmops" / "snapshots"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _decisions(root: Path, tmp_path: Path, name: str = "out.csv") -> str:
    """plan --out after validate (which keeps a snapshot when there is none for the file as it is)."""
    assert run(root, "validate")[0] in (0, 1)
    out = tmp_path / name
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", str(out))
    assert code == 0, output
    return out.read_text()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": PEOPLE, "campaigns/promo.yaml": EMAIL})


def test_the_second_command_reads_the_snapshot_and_decides_the_same(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan-only.csv"
    assert run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", str(out))[0] == 0
    assert _snapshots(root) == []  # plan writes nothing, not even a snapshot
    first = _decisions(root, tmp_path, "first.csv")
    assert first == out.read_text()
    names = _snapshots(root)
    assert len(names) == 2 and names[0].endswith(".json") and names[1].endswith(".parquet")
    assert oct((root / ".dmops" / "snapshots" / names[1]).stat().st_mode & 0o777) == "0o600"
    second = _decisions(root, tmp_path, "second.csv")
    assert second == first and _snapshots(root) == names
    code, output = run(root, "validate")
    assert code == 0 and "contacts: 3 rows, 7 columns (contacts.csv, UTF-8 detected)" in output, output


def test_a_changed_file_is_read_again(root: Path, tmp_path: Path) -> None:
    before = _decisions(root, tmp_path, "before.csv")
    (root / "contacts.csv").write_text(
        PEOPLE.replace("00003,Wei,wei@example.com,13800138001,no", "00003,Wei,wei@example.com,13800138001,yes")
    )
    after = _decisions(root, tmp_path, "after.csv")
    assert "00003,excluded,no_consent" in before and "00003,send" in after
    assert len(_snapshots(root)) == 2  # the old snapshot is gone


def test_a_changed_mapping_phone_region_or_consent_is_seen(root: Path, tmp_path: Path) -> None:
    _decisions(root, tmp_path)
    # phone region: 13800138000 is a Chinese number only when phones without + are read as CN
    code, output = run(root, "validate")
    assert "no valid phone 1," in output, output  # the +44 number is not a valid one
    (root / "dmops.yaml").write_text(WS.replace("phone_region: CN", "phone_region: US"))
    code, output = run(root, "validate")
    assert "no valid phone 3," in output, output
    # consent values: only "yes" now means yes for email — and a mapping of the id column
    (root / "dmops.yaml").write_text(
        WS.replace(
            "consent: {email: email_opt_in, sms: sms_opt_in}",
            "consent: {email: {column: optin, true_values: [ja]}, sms: sms_opt_in}",
        ).replace("contacts: contacts.csv", "contacts: {path: contacts.csv, columns: {optin: email_opt_in}}")
    )
    code, output = run(root, "validate")
    assert code == 0 and "no email consent 3" in output, output


def test_a_changed_encoding_setting_is_seen(root: Path, tmp_path: Path) -> None:
    text = PEOPLE.replace("Wei", "王伟")  # bytes that are not UTF-8
    (root / "contacts.csv").write_bytes(text.encode("gb18030"))
    code, output = run(root, "validate")
    assert code == 0 and "GB18030 detected" in output, output
    (root / "dmops.yaml").write_text(
        WS.replace("contacts: contacts.csv", "contacts: {path: contacts.csv, encoding: utf-8}")
    )
    code, output = run(root, "validate")
    assert code == 65, output  # the same bytes are not UTF-8: the snapshot of the GB18030 read is not used


def test_a_broken_or_half_written_snapshot_is_never_used(root: Path, tmp_path: Path) -> None:
    good = _decisions(root, tmp_path, "good.csv")
    folder = root / ".dmops" / "snapshots"
    [meta] = folder.glob("*.json")
    [table] = folder.glob("*.parquet")
    table.write_bytes(table.read_bytes()[:100])  # a truncated table under a good description
    assert _decisions(root, tmp_path, "a.csv") == good
    meta.unlink()  # a table without its description (killed between the two renames)
    assert _decisions(root, tmp_path, "b.csv") == good
    info = json.loads(next(folder.glob("*.json")).read_text())
    info["key"] = "0" * 64
    next(folder.glob("*.json")).write_text(json.dumps(info))  # a description of another file
    assert _decisions(root, tmp_path, "c.csv") == good


def test_kill_9_while_the_snapshot_is_written_leaves_none_in_use(tmp_path: Path) -> None:
    rows = ["contact_id,first_name,email,phone,email_opt_in,sms_opt_in,tier"]
    rows += [f"{i:06d},N{i},u{i}@example.com,+86138{i:08d},{'yes' if i % 3 else 'no'},yes,gold" for i in range(40_000)]
    root = write(
        tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": "\n".join(rows) + "\n", "campaigns/promo.yaml": EMAIL}
    )
    rng = random.Random(int(os.environ.get("DMOPS_KILL_SEED", "7")))
    command = [sys.executable, "-m", "dmops", "-w", str(root), "validate"]
    subprocess.run(command, capture_output=True, check=True)  # a whole validate, the snapshot written at its end
    fresh = _plan_only(root, tmp_path, "fresh.csv")
    killed = 0
    for _ in range(6):
        for leftover in (root / ".dmops" / "snapshots").glob("*"):
            leftover.unlink()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        snapshots = root / ".dmops" / "snapshots"
        while process.poll() is None and not (snapshots.is_dir() and any(snapshots.iterdir())):
            time.sleep(0.002)  # until the checked table starts being written (however loaded the machine is)
        time.sleep(rng.uniform(0, 0.05))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            killed += 1
        process.wait()
        assert _plan_only(root, tmp_path, "after.csv") == fresh  # whatever the kill left is unused or whole
    assert killed >= 3


def _plan_only(root: Path, tmp_path: Path, name: str) -> str:
    out = tmp_path / name
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", str(out))
    assert code == 0, output
    return out.read_text()


def test_a_staging_file_left_by_a_killed_command_is_removed_not_in_the_way(root: Path, tmp_path: Path) -> None:
    from dmops import snapshot
    from dmops.workspace import load_workspace

    key = snapshot.key(load_workspace(root))
    folder = root / ".dmops" / "snapshots"
    folder.mkdir(parents=True)
    left = folder / f".contacts-{key}.parquet.{os.getpid()}.tmp"  # this pid again: the killed one is gone
    left.write_text("a partial copy of the contacts")
    code, output = run(root, "validate")
    assert code == 0, output
    assert not left.exists() and len(_snapshots(root)) == 2


def test_a_snapshot_is_read_in_place_and_never_removed_under_its_reader(root: Path) -> None:
    """A command reads the snapshot in place (``contacts`` is a view of it, not a copy). A newer snapshot,
    written by another command after the contacts file changed, leaves the one still being read alone; the
    next validate after the reader ended removes it."""
    from dmops import snapshot
    from dmops.contacts import load_contacts
    from dmops.db import connect
    from dmops.workspace import load_workspace

    assert run(root, "validate")[0] == 0
    (old,) = [n for n in _snapshots(root) if n.endswith(".parquet")]
    con = connect()
    try:
        info = load_contacts(con, load_workspace(root))
        assert info.snapshot_file is not None and info.snapshot_file.name == old
        kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = 'contacts'").fetchall()
        assert kind == [("VIEW",)]
        (root / "contacts.csv").write_text(PEOPLE + "00004,Ana,ana@example.com,,yes,no,silver\n", encoding="utf-8")
        other = subprocess.run(  # another process: this one holds the old snapshot
            [sys.executable, "-m", "dmops", "-w", str(root), "validate"], capture_output=True, text=True
        )
        assert other.returncode == 0, other.stderr
        names = _snapshots(root)
        assert old in names and len([n for n in names if n.endswith(".parquet")]) == 2
        assert con.execute("SELECT count(*) FROM contacts").fetchall() == [(3,)]  # still the file it read
    finally:
        con.close()
        snapshot.release()
    assert run(root, "validate")[0] == 0
    names = _snapshots(root)
    assert old not in names and len(names) == 2 and old.removesuffix(".parquet") + ".json" not in names


def test_read_in_place_names_the_snapshot_only_while_contacts_is_its_view(root: Path) -> None:
    """What Spark is handed (SPEC §13): the snapshot file, while ``contacts`` is the view of it; nothing when
    the contacts were read from the file, or replaced (traits added)."""
    from dmops import snapshot
    from dmops.contacts import load_contacts, read_in_place, replace_contacts
    from dmops.db import connect
    from dmops.workspace import load_workspace

    ws = load_workspace(root)
    for validated in (False, True):
        con = connect()
        try:
            info = load_contacts(con, ws, ["first_name"])
            found = read_in_place(con)
            if not validated:
                assert info.snapshot_file is None and found is None  # no snapshot yet: a table of the file
            else:
                assert found is not None and found == info.snapshot_file
                columns = [r[0] for r in con.execute("SELECT column_name FROM (DESCRIBE contacts)").fetchall()]
                assert "first_name" in columns and "tier" not in columns  # the view reads some columns
                replace_contacts(con, "SELECT *, 1 AS extra FROM contacts")
                assert read_in_place(con) is None
        finally:
            con.close()
            snapshot.release()
        assert run(root, "validate")[0] == 0


def test_forget_waits_for_a_command_still_reading_the_snapshot(root: Path) -> None:
    """`dmops forget` deletes every snapshot (they copy the contact list); one that another command is
    reading in place is deleted once that command has finished with it, never from under it."""
    from dmops import snapshot
    from dmops.workspace import load_workspace

    assert run(root, "validate")[0] == 0
    reader = subprocess.Popen(  # another command: reads the snapshot, says so, reads it again a second later
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from dmops.contacts import load_contacts;"
            " from dmops.db import connect; from dmops.workspace import load_workspace;"
            " con = connect(); info = load_contacts(con, load_workspace(Path(sys.argv[1])));"
            " print(info.snapshot_file is not None, flush=True); time.sleep(1);"
            " print(con.execute('SELECT count(*) FROM contacts').fetchall()[0][0], flush=True)",
            str(root),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None and reader.stdout.readline() == "True\n"
    assert snapshot.drop_all(load_workspace(root)) == 2
    assert reader.stdout.readline() == "3\n"  # it read the file to the end: the deletion waited
    assert reader.wait() == 0 and _snapshots(root) == []
