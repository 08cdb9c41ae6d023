"""The token secret: an empty or short key is refused, and a crash while creating it leaves no key at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmops import secret
from dmops.cli import app
from dmops.errors import IOFailure
from dmops.workspace import load_workspace
from tests.planning import write
from tests.test_send import EMAIL, WS, contacts


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(5), "campaigns/promo.yaml": EMAIL})


@pytest.mark.parametrize("size", [0, 31])
def test_a_short_secret_is_refused_and_nothing_is_sent(root: Path, size: int) -> None:
    (root / ".dmops").mkdir()
    (root / ".dmops" / "secret.key").write_bytes(b"k" * size)
    result = CliRunner().invoke(app, ["-w", str(root), "send", "promo", "--at", "2026-11-30T12:00"])
    assert result.exit_code == 78, result.output
    assert result.stderr.startswith(
        f"error: .dmops/secret.key: the token secret is {size} bytes long; it must be at least 32"
    )
    assert not (root / "outbox").exists()


def test_a_32_byte_secret_is_used(root: Path) -> None:
    (root / ".dmops").mkdir()
    (root / ".dmops" / "secret.key").write_bytes(b"k" * 32)
    assert secret.load_secret(load_workspace(root), create=True) == b"k" * 32


@pytest.mark.parametrize("failing", ["fsync", "link"])
def test_a_crash_while_creating_the_secret_leaves_no_key(root: Path, monkeypatch, failing: str) -> None:
    """The key file used to be created empty and then written: a crash between left an empty key behind."""

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(IOFailure, match="cannot create the token secret: No space left on device"):
        secret.load_secret(load_workspace(root), create=True)
    monkeypatch.undo()
    assert sorted(p.name for p in (root / ".dmops").iterdir()) == []  # no key, no staging file
    key = secret.load_secret(load_workspace(root), create=True)
    assert len(key) == 32 and (root / ".dmops" / "secret.key").read_bytes() == key
    assert (root / ".dmops" / "secret.key").stat().st_mode & 0o777 == 0o600


def test_a_symlinked_secret_is_not_followed(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.key"
    outside.write_bytes(b"o" * 32)
    (root / ".dmops").mkdir()
    (root / ".dmops" / "secret.key").symlink_to(outside)
    with pytest.raises(IOFailure, match="cannot read the token secret"):
        secret.load_secret(load_workspace(root), create=True)
