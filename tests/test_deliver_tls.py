"""SMTP over implicit TLS (port-465 style) and the certificate check (SPEC §11)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller

from tests.mailserver import PASSWORD, USER, Handler, _authenticator, free_port
from tests.planning import run_cli as run
from tests.planning import write
from tests.test_deliver_smtp import AT, transports
from tests.test_send import EMAIL, WS, contacts

# aiosmtpd warns that AUTH does not require STARTTLS: here the whole connection is TLS from its first byte.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


class TlsServer:
    """aiosmtpd speaking TLS from the first byte, AUTH required, on a certificate for 127.0.0.1."""

    def __init__(self, folder: Path) -> None:
        ca = trustme.CA()
        self.ca_file = folder / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.handler = Handler()
        self.port = free_port()
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=context,
            auth_required=True,
            auth_require_tls=False,
            authenticator=_authenticator,
        )


def _config(port: int, ca_file: str) -> str:
    return transports(port, security="tls", ca_file=ca_file)


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DMOPS_SMTP_USER", USER)
    monkeypatch.setenv("DMOPS_SMTP_PASSWORD", PASSWORD)
    (tmp_path / "ws").mkdir()
    server = TlsServer(tmp_path / "ws")
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()


def _root(tmp_path: Path, config: str) -> Path:
    root = write(
        tmp_path / "ws", {"dmops.yaml": WS + config, "contacts.csv": contacts(5), "campaigns/promo.yaml": EMAIL}
    )
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00")[0] == 0
    return root


def test_implicit_tls_delivers(tmp_path: Path, tls: TlsServer) -> None:
    root = _root(tmp_path, _config(tls.port, "ca.pem"))
    code, output = run(root, "deliver", "--at", AT, "--format", "json")
    assert code == 0, output
    accepted = json.loads(output)["transports"][0]["states"]["accepted"]
    assert accepted == len(tls.handler.received) > 0


def test_a_certificate_from_an_unknown_authority_is_refused_and_nothing_is_sent(tmp_path: Path, tls: TlsServer) -> None:
    other = trustme.CA()
    other.cert_pem.write_to_path(str(tmp_path / "ws" / "other-ca.pem"))
    root = _root(tmp_path, _config(tls.port, "other-ca.pem"))
    code, output = run(root, "deliver", "--at", AT, "--format", "json")
    assert code == 75, output
    [mail] = json.loads(output)["transports"]
    assert mail["stopped"].startswith("unreachable: TLS failed: CERTIFICATE_VERIFY_FAILED")
    assert tls.handler.received == []
