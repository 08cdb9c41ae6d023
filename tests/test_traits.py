"""Computed traits and lifecycle stages on small hand-computed histories; plan filters on them."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dmops import ledger
from dmops.campaign import load_campaign
from dmops.contacts import load_contacts
from dmops.db import connect
from dmops.errors import ConfigError
from dmops.ledger import Entry
from dmops.plan import run_plan
from dmops.traits import TRAITS, compute
from dmops.validate import validate
from dmops.workspace import load_workspace
from tests.planning import write

AT = datetime(2026, 12, 1, tzinfo=UTC)
NAIVE_AT = AT.replace(tzinfo=None)
D = timedelta(days=1)
S = timedelta(seconds=1)
WS = """\
version: 1
timezone: UTC
contacts: contacts.csv
"""


def workspace(tmp_path: Path, ids: list[str], extra: str = "") -> Path:
    rows = "contact_id,email\n" + "".join(f"{i},{i}@example.com\n" for i in ids)
    return write(tmp_path / "ws", {"dmops.yaml": WS + extra, "contacts.csv": rows})


def add_events(root: Path, events: list[tuple[str, str, datetime, float]]) -> None:
    """(contact, event, ts naive UTC, revenue) rows straight into the ledger."""
    con = ledger.open_for_writing(load_workspace(root))
    con.executemany(
        "INSERT INTO events VALUES (?, ?, ?, NULL, ?, NULL, ?, NULL, NULL, 'test', NULL)",
        [(n, event, ts, contact, revenue) for n, (contact, event, ts, revenue) in enumerate(events)],
    )
    con.close()


def traits_of(root: Path, at: datetime = AT) -> dict[str, dict[str, Any]]:
    ws = load_workspace(root)
    con = connect()
    load_contacts(con, ws)
    ledger.attach(con, ws)
    table = compute(con, ws, at)
    cursor = con.execute(f"SELECT * FROM {table} ORDER BY contact_id")
    names = [d[0] for d in cursor.description]
    out = {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
    con.close()
    return out


def conversions(**history: list[timedelta]) -> list[tuple[str, str, datetime, float]]:
    return [(cid, "conversion", NAIVE_AT - age, 10.0) for cid, ages in history.items() for age in ages]


STAGE_CASES = {  # contact: (conversion ages before --at, expected stage)
    "none": ([], "prospect"),
    "new_edge": ([30 * D], "new"),
    "just_not_new": ([30 * D + S], "active"),
    "active_edge": ([200 * D, 90 * D], "active"),
    "at_risk": ([90 * D + S], "at_risk"),
    "at_risk_edge": ([180 * D], "at_risk"),
    "churned": ([180 * D + S], "churned"),
    "reactivated": ([400 * D, 10 * D], "reactivated"),
    "gap_edge": ([200 * D, 20 * D], "active"),  # a gap of exactly 180 days is not a churn
    "react_then_active": ([500 * D, 100 * D, 50 * D], "active"),  # came back 100 days ago: now plain active
    "react_edge": ([300 * D, 90 * D], "reactivated"),
    "future_only": ([-D], "prospect"),  # events after --at do not exist yet
}


def test_every_stage_at_its_edges(tmp_path: Path) -> None:
    root = workspace(tmp_path, sorted(STAGE_CASES))
    add_events(root, conversions(**{cid: ages for cid, (ages, _) in STAGE_CASES.items()}))
    got = traits_of(root)
    assert {cid: t["lifecycle_stage"] for cid, t in got.items()} == {
        cid: stage for cid, (_, stage) in STAGE_CASES.items()
    }


def test_counts_recency_and_empty_contacts(tmp_path: Path) -> None:
    root = workspace(tmp_path, ["a", "b", "none"])
    add_events(
        root,
        [
            ("a", "conversion", NAIVE_AT - 400 * D, 100.0),  # outside every window
            ("a", "conversion", NAIVE_AT - 365 * D, 50.0),  # the 365-day edge counts
            ("a", "conversion", NAIVE_AT - 90 * D, 20.0),  # the 90-day edge counts
            ("a", "conversion", NAIVE_AT - 2 * D - 3 * S, 5.5),
            ("a", "conversion", NAIVE_AT + D, 999.0),  # after --at
            ("b", "open", NAIVE_AT - 5 * D, 0.0),
            ("b", "open", NAIVE_AT - D, 0.0),
            ("b", "open", NAIVE_AT + D, 0.0),
            ("b", "click", NAIVE_AT - S, 0.0),
        ],
    )
    got = traits_of(root)
    a, b, none = got["a"], got["b"], got["none"]
    assert a["first_conversion_at"] == NAIVE_AT - 400 * D
    assert a["last_conversion_at"] == NAIVE_AT - 2 * D - 3 * S
    assert (a["conversions_90d"], a["conversions_365d"], a["revenue_365d"]) == (2, 3, 75.5)
    assert a["recency_days"] == 2
    assert a["lifecycle_stage"] == "reactivated"  # 275 days between the 365- and 90-day-old orders
    assert b["last_open_at"] == NAIVE_AT - D and b["lifecycle_stage"] == "prospect"
    assert none == {
        "contact_id": "none",
        "first_conversion_at": None,
        "last_conversion_at": None,
        "conversions_90d": 0,
        "conversions_365d": 0,
        "revenue_365d": 0.0,
        "recency_days": None,
        "r_score": None,
        "f_score": None,
        "m_score": None,
        "lifecycle_stage": "prospect",
        "messages_30d": 0,
        "last_open_at": None,
    }
    assert set(none) == {"contact_id", *TRAITS}


def test_rfm_quintiles_share_scores_on_ties(tmp_path: Path) -> None:
    root = workspace(tmp_path, ["s1", "s2", "s3", "s4", "s5", "old"])
    events = [
        ("s1", "conversion", NAIVE_AT - 1 * D, 10.0),
        ("s2", "conversion", NAIVE_AT - 2 * D, 20.0),
        ("s3", "conversion", NAIVE_AT - 100 * D, 15.0),
        ("s3", "conversion", NAIVE_AT - 3 * D, 15.0),
        ("s4", "conversion", NAIVE_AT - 200 * D, 10.0),
        ("s4", "conversion", NAIVE_AT - 4 * D, 20.0),
        ("s5", "conversion", NAIVE_AT - 300 * D, 10.0),
        ("s5", "conversion", NAIVE_AT - 30 * D, 20.0),
        ("s5", "conversion", NAIVE_AT - 5 * D, 20.0),
        ("old", "conversion", NAIVE_AT - 366 * D, 500.0),  # no conversion in 365 days: not scored
    ]
    add_events(root, events)
    got = traits_of(root)
    scores = {cid: (t["r_score"], t["f_score"], t["m_score"]) for cid, t in got.items()}
    # recency 1..5 days: more recent scores higher; conversions 1,1,2,2,3; revenue 10,20,30,30,50
    assert scores == {
        "s1": (5, 1, 1),
        "s2": (4, 1, 2),
        "s3": (3, 3, 3),
        "s4": (2, 3, 3),
        "s5": (1, 5, 5),
        "old": (None, None, None),
    }


def test_quintiles_of_ten_contacts(tmp_path: Path) -> None:
    ids = [f"q{i:02d}" for i in range(10)]
    root = workspace(tmp_path, ids)
    add_events(root, [(cid, "conversion", NAIVE_AT - D, float(i + 1)) for i, cid in enumerate(ids)])
    got = traits_of(root)
    assert [got[cid]["m_score"] for cid in ids] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert {got[cid]["r_score"] for cid in ids} == {1}  # all tied on recency


def test_messages_30d_counts_marketing_messages_in_the_window(tmp_path: Path) -> None:
    root = workspace(tmp_path, ["m"])

    def entry(planned: datetime, *, kind: str = "message", purpose: str = "marketing", n: int = 0) -> Entry:
        return Entry(
            campaign_id=f"c{n}",
            occurrence="once",
            contact_id="m",
            kind=kind,
            channel="email",
            purpose=purpose,
            variant="a" if kind == "message" else None,
            planned_at=planned,
            message_id=f"id{n}" if kind == "message" else None,
        )

    ledger.record(
        load_workspace(root),
        [
            entry(NAIVE_AT - D, n=1),
            entry(NAIVE_AT - 30 * D, n=2),  # the edge counts
            entry(NAIVE_AT - 30 * D - S, n=3),
            entry(NAIVE_AT + D, n=4),
            entry(NAIVE_AT - D, purpose="transactional", n=5),
            entry(NAIVE_AT - D, kind="holdout", n=6),
        ],
    )
    assert traits_of(root)["m"]["messages_30d"] == 2


def test_lifecycle_windows_come_from_dmops_yaml(tmp_path: Path) -> None:
    extra = "lifecycle: {new_within: 7d, active_within: 30d, churned_after: 60d}\n"
    root = workspace(tmp_path, ["x", "y", "z"], extra)
    add_events(root, conversions(x=[8 * D], y=[31 * D], z=[61 * D]))
    assert [t["lifecycle_stage"] for t in traits_of(root).values()] == ["active", "at_risk", "churned"]


def test_windows_out_of_order_are_a_config_error(tmp_path: Path) -> None:
    root = workspace(tmp_path, ["x"], "lifecycle: {active_within: 200d}\n")
    with pytest.raises(ConfigError) as caught:
        load_workspace(root)
    assert "lifecycle" in str(caught.value)


# --- plan and validate see traits as columns ------------------------------------------------


def reference_stage(ages: list[timedelta]) -> str:
    """An independent Python statement of the stage rules (default windows)."""
    past = sorted((a for a in ages if a >= timedelta(0)), reverse=True)  # oldest first
    if not past:
        return "prospect"
    first, last = past[0], past[-1]
    if first <= 30 * D:
        return "new"
    if last <= 90 * D:
        comebacks = [later for earlier, later in itertools.pairwise(past) if earlier - later > 180 * D]
        return "reactivated" if any(age <= 90 * D for age in comebacks) else "active"
    return "at_risk" if last <= 180 * D else "churned"


CAMPAIGN = """\
id: back
name: Win back
channel: email
sender: {from: "Shop <news@shop.example.com>"}
unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"
send_at: "2026-12-01 00:00"
holdout: 0
audience: {where: "lifecycle_stage = 'at_risk'"}
variants:
  - id: a
    subject: "We miss you"
    text: "{{ lifecycle_stage }} {{ recency_days }} days, {{ conversions_365d }} orders"
