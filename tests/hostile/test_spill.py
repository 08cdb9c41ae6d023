"""DuckDB's spill files (rows of the contact list) go to a folder only this user can enter, never to `.tmp`
in whatever directory the user runs dmops from."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dmops.db import connect, spill_directory


def test_a_connection_spills_to_the_private_folder() -> None:
    con = connect()
    where = con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
    con.close()
    assert where == spill_directory() and not where.endswith(".tmp")
    info = os.lstat(where)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()


@pytest.mark.parametrize("planted", ["a link to elsewhere", "a folder others can enter", "a file"])
def test_a_planted_name_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    name = tmp_path / f"dmops-{os.getuid()}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o777)
    if planted == "a link to elsewhere":
        name.symlink_to(elsewhere)
    elif planted == "a folder others can enter":
        name.mkdir()
        name.chmod(0o755)
    else:
        name.write_text("")
    chosen = Path(spill_directory.__wrapped__())
    assert chosen != name and chosen.resolve() != elsewhere.resolve()
    assert chosen.parent == tmp_path and stat.S_IMODE(chosen.stat().st_mode) == 0o700
