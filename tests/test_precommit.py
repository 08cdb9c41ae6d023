"""The repository's pre-commit hooks (.pre-commit-hooks.yaml), run by a real pre-commit installed into a
scratch environment, on a git repository holding a workspace: a clean workspace passes both hooks, a broken
template fails dmops-validate with its file and line.

`pre-commit try-repo` runs this repository's hooks at its HEAD commit, as a workspace's
.pre-commit-config.yaml naming it would; each run installs the hooks' environment (dmops and its
dependencies) the way a user's machine does, from the wheelhouse `make` fills when it creates .venv, so the
test needs no network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

WHEELHOUSE = Path(sys.prefix) / "wheelhouse"


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_the_hooks_pass_a_clean_workspace_and_name_a_broken_templates_line(tmp_path: Path) -> None:
    if not any(WHEELHOUSE.glob("pre_commit-*.whl")):
        pytest.fail(f"no pre-commit wheel in {WHEELHOUSE}: run `make test` (it fills the wheelhouse)")
    env = {
        **os.environ,
        "PIP_NO_INDEX": "1",
        # no bytecode compiled at install (most of an install's time here): pip reads this variable as the value
        # of its `compile` option, which `--no-compile` sets to false
        "PIP_NO_COMPILE": "0",
        "PIP_FIND_LINKS": str(WHEELHOUSE),
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "DMOPS_WORKSPACE": "",
    }
    scratch = tmp_path / "scratch"
    subprocess.run([sys.executable, "-m", "venv", str(scratch)], check=True)
    installed = _run([str(scratch / "bin" / "pip"), "install", "--quiet", "pre-commit"], tmp_path, env)
    assert installed.returncode == 0, installed.stderr
    workspace = tmp_path / "campaigns-repo"
    workspace.mkdir()
    shutil.copytree(REPO / "campaigns", workspace / "campaigns")
    shutil.copy(REPO / "dmops.yaml", workspace / "dmops.yaml")
    (workspace / "samples").mkdir()
    for name in ("contacts.csv", "optouts.csv"):
        shutil.copy(REPO / "samples" / name, workspace / "samples" / name)
    git = ["git", "-c", "user.name=dmops", "-c", "user.email=dmops@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "workspace"]):
        assert _run([*git, *args], workspace, env).returncode == 0
    head = _run(["git", "rev-parse", "HEAD"], REPO, env).stdout.strip()
    try_repo = [str(scratch / "bin" / "pre-commit"), "try-repo", str(REPO)]
    clean = _run([*try_repo, "--ref", head, "--all-files"], workspace, env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    passed = sorted(line.split(".")[0] for line in clean.stdout.splitlines() if line.endswith("Passed"))
    assert passed == ["dmops lint", "dmops validate"], clean.stdout
    template = workspace / "campaigns" / "templates" / "welcome.txt.j2"
    template.write_text(template.read_text(encoding="utf-8") + "{% if city %}\n", encoding="utf-8")
    broken = _run([*try_repo, "dmops-validate", "--ref", head, "--all-files"], workspace, env)
    assert broken.returncode == 1
    lines = len(template.read_text(encoding="utf-8").splitlines())
    assert "Failed" in broken.stdout and "exit code: 78" in broken.stdout
    assert f"campaigns/templates/welcome.txt.j2:{lines}" in broken.stdout, broken.stdout
