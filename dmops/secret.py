"""The workspace's secret: 32 random bytes in the state folder that key every unsubscribe token and every
erasure tombstone and pseudonym (a module of its own, so that suppressions and erasure can read it without
importing message rendering)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from dmops.durable import write_new
from dmops.errors import ConfigError, IOFailure
from dmops.workspace import Workspace

SECRET_FILE = "secret.key"


SECRET_BYTES = 32  # the key of every unsubscribe token; shorter keys make tokens guessable


def load_secret(ws: Workspace, *, create: bool) -> bytes:
    """The workspace's token secret (32 random bytes in the state folder), created on first send.

    The file appears whole or not at all (written aside, synced, then linked into place), and a
    file shorter than 32 bytes is refused: an empty key would make every token forgeable.
    """
    path = ws.state_dir / SECRET_FILE
    key = _read_secret(path)
    if key is not None:
        return key
    if not create:
        return secrets.token_bytes(SECRET_BYTES)  # a dry run: tokens that are never persisted
    key = secrets.token_bytes(SECRET_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_new(path, key)  # never replaces a key another process created meanwhile
    except FileExistsError:
        existing = _read_secret(path)
        assert existing is not None
        return existing
    except OSError as exc:
        raise IOFailure(f"cannot create the token secret: {exc.strerror}", file=path) from None
    return key


def _read_secret(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IOFailure(f"cannot read the token secret: {exc.strerror}", file=path) from None
    with os.fdopen(fd, "rb") as handle:
        key = handle.read()
    if len(key) < SECRET_BYTES:
        raise ConfigError(
            f"the token secret is {len(key)} bytes long; it must be at least {SECRET_BYTES}",
            file=path,
            hint="restore it from a backup; if no message was ever sent with it, delete it and the next send "
            "creates a new one (unsubscribe links already sent would stop working)",
        )
    return key


# --- keyed hashes of personal data (SPEC §12): tombstones and pseudonyms --------------------------------

PSEUDONYM = "erased-"


def subject_key(secret: bytes, kind: str, value: str) -> str:
    """A tombstone: HMAC-SHA256 of ``kind:value`` under the workspace secret, hex."""
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def subject_key_sql(kind: str, value: str) -> str:
    """SQL: :func:`subject_key` of a SQL expression, with parameters ``$ipad`` and ``$opad`` (the HMAC key
    pads of the secret: :func:`dmops.sqlrender.hmac_pads`)."""
    inner = f"unhex(sha256($ipad::BLOB || encode('{kind}:' || {value})))"
    return f"sha256($opad::BLOB || {inner})"


def pseudonym_sql(contact_id: str) -> str:
    """SQL: what an erased contact id becomes: ``erased-`` and 16 hex digits of the keyed hash its tombstone
    holds (:func:`subject_key` of ``contact_id``)."""
    return f"'{PSEUDONYM}' || substr({subject_key_sql('contact_id', contact_id)}, 1, 16)"


def tombstone_secret(ws: Workspace) -> bytes:
    """The secret that keys the erasure tombstones, which exist: without it no tombstone could match and
    every erased person would be planned again, so its absence is refused (78), never replaced."""
    key = _read_secret(ws.state_dir / SECRET_FILE)
    if key is None:
        raise ConfigError(
            "the workspace secret is missing, and the erasure tombstones need it",
            file=ws.state_dir / SECRET_FILE,
            hint="restore it from a backup: without it, erased people would be messaged again",
        )
    return key


def message_alias_sql(message_id: str) -> str:
    """SQL: what an erased person's message id becomes (32 hex digits of a keyed hash: the plain id is a hash
    of the campaign, the occurrence and the contact id, so it would give the id back to a guess)."""
    return f"substr({subject_key_sql('message_id', message_id)}, 1, 32)"


def message_alias(secret: bytes, message_id: str) -> str:
    """:func:`message_alias_sql` in Python."""
    return subject_key(secret, "message_id", message_id)[:32]


def keyed_event_key_sql(event_key: str) -> str:
    """SQL: what an erased person's event key becomes: a keyed hash of it, 128 bits (the plain key is a hash
    of the row's values)."""
    return f"CAST('0x' || substr({subject_key_sql('event_key', f'CAST({event_key} AS VARCHAR)')}, 1, 32) AS UHUGEINT)"
