"""`transports:` and `channels:` in dmops.yaml (SPEC §11): validated before anything is delivered."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.planning import run_cli as run
from tests.planning import write

HEAD = "version: 1\ntimezone: UTC\ncontacts: contacts.csv\n"
CONTACTS = "contact_id,email\nc1,a@example.com\n"
GOOD = """\
transports:
  mail:
    kind: smtp
    host: smtp.example.com
    port: 587
    security: starttls
    username_env: DMOPS_TEST_SMTP_USER
    password_env: DMOPS_TEST_SMTP_PASSWORD
    max_connections: 4
    rate: {per_second: 20, per_hour: 50000}
    bounce_domain: bounces.shop.example
  gateway:
    kind: webhook
    url: https://sms-gateway.example/send
    secret_env: DMOPS_TEST_GATEWAY_SECRET
    rate: {per_second: 50}
channels: {email: mail, sms: gateway, dm: gateway}
"""


def _validate(tmp_path: Path, config: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[int, str]:
    for name in ("DMOPS_TEST_SMTP_USER", "DMOPS_TEST_SMTP_PASSWORD", "DMOPS_TEST_GATEWAY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    root = write(tmp_path, {"dmops.yaml": HEAD + config, "contacts.csv": CONTACTS})
    return run(root, "validate")


def test_the_spec_example_validates_when_its_secrets_are_set(tmp_path: Path, monkeypatch) -> None:
    env = {
        "DMOPS_TEST_SMTP_USER": "mailer",
        "DMOPS_TEST_SMTP_PASSWORD": "hunter2",
        "DMOPS_TEST_GATEWAY_SECRET": "whsec_abc",
    }
    code, output = _validate(tmp_path, GOOD, monkeypatch, **env)
    assert code == 0 and "environment variable" not in output, output
    assert not any(secret in output for secret in env.values())  # no secret in the output


def test_a_missing_secret_is_named_by_key_and_variable_never_by_value(tmp_path: Path, monkeypatch) -> None:
    code, output = _validate(tmp_path, GOOD, monkeypatch, DMOPS_TEST_SMTP_USER="u", DMOPS_TEST_SMTP_PASSWORD="hunter2")
    assert code == 0
    assert (
        "warning: dmops.yaml:18, key 'transports.gateway.secret_env': the environment variable"
        " DMOPS_TEST_GATEWAY_SECRET is not set"
    ) in output
    assert "hunter2" not in output


@pytest.mark.parametrize(
    ("change", "line", "key", "message"),
    [
        (
            ("    password_env: DMOPS_TEST_SMTP_PASSWORD", "    password: hunter2"),
            5,
            "transports.mail",
            "'password' would put a credential in dmops.yaml",
        ),
        (
            ("    security: starttls", "    security: none"),
            5,
            "transports.mail",
            "security: none would send mail unencrypted to smtp.example.com",
        ),
        (
            ("    url: https://sms-gateway", "    url: http://sms-gateway"),
            17,
            "transports.gateway.url",
            "'http://sms-gateway.example/send' would send messages unencrypted",
        ),
        (("sms: gateway", "sms: gatway"), 20, "channels.sms", "the transport 'gatway' is not defined under transports"),
        (("sms: gateway", "sms: mail"), 20, "channels.sms", "sms messages cannot go through the SMTP transport 'mail'"),
        (
            ("    username_env: DMOPS_TEST_SMTP_USER\n", ""),
            5,
            "transports.mail",
            "username_env and password_env go together",
        ),
        (("    max_connections: 4", "    max_connections: 0"), 12, "transports.mail.max_connections", None),
        (("kind: webhook", "kind: carrier-pigeon"), 16, "transports.gateway.kind", None),
    ],
)
def test_a_bad_transport_is_a_configuration_error_naming_key_and_line(
    tmp_path: Path, monkeypatch, change: tuple[str, str], line: int, key: str, message: str | None
) -> None:
    config = GOOD.replace(*change)
    assert config != GOOD
    code, output = _validate(tmp_path, config, monkeypatch)
    assert code == 78, output
    expected = f"error: dmops.yaml:{line}, key '{key}'" + (f": {message}" if message else "")
    assert expected in output, output
    assert "hunter2" not in output
