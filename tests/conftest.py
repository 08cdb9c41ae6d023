"""Shared helpers: small workspaces written inline, and the CLI run as a user runs it."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmops.cli import app

REPO = Path(__file__).resolve().parent.parent
REFERENCE = Path(__file__).resolve().parent / "reference-data"

# The network guard: this process and every process the tests start refuse non-loopback sockets.
NETGUARD = Path(__file__).resolve().parent / "netguard"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETGUARD), os.environ.get("PYTHONPATH")]))
import tests.netguard.sitecustomize  # noqa: E402, F401  (installs the guard in this process)

BASIC_WORKSPACE = """\
version: 1
timezone: Asia/Shanghai
contacts: contacts.csv
consent: {email: email_opt_in, sms: sms_opt_in}
phone_region: CN
"""

BASIC_CONTACTS = """\
contact_id,first_name,email,phone,timezone,email_opt_in,sms_opt_in,tier,orders
00001,Li,li@example.com,+8613800138000,Asia/Shanghai,yes,no,gold,3
00002,Emma,emma@example.org,13800138001,Europe/London,true,1,silver,0
"""

BASIC_CAMPAIGN = """\
id: hello
name: Hello
channel: email
sender: {from: "Shop <news@shop.example.com>"}
unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"
audience:
  where: "tier = 'gold'"
variants:
  - id: a
    subject: "Hi {{ first_name | default('there') }}"
    text: "Hello {{ first_name | default('there') }}"
"""


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


WriteFn = Callable[..., Path]


@pytest.fixture
def workspace(tmp_path: Path) -> WriteFn:
    """Write a workspace: the basic files, overridden or extended by ``files``."""

    def write(files: dict[str, str | bytes] | None = None, *, basic: bool = True) -> Path:
        content: dict[str, str | bytes] = {}
        if basic:
            content = {
                "dmops.yaml": BASIC_WORKSPACE,
                "contacts.csv": BASIC_CONTACTS,
                "campaigns/hello.yaml": BASIC_CAMPAIGN,
            }
        content.update(files or {})
        for relative, body in content.items():
            path = tmp_path / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(body, bytes):
                path.write_bytes(body)
            else:
                path.write_text(dedent(body) if body.startswith("\n") else body, encoding="utf-8")
        return tmp_path

    return write


@pytest.fixture
def cli() -> Callable[..., object]:
    """Run ``dmops ARGS`` in-process; returns the click Result (stdout and stderr apart)."""
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "DMOPS_WORKSPACE": ""})

    def run(*args: str | Path) -> object:
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver's real HTTP server listens on 127.0.0.1 (a free port), not on whatever localhost is."""
    return ("127.0.0.1", 0)
