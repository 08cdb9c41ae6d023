"""No test reaches the network: every Python process the tests start refuses non-loopback sockets.

The tests put this folder first on PYTHONPATH (see ``tests/conftest.py``), so Python imports this
file at startup in the test process and in every process it starts (``dmops`` commands, rendering
workers). An audit hook then refuses any connection or name lookup that is not the loopback
interface, where the tests' own SMTP and HTTP servers listen.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Any

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _ip_literal(host: Any) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0] if isinstance(host, str) else host)
    except ValueError:
        return False
    return True


def _loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class NetworkUsed(RuntimeError):
    pass


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and not _loopback(address[0]):
            raise NetworkUsed(f"a test tried to connect to {address[0]!r}: tests use loopback servers only")
    elif event == "socket.getaddrinfo":
        host = args[0]
        if host is not None and not _loopback(host) and not _ip_literal(host):  # an IP literal is not a lookup
            raise NetworkUsed(f"a test tried to look up {host!r}: tests use loopback servers only")


# Installed once per process, however this file was imported (as ``sitecustomize`` at startup, as
# ``tests.netguard.sitecustomize`` by the tests): ``sys._dmops_netguard`` is the error class the hook raises.
if not hasattr(sys, "_dmops_netguard"):
    sys._dmops_netguard = NetworkUsed  # type: ignore[attr-defined]
    sys.addaudithook(_audit)
