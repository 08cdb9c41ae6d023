"""dmops never writes through a symbolic link planted in the workspace: it refuses with 73 naming the path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dmops.durable import staging_path
from tests.planning import run_cli as run
from tests.planning import write
from tests.test_send import EMAIL, WS, contacts

AT = "2026-11-30T12:00"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(5), "campaigns/promo.yaml": EMAIL})


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "precious.txt"
    path.parent.mkdir()
    path.write_text("precious\n", encoding="utf-8")
    return path


def test_a_linked_run_lock_is_not_overwritten(root: Path, victim: Path) -> None:
    (root / ".dmops").mkdir()
    (root / ".dmops" / "send.lock").symlink_to(victim)
    code, output = run(root, "send", "promo", "--at", AT)
    assert code == 73
    assert "error: .dmops/send.lock: is a symbolic link; dmops does not write through links" in output
    assert victim.read_text(encoding="utf-8") == "precious\n"


def test_a_linked_outbox_folder_gets_no_personal_data(root: Path, victim: Path) -> None:
    (root / "outbox").mkdir()
    (root / "outbox" / "promo").symlink_to(victim.parent, target_is_directory=True)
    code, output = run(root, "send", "promo", "--at", AT)
    assert code == 73
    assert "error: outbox/promo: is a symbolic link" in output
    assert sorted(p.name for p in victim.parent.iterdir()) == ["precious.txt"]


def test_a_dangling_ledger_link_creates_no_database_outside(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside-ledger.duckdb"
    (root / ".dmops").mkdir()
    (root / ".dmops" / "ledger.duckdb").symlink_to(outside)
    for args in (("send", "promo", "--at", AT), ("plan", "promo", "--at", AT)):
        code, output = run(root, *args)
        assert code == 73, output
        assert "error: .dmops/ledger.duckdb: is a symbolic link" in output
    assert not outside.exists()


@pytest.mark.parametrize("command", ["report", "plan"])
def test_a_link_at_the_staging_file_is_not_written_through(root: Path, victim: Path, command: str) -> None:
    out = root / ("report.json" if command == "report" else "plan.csv")
    staging = staging_path(out)
    assert f".{os.getpid()}." in staging.name  # the staging name this process uses
    staging.symlink_to(victim)
    args = ("report", "promo", "--format", "json") if command == "report" else ("plan", "promo", "--at", AT)
    code, output = run(root, *args, "--out", str(out))
    assert code == 73, output
    assert "a file or link is in the way of the staging file" in output
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert not out.exists()


def test_a_link_given_as_the_out_file_is_replaced_not_followed(root: Path, victim: Path) -> None:
    out = root / "report.json"
    out.symlink_to(victim)
    code, output = run(root, "report", "promo", "--format", "json", "--out", str(out))
    assert code == 0, output
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert not out.is_symlink() and out.read_text(encoding="utf-8").startswith("{")


def test_a_link_above_the_workspace_is_the_users_own_and_is_followed(root: Path, tmp_path: Path) -> None:
    # Only links inside the workspace are refused: a workspace reached through a linked folder above it
    # (a home folder on another disk, macOS's /tmp) sends, plans --out and imports as usual.
    (tmp_path / "via").symlink_to(root.parent, target_is_directory=True)
    linked = tmp_path / "via" / root.name
    assert run(linked, "send", "promo", "--at", AT)[0] == 0
    assert run(linked, "plan", "promo", "--at", AT, "--out", str(linked / "plan.csv"))[0] == 0
    assert len(list((root / "outbox" / "promo" / "once").iterdir())) == 1 and (root / "plan.csv").is_file()
