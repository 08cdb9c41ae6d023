"""``dmops forget``: erase people from everything dmops keeps (SPEC §12).

A person is named by contact id or by address. Their addresses are the ones given and the ones the
contact list holds for their ids; their ids are the ones given, the contacts the list holds with one of
those addresses, and the contacts of ledger messages sent to one of them.

``forget`` then, under the send and delivery locks:

1. writes ``forget.pending.json`` (owner-only) naming them: until it is gone, ``plan``, ``send``,
   ``lint``, ``deliver`` and ``outbox export`` refuse to run, and ``dmops forget`` with no arguments
   finishes the erasure;
2. rewrites every outbox run that holds one of their messages without those lines (the manifest's count
   and SHA-256 follow; see :func:`_rewrite_run` for the order of renames) and drops incomplete runs;
3. rewrites the delivery journals: their messages' lines get the keyed message id and lose the detail
   (the server's reply, which may quote the address);
4. copies the ledger into a new file (:func:`dmops.ledger.erase`) — their contact id, message ids and
   event keys replaced by keyed pseudonyms, the address hash of their messages and the URL of their events
   dropped, their suppressions replaced by tombstones — adds the tombstones (HMAC-SHA256 under the
   workspace secret of ``contact_id:<id>``, ``email:<address>``, ``phone:<E.164>``, ``dm:<handle>``; never
   the value) and one audit line per person (time, pseudonym, counts, reason), and renames it over the
   ledger: a copy, not an update in place, so that no old page of the file still holds them;
5. deletes the contacts snapshots (a cache of the contact list) and the pending file.

Every step is idempotent, so a rerun after kill -9 completes the erasure. Report totals do not change:
every row is kept, only who it was about is replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from dmops import ledger, snapshot
from dmops.addresses import normalise_phone
from dmops.db import connect, quote_ident
from dmops.durable import fsync_dir, refuse_links, remove_stale_hand_overs, write_atomic
from dmops.errors import ConfigError, DataError, DmopsError, IOFailure, MissingInputError, TemporaryFailure
from dmops.outbox import (
    CHUNK,
    MANIFEST,
    MESSAGES,
    complete_runs,
    manifest_of,
    occurrence_folders,
    purge_retired,
    remove_incomplete,
    write_manifest,
)
from dmops.pii import mask_id
from dmops.runlock import DELIVER_LOCK_FILE, RunLock
from dmops.secret import PSEUDONYM, message_alias
from dmops.sqlrender import hmac_pads
from dmops.tabular import read_source
from dmops.workspace import Workspace

PENDING = "forget.pending.json"
_REWRITING = ".erasing"  # suffix of a run's new messages and manifest before they are renamed into place


@dataclass
class People:
    """Who is being erased: contact ids and normalised addresses."""

    ids: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    handles: set[str] = field(default_factory=set)

    def addresses(self) -> set[str]:
        return self.emails | self.phones | self.handles

    def to_json(self) -> dict[str, list[str]]:
        return {k: sorted(getattr(self, k)) for k in ("ids", "emails", "phones", "handles")}

    @classmethod
    def from_json(cls, data: dict[str, list[str]]) -> People:
        return cls(*(set(data.get(k, [])) for k in ("ids", "emails", "phones", "handles")))

    def merge(self, other: People) -> None:
        for name in ("ids", "emails", "phones", "handles"):
            getattr(self, name).update(getattr(other, name))


@dataclass(frozen=True)
class Appearance:
    file: Path
    line: int
    shown: str  # masked


@dataclass
class ForgetResult:
    ids: int = 0
    addresses: int = 0
    outbox_lines: int = 0
    journal_lines: int = 0
    entries: int = 0
    events: int = 0
    suppressions: int = 0
    tombstones: int = 0
    snapshots: int = 0
    still_in: list[Appearance] = field(default_factory=list)


def pending_path(ws: Workspace) -> Path:
    return ws.state_dir / PENDING


def check_not_pending(ws: Workspace) -> None:
    """Refuse (exit 75) while an erasure is unfinished: the person it names is not protected yet."""
    if pending_path(ws).is_file():
        raise TemporaryFailure(
            "an erasure was interrupted",
            file=pending_path(ws),
            hint="run `dmops forget` (no arguments) to finish it",
        )


# --- who -------------------------------------------------------------------------------------------------


def _add_addresses(people: People, values: Sequence[str], region: str | None) -> None:
    """Sort addresses into emails (lower-cased as DuckDB's lower() does it, which made the contact list's
    email keys: Python's str.lower differs for a final sigma or a dotted capital I), phones (E.164) and
    handles."""
    texts = [v.strip(" \t") for v in values if v.strip(" \t")]
    emails = [t for t in texts if "@" in t]
    if emails:
        con = connect()
        try:
            people.emails.update(
                str(r[0]) for r in con.execute("SELECT lower(e) FROM unnest($e) t(e)", {"e": emails}).fetchall()
            )
        finally:
            con.close()
    for text in texts:
        if "@" in text:
            continue
        phone = normalise_phone(text, region)
        if phone is not None:
            people.phones.add(phone)
        else:
            people.handles.add(text)


def named(ids: Sequence[str], addresses: Sequence[str], file: Path | None, ws: Workspace) -> People:
    """The people the command line names (ids, addresses, and a file of either)."""
    people = People(ids={i.strip() for i in ids if i.strip()})
    found = list(addresses)
    if file is not None:
        if not file.is_file():
            raise MissingInputError("file not found", file=file)
        if file.suffix.lower() in (".csv", ".xlsx", ".parquet"):
            con = connect()
            try:
                names = {n.lower(): n for n in read_source(con, file, "_dm_forget", "forget").names}
                if "contact_id" not in names and "address" not in names:
                    raise DataError("the file needs a contact_id or an address column", file=file, line=1)
                for key in ("contact_id", "address"):
                    if key in names:
                        rows = con.execute(
                            f"SELECT DISTINCT trim(CAST({quote_ident(names[key])} AS VARCHAR)) FROM _dm_forget"
                            f" WHERE nullif(trim(CAST({quote_ident(names[key])} AS VARCHAR)), '') IS NOT NULL"
                        ).fetchall()
                        values = [str(r[0]) for r in rows]
                        if key == "contact_id":
                            people.ids.update(values)
                        else:
                            found.extend(values)
            finally:
                con.close()
        else:
            try:
                text = file.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError(f"cannot read the file ({type(exc).__name__})", file=file) from None
            people.ids.update(line.strip() for line in text.splitlines() if line.strip())
    _add_addresses(people, found, ws.config.phone_region)
    return people


def _widen(con: duckdb.DuckDBPyConnection, people: People, has_contacts: bool, has_ledger: bool) -> None:
    """Add the addresses the contact list holds for their ids, the ids it holds for their addresses, and
    the contacts of ledger messages sent to their addresses."""
    params = {
        "ids": sorted(people.ids),
        "emails": sorted(people.emails),
        "phones": sorted(people.phones),
        "handles": sorted(people.handles),
    }
    if has_contacts:
        rows = con.execute(
            """SELECT contact_id, email_key, phone, dm_handle FROM contact_channels
               WHERE list_contains($ids, contact_id) OR list_contains($emails, email_key)
                  OR list_contains($phones, phone) OR list_contains($handles, dm_handle)""",
            params,
        ).fetchall()
        for contact_id, email, phone, handle in rows:
            people.ids.add(str(contact_id))
            people.emails.update([email] if email else [])
            people.phones.update([phone] if phone else [])
            people.handles.update([handle] if handle else [])
    if has_ledger:
        hashes = [hashlib.sha256(a.encode()).hexdigest() for a in people.addresses()]
        rows = con.execute(
            f"SELECT DISTINCT contact_id FROM {ledger.ALIAS}.entries WHERE list_contains($h, address_sha256)",
            {"h": hashes},
        ).fetchall()
        people.ids.update(str(r[0]) for r in rows if not str(r[0]).startswith(PSEUDONYM))


# --- outbox ----------------------------------------------------------------------------------------------


# An outbox line is compact JSON written by dmops (outbox.encode): its top-level "contact_id" and "to" come
# before any text, and a quote inside a string value is always escaped, so these find the keys themselves.
_CONTACT_FIELD = re.compile(rb'"contact_id":"((?:[^"\\]|\\.)*)"')
_TO_FIELD = re.compile(rb'"to":"((?:[^"\\]|\\.)*)"')


def _field(pattern: re.Pattern[bytes], line: bytes) -> str:
    found = pattern.search(line)
    if found is None:
        return ""
    raw = found.group(1)
    return str(json.loads(b'"' + raw + b'"')) if b"\\" in raw else raw.decode()


def _line_matches(line: bytes, people: People, folded: set[str]) -> bool:
    """Whether an outbox line is a message to one of them (by contact id, or by its address)."""
    if _field(_CONTACT_FIELD, line) in people.ids:
        return True
    to = _field(_TO_FIELD, line).strip(" \t")
    if to in people.phones or to in people.handles:
        return True
    return "@" in to and (to.lower() in people.emails or to.casefold() in folded)  # folded: their emails, casefold()


def _finish_rename(run: Path) -> None:
    """Complete an interrupted rewrite of ``run``: the new messages are renamed first, then the manifest.
    New messages still beside the old ones: the renames had not begun, so the new files are dropped (the
    rewrite is done again); only the new manifest left: it is renamed into place."""
    messages, manifest = run / (MESSAGES + _REWRITING), run / (MANIFEST + _REWRITING)
    if messages.exists():
        messages.unlink()
        manifest.unlink(missing_ok=True)
    elif manifest.exists():
        os.replace(manifest, run / MANIFEST)
        fsync_dir(run)


def _rewrite_run(run: Path, people: People, message_ids: set[str]) -> int:
    """Drop their lines from one run (adding their message ids to ``message_ids``); the lines dropped."""
    _finish_rename(run)
    folded = {e.casefold() for e in people.emails}
    kept = hashlib.sha256()
    count = dropped = 0
    target = run / (MESSAGES + _REWRITING)
    try:
        with (run / MESSAGES).open("rb") as source:
            out = None
            for line in source:
                if _line_matches(line, people, folded):
                    dropped += 1
                    message_ids.add(str(json.loads(line).get("message_id")))
                    if out is None:  # the first line about them: the kept lines so far are copied
                        out = _start_copy(run, target, source.tell() - len(line), kept)
                    continue
                if out is not None:
                    out.write(line)
                    kept.update(line)
                count += 1
            if out is None:
                return 0
            out.flush()
            os.fsync(out.fileno())
            out.close()
        write_manifest(run / (MANIFEST + _REWRITING), {**manifest_of(run), "count": count, "sha256": kept.hexdigest()})
        fsync_dir(run)
        os.replace(target, run / MESSAGES)
        os.replace(run / (MANIFEST + _REWRITING), run / MANIFEST)
        fsync_dir(run)
    except OSError as exc:
        raise IOFailure(f"cannot rewrite the outbox run: {exc.strerror}", file=run) from None
    return dropped


def _start_copy(run: Path, target: Path, upto: int, digest: Any) -> Any:
    """Open the new messages file holding the first ``upto`` bytes of the old one."""
    out = target.open("wb")
    with (run / MESSAGES).open("rb") as again:
        remaining = upto
        while remaining > 0:
            chunk = again.read(min(remaining, CHUNK))
            if not chunk:
                break
            out.write(chunk)
            digest.update(chunk)
            remaining -= len(chunk)
    return out


def _outbox(ws: Workspace, people: People, message_ids: set[str]) -> int:
    """Rewrite every run holding a message to them without it; the lines dropped."""
    refuse_links(ws.outbox_dir, ws.root)
    dropped = 0
    for occurrence in occurrence_folders(ws.outbox_dir):
        remove_incomplete(occurrence)  # a killed send's hidden run may hold them
        purge_retired(occurrence)  # and so may a run a killed gc had not emptied yet
        for run in complete_runs(occurrence):
            dropped += _rewrite_run(run, people, message_ids)
    return dropped


# --- delivery journals -----------------------------------------------------------------------------------


def _journals(ws: Workspace, message_ids: set[str], secret: bytes) -> int:
    """Their messages' journal lines: the message id keyed as in the ledger, the detail (a server's reply
    may quote the address) dropped."""
    scrubbed = 0
    folder = ledger.delivery_dir(ws)
    for leftover in folder.glob(".run-*.jsonl.*.tmp") if folder.is_dir() else []:  # a killed rewrite's copy
        leftover.unlink()
    for journal in ledger.delivery_journals(ws):
        lines = journal.read_bytes().splitlines(keepends=True)
        out: list[bytes] = []
        changed = 0
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                out.append(line)
                continue
            if str(record.get("message_id")) in message_ids:  # the id keyed, the server's reply dropped
                record["message_id"] = message_alias(secret, str(record["message_id"]))
                record["detail"] = None
                line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
                changed += 1
            out.append(line)
        if changed:
            try:  # the staging file is created owner-only and removed on failure
                write_atomic(journal, b"".join(out), result=False)
            except OSError as exc:
                raise IOFailure(f"cannot rewrite the delivery journal: {exc.strerror}", file=journal) from None
            scrubbed += changed
    return scrubbed


# --- where they still are --------------------------------------------------------------------------------


def _phone_digits(phones: set[str]) -> list[str]:
    """The digit strings a file may write each phone as: E.164 without +, the national number, and it with
    a trunk 0."""
    import phonenumbers

    found: set[str] = set()
    for phone in phones:
        found.add(phone.lstrip("+"))
        try:
            national = str(phonenumbers.parse(phone, None).national_number)
        except phonenumbers.NumberParseException:
            continue
        found.update({national, "0" + national})
    return sorted(d for d in found if len(d) >= 7)


def _appearances(ws: Workspace, people: People) -> list[Appearance]:
    """The lines of the workspace's contact and suppression files that still hold one of their ids or
    addresses (any cell, trimmed; emails case-insensitively; phones by their digits)."""
    needles = sorted(people.ids | people.emails | people.handles)
    digits = _phone_digits(people.phones)
    found: list[Appearance] = []
    for path in (ws.contacts_path, *ws.suppression_paths):
        if not path.is_file():
            continue
        con = connect()
        try:
            source = ws.config.contacts_source if path == ws.contacts_path else None
            names = read_source(
                con,
                path,
                "_dm_look",
                "contacts" if source else "suppression",
                encoding=source.encoding if source else "utf-8",
                sheet=source.sheet if source else None,
            ).names
            cells = [f"nullif(trim(CAST({quote_ident(n)} AS VARCHAR)), '')" for n in names]
            matches = " OR ".join(
                f"list_contains($n, {c}) OR list_contains($n, lower({c}))"
                f" OR list_contains($d, regexp_replace({c}, '[^0-9]', '', 'g'))"
                for c in cells
            )
            rows = con.execute(
                f"SELECT _dm_line, [{', '.join(cells)}] FROM _dm_look WHERE {matches} ORDER BY _dm_line",
                {"n": needles or ["\x00"], "d": digits or ["-"]},  # never a trimmed cell, never digits
            ).fetchall()
        except (DmopsError, duckdb.Error):  # unreadable: forget has done its work; nothing to point at
            rows = []
        finally:
            con.close()
        wanted, phone_digits = set(needles), set(digits)
        for line, values in rows:
            hits = [
                v
                for v in values
                if v is not None and (v in wanted or v.lower() in wanted or re.sub(r"[^0-9]", "", v) in phone_digits)
            ]
            found.append(Appearance(path, int(line), ", ".join(mask_id(str(h)) for h in hits)))
    return found


# --- the command -----------------------------------------------------------------------------------------


def _read_pending(ws: Workspace) -> tuple[People, dict[str, Any]] | None:
    """The interrupted erasure: who, and what it had recorded (reason, start, outbox lines removed)."""
    path = pending_path(ws)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return People.from_json(data), data
    except (OSError, ValueError, TypeError) as exc:
        raise IOFailure(f"cannot read the interrupted erasure ({type(exc).__name__})", file=path) from None


def _write_pending(ws: Workspace, people: People, state: dict[str, Any]) -> None:
    write_atomic(pending_path(ws), json.dumps({**people.to_json(), **state}, ensure_ascii=False), result=False)
    os.chmod(pending_path(ws), 0o600)


def _all_runs(ws: Workspace) -> dict[tuple[str, str, str], tuple[int, str]]:
    """(campaign, occurrence, run) -> the count and sha256 its manifest holds now, for every complete run."""
    found: dict[tuple[str, str, str], tuple[int, str]] = {}
    for occurrence in occurrence_folders(ws.outbox_dir):
        for run in complete_runs(occurrence):
            manifest = manifest_of(run)
            key = (occurrence.parent.name, occurrence.name, run.name)
            found[key] = (int(manifest["count"]), str(manifest["sha256"]))
    return found


def forget(
    ws: Workspace,
    ids: Sequence[str] = (),
    addresses: Sequence[str] = (),
    file: Path | None = None,
    *,
    reason: str | None,
    now: datetime,
) -> ForgetResult:
    """Erase the people named (and finish an interrupted erasure); what was done."""
    from dmops.contacts import load_contacts
    from dmops.secret import load_secret, subject_key

    people = named(ids, addresses, file, ws)
    with RunLock(ws.state_dir), RunLock(ws.state_dir, DELIVER_LOCK_FILE, "dmops deliver"):
        earlier = _read_pending(ws)
        state: dict[str, Any] = {"reason": reason, "started_at": now.isoformat(), "outbox_lines": 0}
        if earlier is not None:  # finish it: same start, its reason unless a new one is given, its counts
            people.merge(earlier[0])
            state.update({k: earlier[1][k] for k in ("started_at", "outbox_lines") if k in earlier[1]})
            state["reason"] = reason if reason is not None else earlier[1].get("reason")
        if not (people.ids or people.addresses()):
            raise ConfigError("name someone to forget: contact ids, --address or --file")
        secret = load_secret(ws, create=True)
        con = connect()
        try:
            try:
                load_contacts(con, ws)
                has_contacts = True
            except (MissingInputError, DataError, ConfigError):
                has_contacts = False  # the list is gone or broken: the state is erased all the same
            has_ledger = ledger.attach(con, ws)
            _widen(con, people, has_contacts, has_ledger)
            message_ids = (
                {
                    str(r[0])
                    for r in con.execute(
                        f"SELECT message_id FROM {ledger.ALIAS}.entries WHERE message_id IS NOT NULL"
                        " AND list_contains($ids, contact_id)",
                        {"ids": sorted(people.ids)},
                    ).fetchall()
                }
                if has_ledger
                else set()
            )
        finally:
            con.close()
        for leftover in ws.state_dir.glob(f".{PENDING}.*.tmp"):  # a killed write of the pending file
            leftover.unlink()
        _write_pending(ws, people, state)
        result = ForgetResult(ids=len(people.ids), addresses=len(people.addresses()))
        result.outbox_lines = _outbox(ws, people, message_ids)
        state["outbox_lines"] += result.outbox_lines
        _write_pending(ws, people, state)  # a rerun after a kill still counts the lines removed now
        result.journal_lines = _journals(ws, message_ids, secret)
        who = ledger.Erasure(
            ids=sorted(people.ids),
            emails=sorted(people.emails),
            phones=sorted(people.phones),
            handles=sorted(people.handles),
            tombstones=sorted(
                [subject_key(secret, "contact_id", i) for i in people.ids]
                + [subject_key(secret, "email", e) for e in people.emails]
                + [subject_key(secret, "phone", p) for p in people.phones]
                + [subject_key(secret, "dm", h) for h in people.handles]
            ),
            pads=hmac_pads(secret),
            runs=_all_runs(ws),  # every run as its manifest says now, rewritten by this attempt or an earlier one
            outbox_lines=int(state["outbox_lines"]),
            reason=state["reason"],
        )
        started = datetime.fromisoformat(str(state["started_at"]))
        result.entries, result.events, result.suppressions, result.tombstones = ledger.erase(ws, who, started)
        result.snapshots = snapshot.drop_all(ws)
        remove_stale_hand_overs(ws.state_dir / "spark")  # a killed Spark plan's copies of the contacts
        pending_path(ws).unlink()
        fsync_dir(ws.state_dir)
    result.still_in = _appearances(ws, people)
    return result
