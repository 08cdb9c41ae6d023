"""`dmops init`: the repository's own demo workspace, never overwriting anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dmops.scaffold import DEMO_ENTRIES, demo_files
from tests.conftest import REPO


def test_init_writes_the_repository_demo_workspace_byte_for_byte(cli, tmp_path: Path) -> None:
    target = tmp_path / "shop"
    result = cli("init", target)
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    expected = sorted(
        str(p.relative_to(REPO))
        for entry in DEMO_ENTRIES
        for p in ([REPO / entry] if (REPO / entry).is_file() else (REPO / entry).rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert written == expected
    for relative in written:
        assert (target / relative).read_bytes() == (REPO / relative).read_bytes(), relative
    assert "next: cd" in result.output


def test_initialised_workspace_validates(cli, tmp_path: Path) -> None:
    assert cli("init", tmp_path / "w").exit_code == 0
    result = cli("--workspace", tmp_path / "w", "validate")
    assert result.exit_code == 0, result.output


def test_init_refuses_to_overwrite_and_writes_nothing(cli, tmp_path: Path) -> None:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "welcome.yaml").write_text("mine\n")
    result = cli("init", tmp_path)
    assert result.exit_code == 73
    assert "never overwrites" in result.output
    assert (tmp_path / "campaigns" / "welcome.yaml").read_text() == "mine\n"
    assert not (tmp_path / "dmops.yaml").exists()


def test_demo_files_cover_data_and_campaigns() -> None:
    names = {relative for relative, _ in demo_files()}
    assert {"dmops.yaml", "samples/contacts.csv", "samples/contacts.parquet", "samples/optouts.csv"} <= names
    assert {"campaigns/welcome.yaml", "campaigns/winback.yaml", "campaigns/flash-sale.yaml"} <= names


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "dmops", "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout.startswith("dmops ")


def test_usage_error_is_exit_2(cli) -> None:
    assert cli("validate", "--format", "xml").exit_code == 2
    assert cli("no-such-command").exit_code == 2


def test_crashes_never_show_local_variables() -> None:
    from dmops.cli import app

    assert app.pretty_exceptions_show_locals is False
