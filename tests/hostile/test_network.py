"""No command reaches the network: the guard every test process runs under, and the DuckDB extension case."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest


def test_the_guard_refuses_a_connection_in_this_process() -> None:
    # the class of the hook this process runs: a test worker started with the guard on PYTHONPATH
    # installed it at startup, from the module named ``sitecustomize``
    network_used = sys._dmops_netguard  # type: ignore[attr-defined]
    assert network_used.__name__ == "NetworkUsed"
    with pytest.raises(network_used, match=r"192\.0\.2\.1"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with pytest.raises(network_used, match=r"example\.com"):
        socket.getaddrinfo("example.com", 443)


def test_the_guard_refuses_a_connection_in_a_process_the_tests_start() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import socket; socket.create_connection(('192.0.2.1', 80), timeout=1)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "NetworkUsed: a test tried to connect to '192.0.2.1'" in done.stderr


def test_loopback_stays_open() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


EXTENSION_WORKSPACE = {
    "dmops.yaml": "version: 1\ntimezone: UTC\ncontacts: contacts.csv\nconsent: {email: ok}\n",
    "contacts.csv": "contact_id,email,ok,orders\nc1,a@example.com,yes,1\n",
}


@pytest.mark.parametrize(
    ("where", "function"), [("excel_text(orders, '0') = '1'", "excel_text"), ("sleep_ms(100000) IS NULL", "sleep_ms")]
)
def test_an_expression_cannot_load_an_extension_or_stall(tmp_path: Path, where: str, function: str) -> None:
    """excel_text once made validate install DuckDB's excel extension (DNS lookups, ~/.duckdb written)."""
    from tests.planning import write

    root = write(
        tmp_path / "ws",
        {
            **EXTENSION_WORKSPACE,
            "campaigns/c.yaml": (
                'id: c\nname: C\nchannel: email\npurpose: transactional\nsender: {from: "Shop <news@shop.example.com>"}\nsend_at: "2026-12-01 10:00"\n'
                f'audience:\n  where: "{where}"\nvariants:\n  - id: a\n    subject: "Hi"\n    text: "Hello"\n'
            ),
        },
    )
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "dmops", "-w", str(root), "validate"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "HOME": str(home)},
    )
    assert done.returncode == 78, done.stderr + done.stdout
    assert f"campaigns/c.yaml:8, key 'audience.where': the function '{function}' is not allowed in an expression" in (
        done.stdout
    )
    assert list(home.iterdir()) == []  # nothing written under $HOME
