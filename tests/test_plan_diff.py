"""`dmops plan CAMPAIGN --diff BASE` (SPEC §6): every count checked against the two --out files compared in
Python, the Markdown summary pinned whole, thresholds as a CI gate, and bad BASE files named."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.planning import message, run_cli, seed, write

AT = "2026-12-01T10:00"
WS = """\
version: 1
timezone: Asia/Shanghai
contacts: contacts.csv
suppressions: [optouts.csv]
consent: {email: email_opt_in}
caps:
  - {max: 2, per: 7d}
"""
CAMPAIGN = """\
id: promo
name: Promo
channel: email
sender: {from: "Shop <news@shop.example.com>"}
unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"
audience: {where: "tier IN ('gold', 'silver')"}
holdout: 0.1
variants:
  - {id: a, weight: 1, subject: S, text: T}
  - {id: b, weight: 1, subject: S, text: T}
"""
TIERS = ("gold", "silver", "bronze")


def contacts(ids: range, no_consent: frozenset[int] = frozenset()) -> str:
    rows = ["contact_id,email,email_opt_in,tier"]
    for i in ids:
        email = "not-an-email" if i % 37 == 5 else f"u{i}@example.com"
        rows.append(f"c{i:04d},{email},{'no' if i % 11 == 3 or i in no_consent else 'yes'},{TIERS[i % 3]}")
    return "\n".join(rows) + "\n"


def optouts(ids: range) -> str:
    return "contact_id\n" + "".join(f"c{i:04d}\n" for i in ids if i % 29 == 7)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    files = {
        "dmops.yaml": WS,
        "contacts.csv": contacts(range(300)),
        "optouts.csv": optouts(range(300)),
        "campaigns/promo.yaml": CAMPAIGN,
    }
    root = write(tmp_path / "ws", files)
    seed(root, *[message(f"c{i:04d}", "2026-11-28 02:00:00") for i in range(0, 300, 4)])  # one earlier send
    return root


def change(root: Path) -> None:
    """The pull request: bronze joins the audience, b's weight triples, a tighter cap, and a new contact file
    (ten gone, fifteen new, five who withdrew consent)."""
    campaign = root / "campaigns" / "promo.yaml"
    text = campaign.read_text(encoding="utf-8").replace("'gold', 'silver'", "'gold', 'silver', 'bronze'")
    campaign.write_text(text.replace("{id: b, weight: 1", "{id: b, weight: 3"), encoding="utf-8")
    (root / "dmops.yaml").write_text(WS.replace("{max: 2, per: 7d}", "{max: 1, per: 7d}"), encoding="utf-8")
    (root / "contacts.csv").write_text(
        contacts(range(10, 315), no_consent=frozenset({40, 41, 42, 43, 44})), encoding="utf-8"
    )


def states(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {
        r["contact_id"]: f"send:{r['variant']}" if r["decision"] == "send" else f"excluded:{r['reason']}" for r in rows
    }


def read_plan(path: Path) -> dict[str, str]:
    if path.suffix == ".csv":
        return states(list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))))
    con = duckdb.connect()
    cursor = con.execute("SELECT * FROM read_parquet($p)", {"p": str(path)})
    names = [d[0] for d in cursor.description]
    return states([dict(zip(names, row, strict=True)) for row in cursor.fetchall()])


def expected(base: dict[str, str], current: dict[str, str]) -> dict[str, Any]:
    both = base.keys() & current.keys()
    moves = Counter((base[c], current[c]) for c in both if base[c] != current[c])
    return {
        "campaign": "promo",
        "base_rows": len(base),
        "current_rows": len(current),
        "unchanged": sum(1 for c in both if base[c] == current[c]),
        "moves": [{"from": a, "to": b, "contacts": n} for (a, b), n in sorted(moves.items())],
        "joined": dict(sorted(Counter(current[c] for c in current.keys() - base.keys()).items())),
        "left": dict(sorted(Counter(base[c] for c in base.keys() - current.keys()).items())),
    }


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_every_count_of_the_diff_is_the_two_plan_files_compared(root: Path, tmp_path: Path, suffix: str) -> None:
    base, current = tmp_path / f"base.{suffix}", tmp_path / f"current.{suffix}"
    assert run_cli(root, "plan", "promo", "--at", AT, "--out", str(base))[0] == 0
    change(root)
    code, output = run_cli(root, "plan", "promo", "--at", AT, "--diff", str(base), "--format", "json")
    assert code == 0, output
    assert run_cli(root, "plan", "promo", "--at", AT, "--out", str(current))[0] == 0
    found, want = json.loads(output), expected(read_plan(base), read_plan(current))
    assert found == want
    moved = {(m["from"], m["to"]) for m in want["moves"]}
    assert ("send:a", "send:b") in moved  # b's weight tripled
    assert any(to == "excluded:frequency_cap" and was.startswith("send:") for was, to in moved)  # the tighter cap
    assert any(to == "excluded:no_consent" and was.startswith("send:") for was, to in moved)  # consent withdrawn
    assert want["joined"] and want["left"]  # bronze and the new contacts; the contacts gone


def test_the_markdown_summary_is_pinned(root: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.csv"
    assert run_cli(root, "plan", "promo", "--at", AT, "--out", str(base))[0] == 0
    change(root)
    code, output = run_cli(
        root, "plan", "promo", "--at", AT, "--diff", str(base), "--format", "md", "--fail-on", "joined:suppressed>0"
    )
    assert code == 1  # the threshold is crossed: the summary says so
    assert output == MARKDOWN


MARKDOWN = """\
### dmops plan diff: `promo`