"""


def test_plan_on_a_trait_matches_the_independent_computation(tmp_path: Path) -> None:
    rng = random.Random(7)
    history = {
        f"r{i:03d}": [
            timedelta(days=rng.randrange(-20, 700), seconds=rng.randrange(86400)) for _ in range(rng.randrange(0, 4))
        ]
        for i in range(150)
    }
    root = workspace(tmp_path, sorted(history))
    write(root, {"campaigns/back.yaml": CAMPAIGN})
    add_events(root, conversions(**history))
    expected = sorted(cid for cid, ages in history.items() if reference_stage(ages) == "at_risk")
    ws = load_workspace(root)
    con, _summary = run_plan(ws, load_campaign(root / "campaigns/back.yaml", ws), AT)
    planned = sorted(row[0] for row in con.execute("SELECT contact_id FROM plan_rows").fetchall())
    con.close()
    assert planned == expected and len(expected) > 5
    rows = traits_of(root)
    assert sorted(cid for cid, t in rows.items() if t["lifecycle_stage"] == "at_risk") == expected
    assert {cid: t["lifecycle_stage"] for cid, t in rows.items()} == {
        cid: reference_stage(ages) for cid, ages in history.items()
    }


def test_send_renders_traits_and_validate_knows_them(tmp_path: Path) -> None:
    import json

    from dmops.send import send

    root = workspace(tmp_path, ["a", "b"])
    write(root, {"campaigns/back.yaml": CAMPAIGN})
    add_events(root, conversions(a=[100 * D, 120 * D], b=[5 * D]))
    report = validate(root)
    assert report.errors == [], [str(e) for e in report.errors]
    ws = load_workspace(root)
    result = send(ws, load_campaign(root / "campaigns/back.yaml", ws), AT)
    assert result.folder is not None
    messages = [json.loads(line) for line in (result.folder / "messages.jsonl").read_text().splitlines()]
    assert [(m["contact_id"], m["text"]) for m in messages] == [("a", "at_risk 100 days, 2 orders")]


def test_a_contacts_column_with_a_trait_name_wins(tmp_path: Path) -> None:
    root = write(
        tmp_path / "ws",
        {
            "dmops.yaml": WS,
            "contacts.csv": "contact_id,email,lifecycle_stage\na,a@example.com,at_risk\nb,b@example.com,vip\n",
            "campaigns/back.yaml": CAMPAIGN,
        },
    )
    ws = load_workspace(root)
    con, summary = run_plan(ws, load_campaign(root / "campaigns/back.yaml", ws), AT)
    con.close()
    assert summary.audience == 1  # the file says a is at_risk; no events would make it a prospect
