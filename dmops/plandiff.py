"""``dmops plan CAMPAIGN --diff BASE``: who a change adds, drops or moves, and why (SPEC §6).

BASE is an earlier ``plan --out`` file (CSV or Parquet). A contact's state is ``send:<variant>`` or
``excluded:<reason>``; the comparison runs in DuckDB over BASE and the current plan written the way
``--out`` would write it in BASE's format (so ids a CSV protects from spreadsheets compare as written).

``--fail-on`` thresholds make the comparison a CI gate (exit 1):

- ``STATE:-5%`` / ``STATE:+10%`` / ``STATE:-100``: the number of contacts in STATE fell (``-``) or rose
  (``+``) by more than that share of BASE's number, or that many contacts;
- ``joined:STATE>0`` / ``left:STATE>=50`` (``>``, ``>=``, ``<``, ``<=``, ``=``): the contacts now in STATE
  that were not in it in BASE (new rows and moves into it), or those in it in BASE that are not now.

STATE is ``send``, ``excluded``, ``send:<variant>``, ``excluded:<reason>`` or a bare reason of SPEC §6
(``suppressed`` is ``excluded:suppressed``); ``send`` and ``excluded`` cover every variant or reason.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from dmops.db import quote_literal
from dmops.errors import DataError, MissingInputError, UsageError
from dmops.pii import mask_id
from dmops.sql import REASONS, query
from dmops.tabular import FORMULA_STARTS

EXAMPLES = 3  # contacts shown per move
COLUMNS = ("contact_id", "decision", "reason", "variant")
_STATE = (
    "CASE WHEN decision = 'send' THEN 'send:' || coalesce(variant, '') ELSE 'excluded:' || coalesce(reason, '') END"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
}


@dataclass(frozen=True)
class Move:
    """Contacts whose state went from ``was`` to ``now`` (None: not in that plan), with a few of their ids."""

    was: str | None
    now: str | None
    contacts: int
    examples: tuple[str, ...]


@dataclass
class PlanDiff:
    campaign: str
    base: Path
    base_rows: int
    current_rows: int
    unchanged_states: dict[str, int]  # contacts per state they kept
    changes: list[Move]  # moves, then joined (was None), then left (now None), each by state
    times_changed: int  # contacts in both plans whose send_after differs (another --at, schedule or zone)
    failed: list[str] = field(default_factory=list)  # the --fail-on thresholds crossed

    @property
    def unchanged(self) -> int:
        return sum(self.unchanged_states.values())

    @property
    def moves(self) -> list[Move]:
        return [m for m in self.changes if m.was is not None and m.now is not None]

    @property
    def joined(self) -> dict[str, int]:
        return {m.now: m.contacts for m in self.changes if m.was is None and m.now is not None}

    @property
    def left(self) -> dict[str, int]:
        return {m.was: m.contacts for m in self.changes if m.now is None and m.was is not None}

    def counts(self, which: str) -> dict[str, int]:
        """Contacts per state in the base plan (``which="base"``) or the current one."""
        found: dict[str, int] = {}
        for state, n in self.unchanged_states.items():
            found[state] = found.get(state, 0) + n
        for move in self.changes:
            side = move.was if which == "base" else move.now
            if side is not None:
                found[side] = found.get(side, 0) + move.contacts
        return found

    def as_json(self) -> dict[str, Any]:
        """SPEC §6's shape."""
        return {
            "campaign": self.campaign,
            "base_rows": self.base_rows,
            "current_rows": self.current_rows,
            "unchanged": self.unchanged,
            "moves": [{"from": m.was, "to": m.now, "contacts": m.contacts} for m in self.moves],
            "joined": self.joined,
            "left": self.left,
        }