promo against base.csv: 200 contacts before, 305 now, 114 unchanged.

**Thresholds crossed:**

- `joined:suppressed>0`: 3 contacts joined suppressed

| from | to | contacts | e.g. |
|---|---|---:|---|
| excluded:holdout | excluded:frequency_cap | 5 | c0*28, c0*76, c0*32 |
| send:a | excluded:frequency_cap | 15 | c0*24, c0*60, c0*88 |
| send:a | send:b | 36 | c0*21, c0*27, c0*31 |
| send:b | excluded:frequency_cap | 21 | c0*12, c0*16, c0*48 |
| send:b | excluded:no_consent | 2 | c0*40, c0*43 |
| (not in base) | excluded:frequency_cap | 19 | c0*20, c0*32, c0*56 |
| (not in base) | excluded:holdout | 3 | c0*26, c0*37, c0*66 |
| (not in base) | excluded:invalid_address | 3 | c0*16, c0*27, c0*01 |
| (not in base) | excluded:no_consent | 13 | c0*14, c0*41, c0*44 |
| (not in base) | excluded:suppressed | 3 | c0*65, c0*52, c0*39 |
| (not in base) | send:a | 20 | c0*11, c0*35, c0*83 |
| (not in base) | send:b | 51 | c0*17, c0*23, c0*29 |
| excluded:no_consent | (not in plan) | 1 | c0*03 |
| excluded:suppressed | (not in plan) | 1 | c0*07 |
| send:a | (not in plan) | 1 | c0*06 |
| send:b | (not in plan) | 4 | c0*00, c0*01, c0*04 |
"""


def test_thresholds_fail_the_run_with_what_they_saw(root: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.csv"
    assert run_cli(root, "plan", "promo", "--at", AT, "--out", str(base))[0] == 0
    diff = ["plan", "promo", "--at", AT, "--diff", str(base)]
    assert run_cli(root, *diff, "--fail-on", "send:-5%", "--fail-on", "left:send>0")[0] == 0  # nothing changed
    change(root)
    code, output = run_cli(root, *diff, "--fail-on", "send:-90%", "--fail-on", "left:suppressed>1")
    assert code == 0, output
    code, output = run_cli(root, *diff, "--fail-on", "send:a:-5%", "--fail-on", "joined:frequency_cap>=1")
    assert code == 1
    assert "threshold crossed: send:a:-5%: send:a fell by" in output
    assert "threshold crossed: joined:frequency_cap>=1:" in output
    code, output = run_cli(root, *diff, "--format", "github", "--fail-on", "send:+1")
    assert code == 1
    assert "::error file=" in output and "title=dmops plan diff (promo)::send:+1: send rose by" in output
    assert output.count("::notice ") >= 4


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--fail-on", "send:-5%"], 2, "go with --diff"),
        (["--format", "md"], 2, "go with --diff"),
        (["--diff", "{base}", "--fail-on", "sent:-5%"], 2, "'sent' is not a state"),
        (["--diff", "{base}", "--fail-on", "send:five"], 2, "is not a threshold"),
        (["--diff", "{base}", "--explain", "c0001"], 2, "do not go together"),
        (["--diff", "{missing}"], 66, "no such plan file"),
        (["--diff", "{notaplan}"], 65, "not a plan --out file: no column decision, reason, variant"),
        (["--diff", "{twice}"], 65, "twice.csv:3"),
    ],
)
def test_a_bad_diff_request_is_named(root: Path, tmp_path: Path, args: list[str], code: int, message: str) -> None:
    paths = {
        "base": tmp_path / "base.csv",
        "missing": tmp_path / "gone.csv",
        "notaplan": tmp_path / "contacts.csv",
        "twice": tmp_path / "twice.csv",
    }
    assert run_cli(root, "plan", "promo", "--at", AT, "--out", str(paths["base"]))[0] == 0
    paths["notaplan"].write_text("contact_id,email\nc0001,a@example.com\n", encoding="utf-8")
    paths["twice"].write_text(
        "contact_id,decision,reason,variant,send_after\nc0001,send,,a,2026-12-01T02:00:00Z\n"
        "c0001,excluded,holdout,,2026-12-01T02:00:00Z\n",
        encoding="utf-8",
    )
    found, output = run_cli(root, "plan", "promo", "--at", AT, *[a.format(**paths) for a in args])
    assert found == code, output
    assert message in output


def test_examples_are_masked_unless_pii_is_asked_for(root: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.csv"
    assert run_cli(root, "plan", "promo", "--at", AT, "--out", str(base))[0] == 0
    change(root)
    masked = run_cli(root, "plan", "promo", "--at", AT, "--diff", str(base))[1]
    shown = run_cli(root, "--show-pii", "plan", "promo", "--at", AT, "--diff", str(base))[1]
    current = read_plan(tmp_path / "base.csv")
    moved_ids = [c for c in sorted(current) if c in shown]
    assert moved_ids and not any(c in masked for c in moved_ids)
    assert "c0*" in masked


def test_plans_for_another_moment_are_compared_and_the_header_says_so(root: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.csv"
    assert run_cli(root, "plan", "promo", "--at", AT, "--out", str(base))[0] == 0
    code, output = run_cli(root, "plan", "promo", "--at", "2026-12-08T10:00", "--diff", str(base))
    assert code == 0, output
    in_both = len(read_plan(base))
    assert f"send times differ for {in_both:,} contacts in both plans" in output
    code, output = run_cli(root, "plan", "promo", "--at", AT, "--diff", str(base))
    assert code == 0 and "send times differ" not in output and "No contact changes state." in output
