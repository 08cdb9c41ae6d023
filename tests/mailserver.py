"""A real SMTP server on loopback for the delivery tests: aiosmtpd with STARTTLS on a certificate made
here (trustme), AUTH required, and recipients that choose how the server answers.

The local part of a recipient picks the behaviour (``u3+defer@…``): ``defer`` answers 451 the first time,
then accepts; ``bounce`` answers 550; ``busy`` answers 421 and closes; ``drop`` takes the whole message,
then closes the connection without a reply (so the client cannot know it was taken). Every message the
server took is in ``received`` (a drop included), with its envelope and the time it arrived.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER = "mailer"
PASSWORD = "s3cret-pass"


@dataclass
class Received:
    sender: str
    recipient: str
    data: bytes
    at: float

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class Handler:
    delay: float = 0.0  # seconds before answering each message's DATA (a slow server)
    refuse_sender: bool = False  # answer MAIL FROM with 553 (a relay that does not accept our sender)
    received: list[Received] = field(default_factory=list)
    mail_from_at: list[float] = field(default_factory=list)
    deferred_once: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        with self.lock:
            self.mail_from_at.append(time.monotonic())
        if self.refuse_sender:
            return "553 5.7.1 <" + address + ">: Sender address rejected: not owned by user"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        local = address.partition("@")[0]
        if local.endswith("+bounce"):
            return "550 5.1.1 <" + address + ">: Recipient address rejected: User unknown"
        if local.endswith("+busy"):
            server.transport.close()
            return "421 4.3.2 Service not available, closing channel"
        if local.endswith("+defer"):
            with self.lock:
                first = address not in self.deferred_once
                self.deferred_once.add(address)
            if first:
                return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append(Received(envelope.mail_from, rcpt, envelope.content, time.monotonic()))
        if any(r.partition("@")[0].endswith("+drop") for r in envelope.rcpt_tos):
            server.transport.abort()  # taken, and no reply
        return "250 2.0.0 Ok: queued"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == (PASSWORD.encode())
    )
    return AuthResult(success=ok)


class MailServer:
    """``with MailServer(tmp_path) as server:`` — listening on 127.0.0.1:``server.port``."""

    def __init__(self, folder: Path, *, delay: float = 0.0, auth: bool = True) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        self.ca_file = folder / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self.handler = Handler(delay=delay)
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=free_port(),
            tls_context=context,
            require_starttls=True,
            auth_required=auth,
            auth_require_tls=True,
            authenticator=_authenticator,
        )

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def __enter__(self) -> MailServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
