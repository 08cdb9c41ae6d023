"""Every command is documented: in its --help and in the README."""

from __future__ import annotations

import pytest
import typer.main

from dmops.cli import app
from tests.conftest import REPO

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_there_are_commands() -> None:
    assert {"validate", "init"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help(name: str) -> None:
    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    assert command.help and len(command.help) > 20


@pytest.mark.parametrize("name", COMMANDS)
def test_command_is_in_readme(name: str) -> None:
    assert f"### `dmops {name}" in (REPO / "README.md").read_text(encoding="utf-8")


def test_changelog_has_an_unreleased_section() -> None:
    assert "## [Unreleased]" in (REPO / "CHANGELOG.md").read_text(encoding="utf-8")


def test_the_code_map_names_every_module() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    codemap = readme.split("## Code map", 1)[1].split("\n## ", 1)[0]
    modules = {p.name for p in (REPO / "dmops").glob("*.py")} - {"__init__.py", "__main__.py"}
    assert {m for m in modules if f"`{m}`" not in codemap} == set()
    packages = {p.parent.name for p in (REPO / "dmops").glob("*/__init__.py")}
    assert {p for p in packages if f"`{p}/" not in codemap} == set()
    report = {p.name for p in (REPO / "dmops" / "report").glob("*.py")} - {"__init__.py"}
    assert {m for m in report if f"`{m}`" not in codemap} == set()
