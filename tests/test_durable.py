"""write_atomic: whatever stops it, the file is either the old one or the new one, and no staging file is left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dmops import durable
from dmops.durable import staging_path, write_atomic, write_new
from dmops.errors import OutputError


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, name: str, staging: Path) -> list[str]:
    """Make ``os.<name>`` on ``staging`` do its work and then raise KeyboardInterrupt, as a Ctrl-C delivered
    the moment the call returns does (Python runs the signal handler right after a call)."""
    real = getattr(os, name)
    calls: list[str] = []

    def interrupted(*args: object, **kwargs: object) -> object:
        result = real(*args, **kwargs)
        if Path(str(args[0])) == staging:
            calls.append(name)
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(durable.os, name, interrupted)
    return calls


@pytest.mark.parametrize("text", ["new\n", b"new\n"])
def test_write_atomic_replaces_the_file(tmp_path: Path, text: str | bytes) -> None:
    target = tmp_path / "state.json"
    target.write_text("old\n", encoding="utf-8")
    write_atomic(target, text)
    assert target.read_text(encoding="utf-8") == "new\n"
    assert os.listdir(tmp_path) == ["state.json"]


def test_ctrl_c_as_the_staging_file_is_created_leaves_no_staging_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    target.write_text("old\n", encoding="utf-8")
    calls = _interrupt_after(monkeypatch, "open", staging_path(target))
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "new\n")
    assert calls == ["open"]  # the interrupt came after the staging file was created
    assert os.listdir(tmp_path) == ["state.json"]
    assert target.read_text(encoding="utf-8") == "old\n"


def test_ctrl_c_before_the_rename_leaves_the_old_file_and_no_staging_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    target.write_text("old\n", encoding="utf-8")
    staging = staging_path(target)
    real_fsync_file = durable.fsync_file

    def fsync_then_interrupt(path: Path) -> None:
        real_fsync_file(path)
        assert path == staging and staging.read_text(encoding="utf-8") == "new\n"
        raise KeyboardInterrupt

    monkeypatch.setattr(durable, "fsync_file", fsync_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "new\n")
    assert os.listdir(tmp_path) == ["state.json"]
    assert target.read_text(encoding="utf-8") == "old\n"


@pytest.mark.parametrize("write", [write_atomic, write_new], ids=["write_atomic", "write_new"])
def test_a_file_in_the_way_of_the_staging_file_is_refused_and_left_alone(tmp_path: Path, write) -> None:
    target = tmp_path / "state.json"
    staging = staging_path(target)
    staging.write_text("someone else's\n", encoding="utf-8")
    with pytest.raises(OutputError, match="in the way of the staging file"):
        write(target, b"new\n")
    assert staging.read_text(encoding="utf-8") == "someone else's\n"
    assert not target.exists()


def test_ctrl_c_while_a_file_is_in_the_way_leaves_that_file_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interrupt lands as the refusal is being built: the file that was there is still not removed."""
    target = tmp_path / "state.json"
    staging = staging_path(target)
    staging.write_text("someone else's\n", encoding="utf-8")

    def interrupted(_: Path) -> OutputError:
        raise KeyboardInterrupt

    monkeypatch.setattr(durable, "_in_the_way", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "new\n")
    assert staging.read_text(encoding="utf-8") == "someone else's\n"


def test_ctrl_c_as_write_new_creates_its_staging_file_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "secret.key"
    calls = _interrupt_after(monkeypatch, "open", staging_path(target))
    with pytest.raises(KeyboardInterrupt):
        write_new(target, b"key")
    assert calls == ["open"] and os.listdir(tmp_path) == []