def _read_base(con: duckdb.DuckDBPyConnection, base: Path) -> bool:
    """Load BASE as the temporary table ``_dm_base_plan`` (contact_id, state, send_after); whether it is CSV."""
    if not base.is_file():
        raise MissingInputError("no such plan file", file=base, hint="write one with `dmops plan CAMPAIGN --out FILE`")
    suffix = base.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise UsageError("--diff takes a plan --out file ending in .csv or .parquet", file=base)
    csv = suffix == ".csv"
    reader = (
        f"read_csv({quote_literal(str(base))}, header = true, all_varchar = true, auto_detect = true)"
        if csv
        else f"read_parquet({quote_literal(str(base))})"
    )
    try:
        names = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
    except duckdb.Error as exc:
        raise DataError(f"cannot read the plan file ({type(exc).__name__})", file=base) from None
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise DataError(
            f"not a plan --out file: no column {', '.join(missing)}",
            file=base,
            hint="--diff compares with a file written by `dmops plan CAMPAIGN --out FILE`",
        )
    send_after = "CAST(send_after AS VARCHAR)" if "send_after" in names else "CAST(NULL AS VARCHAR)"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _dm_base_plan AS
            SELECT contact_id, {_STATE} AS state, send_after, decision, row_number() OVER () + 1 AS line
            FROM (SELECT CAST(contact_id AS VARCHAR) AS contact_id, CAST(decision AS VARCHAR) AS decision,
                         nullif(CAST(reason AS VARCHAR), '') AS reason, nullif(CAST(variant AS VARCHAR), '') AS variant,
                         {send_after} AS send_after
                  FROM {reader})"""
    )
    bad = con.execute(
        """SELECT min(line) FILTER (WHERE decision IS NULL OR decision NOT IN ('send', 'excluded')),
                  min(line) FILTER (WHERE contact_id IS NULL),
                  (SELECT min(line) FROM (SELECT line, row_number() OVER (PARTITION BY contact_id ORDER BY line) AS k
                                          FROM _dm_base_plan) WHERE k > 1)
           FROM _dm_base_plan"""
    ).fetchall()[0]

    def row(line: int) -> int | None:
        return int(line) if csv else None  # a Parquet file has no lines to name

    if bad[0] is not None:
        raise DataError("decision must be send or excluded", file=base, line=row(bad[0]), key="decision")
    if bad[1] is not None:
        raise DataError("a row has no contact_id", file=base, line=row(bad[1]), key="contact_id")
    if bad[2] is not None:
        raise DataError("a contact_id appears twice", file=base, line=row(bad[2]), key="contact_id")
    return csv


def compare(con: duckdb.DuckDBPyConnection, campaign: str, base: Path) -> PlanDiff:
    """The current plan (``plan_rows`` in ``con``) against BASE."""
    csv = _read_base(con, base)
    current = query("plan_out")
    params = {"empty": None if csv else "", "formula_starts": list(FORMULA_STARTS) if csv else []}
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _dm_current_plan AS
            SELECT contact_id, {_STATE} AS state, send_after FROM ({current})""",
        params,
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _dm_plan_diff AS
           SELECT coalesce(b.contact_id, c.contact_id) AS contact_id, b.state AS was, c.state AS now,
                  b.send_after IS NOT NULL AND c.send_after IS NOT NULL AND b.send_after <> c.send_after AS retimed
           FROM _dm_base_plan b FULL JOIN _dm_current_plan c USING (contact_id)"""
    )
    base_rows, current_rows, retimed = con.execute(
        "SELECT count(was), count(now), count(*) FILTER (WHERE retimed) FROM _dm_plan_diff"
    ).fetchall()[0]
    changes = [
        Move(was, now, int(n), tuple(examples))
        for was, now, n, examples in con.execute(
            f"""SELECT was, now, count(*), list(contact_id ORDER BY contact_id)[1:{EXAMPLES}]
                FROM _dm_plan_diff WHERE was IS DISTINCT FROM now
                GROUP BY was, now
                ORDER BY CASE WHEN was IS NULL THEN 1 WHEN now IS NULL THEN 2 ELSE 0 END, was, now"""
        ).fetchall()
    ]
    kept = con.execute("SELECT was, count(*) FROM _dm_plan_diff WHERE was = now GROUP BY was ORDER BY was").fetchall()
    unchanged_states = {state: int(n) for state, n in kept}
    return PlanDiff(campaign, base, base_rows, current_rows, unchanged_states, changes, retimed)


# --- thresholds ------------------------------------------------------------------------------------------

_CHANGE = re.compile(r"(?P<state>[^\s:]+(?::[^\s:]+)?):(?P<sign>[+-])(?P<n>\d+(?:\.\d+)?)(?P<pct>%?)")
_COUNT = re.compile(r"(?P<kind>joined|left):(?P<state>[^\s:<>=]+(?::[^\s:<>=]+)?)(?P<op>>=|<=|>|<|=)(?P<n>\d+)")


def _state_pattern(text: str, threshold: str) -> Callable[[str], bool]:
    """What a STATE of a threshold matches: ``send``/``excluded`` every variant/reason, a bare reason its
    excluded state, else the exact state."""
    if text in ("send", "excluded"):
        return lambda state: state.startswith(text + ":")
    if ":" not in text:
        if text not in REASONS:
            raise UsageError(
                f"--fail-on {threshold!r}: {text!r} is not a state",
                hint="a state is send, excluded, send:<variant>, excluded:<reason> or a reason: " + ", ".join(REASONS),
            )
        text = f"excluded:{text}"
    return lambda state: state == text


@dataclass(frozen=True)
class Threshold:
    text: str
    check: Callable[[PlanDiff], str | None]  # what was crossed, or None


def threshold(text: str) -> Threshold:
    """A ``--fail-on`` threshold (UsageError, exit 2, for one that does not parse)."""
    if found := _COUNT.fullmatch(text):
        matches = _state_pattern(found["state"], text)
        kind, op, limit, named = found["kind"], found["op"], int(found["n"]), found["state"]

        def count(diff: PlanDiff) -> str | None:
            n = sum(
                m.contacts
                for m in diff.changes
                if (kind == "joined" and m.now is not None and matches(m.now) and not (m.was and matches(m.was)))
                or (kind == "left" and m.was is not None and matches(m.was) and not (m.now and matches(m.now)))
            )
            return f"{text}: {n:,} contacts {kind} {named}" if _OPS[op](n, limit) else None

        return Threshold(text, count)
    if found := _CHANGE.fullmatch(text):
        matches = _state_pattern(found["state"], text)
        falls, amount, percent, named = found["sign"] == "-", float(found["n"]), bool(found["pct"]), found["state"]

        def change(diff: PlanDiff) -> str | None:
            before = sum(n for state, n in diff.counts("base").items() if matches(state))
            after = sum(n for state, n in diff.counts("current").items() if matches(state))
            moved = before - after if falls else after - before
            limit = before * amount / 100 if percent else amount
            if moved <= limit:
                return None
            share = f" ({moved / before:.1%})" if before else ""
            way = "fell" if falls else "rose"
            return f"{text}: {named} {way} by {moved:,} contacts{share}, {before:,} -> {after:,}"

        return Threshold(text, change)
    raise UsageError(
        f"--fail-on {text!r} is not a threshold",
        hint="e.g. 'send:-5%' (send fell by more than 5%), 'send:+1000', 'joined:suppressed>0', 'left:send>=10'",
    )


def check(diff: PlanDiff, thresholds: list[Threshold]) -> list[str]:
    """The thresholds ``diff`` crosses, described (also kept in ``diff.failed``)."""
    diff.failed = [found for t in thresholds if (found := t.check(diff)) is not None]
    return diff.failed


# --- output ----------------------------------------------------------------------------------------------


def _ids(move: Move, show_pii: bool) -> str:
    return ", ".join(move.examples if show_pii else (mask_id(i) for i in move.examples))


def _header(diff: PlanDiff) -> list[str]:
    lines = [
        f"{diff.campaign} against {diff.base.name}: {diff.base_rows:,} contacts before, {diff.current_rows:,} now, "
        f"{diff.unchanged:,} unchanged"
    ]
    if diff.times_changed:
        lines.append(
            f"send times differ for {diff.times_changed:,} contacts in both plans: they were made for another --at, "
            "schedule or time zone"
        )
    return lines


def _rows(diff: PlanDiff, show_pii: bool) -> list[tuple[str, str, str, str]]:
    return [
        (m.was or "(not in base)", m.now or "(not in plan)", f"{m.contacts:,}", _ids(m, show_pii)) for m in diff.changes
    ]


def markdown(diff: PlanDiff, show_pii: bool = False) -> str:
    """For a pull request's summary (``$GITHUB_STEP_SUMMARY``, a GitLab note)."""
    out = [f"### dmops plan diff: `{diff.campaign}`", "", *[f"{line}." for line in _header(diff)], ""]
    if diff.failed:
        out += [
            "**Thresholds crossed:**",
            "",
            *[f"- `{f.split(': ', 1)[0]}`: {f.split(': ', 1)[1]}" for f in diff.failed],
            "",
        ]
    if not diff.changes:
        return "\n".join([*out, "No contact changes state."]) + "\n"
    out += ["| from | to | contacts | e.g. |", "|---|---|---:|---|"]
    out += [f"| {a} | {b} | {n} | {ids} |" for a, b, n, ids in _rows(diff, show_pii)]
    return "\n".join(out) + "\n"


def github(diff: PlanDiff, campaign_file: str, show_pii: bool = False) -> str:
    """GitHub Actions workflow commands: a notice per change, an error per threshold crossed."""
    from dmops.ci import github_command

    title = f"dmops plan diff ({diff.campaign})"
    lines = [github_command("notice", " ".join(_header(diff)), file=campaign_file, title=title)]
    lines += [
        github_command("notice", f"{a} -> {b}: {n} contacts (e.g. {ids})", file=campaign_file, title=title)
        for a, b, n, ids in _rows(diff, show_pii)
    ]
    lines += [github_command("error", found, file=campaign_file, title=title) for found in diff.failed]
    return "\n".join(lines) + "\n"


def table_rows(diff: PlanDiff, show_pii: bool = False) -> tuple[list[str], list[tuple[str, str, str, str]]]:
    """The header lines and the rows (from, to, contacts, examples) of the terminal table."""
    return _header(diff), _rows(diff, show_pii)
