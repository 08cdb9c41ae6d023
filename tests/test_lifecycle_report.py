"""`dmops report lifecycle` and `dmops report fatigue` on constructed histories."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from dmops import ledger
from dmops.ledger import Entry
from dmops.workspace import load_workspace
from tests.planning import write

WS = """\
version: 1
timezone: UTC
contacts: contacts.csv
"""


def workspace(tmp_path: Path, ids: list[str]) -> Path:
    rows = "contact_id,email\n" + "".join(f"{i},{i}@example.com\n" for i in ids)
    return write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": rows})


def add_events(root: Path, events: list[tuple[str, str | None, str | None, datetime]]) -> None:
    """(event, contact, message_id, ts) rows straight into the ledger."""
    con = ledger.open_for_writing(load_workspace(root))
    con.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?, ?, NULL, 0, NULL, NULL, 'test', NULL)",
        [(n, event, ts, message, contact) for n, (event, contact, message, ts) in enumerate(events)],
    )
    con.close()


# conversions of a, b (twice, ten months apart) and d; c never converts
HISTORY: list[tuple[str, str | None, str | None, datetime]] = [
    ("conversion", "a", None, datetime(2026, 8, 15)),
    ("conversion", "b", None, datetime(2025, 12, 1)),
    ("conversion", "b", None, datetime(2026, 10, 20)),
    ("conversion", "d", None, datetime(2026, 5, 20)),
]


def test_lifecycle_counts_flows_and_churn(cli, tmp_path: Path) -> None:
    root = workspace(tmp_path, ["a", "b", "c", "d"])
    add_events(root, HISTORY)
    result = cli("-w", root, "report", "lifecycle", "--at", "2026-12-10T00:00", "--months", "4", "--format", "json")
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    counts = {m["month"]: {k: v for k, v in m["counts"].items() if v} for m in view["months"]}
    # month ends: Oct 1, Nov 1, Dec 1 and --at (Dec 10)
    assert counts == {
        "2026-09": {"prospect": 1, "active": 1, "at_risk": 1, "churned": 1},
        "2026-10": {"prospect": 1, "active": 1, "reactivated": 1, "at_risk": 1},
        "2026-11": {"prospect": 1, "reactivated": 1, "at_risk": 1, "churned": 1},
        "2026-12": {"prospect": 1, "reactivated": 1, "at_risk": 1, "churned": 1},
    }
    flows = {f["to_month"]: f for f in view["flows"]}
    assert flows["2026-10"]["reactivated_from_churned"] == 1 and flows["2026-10"]["slipped"] == 0
    assert flows["2026-11"]["slipped"] == 1  # a: active -> at_risk
    assert {(m["from"], m["to"]) for m in flows["2026-11"]["moves"]} == {("active", "at_risk"), ("at_risk", "churned")}
    assert flows["2026-12"]["moves"] == []
    churn = {c["month"]: (c["customers_before"], c["churned"], c["rate"]) for c in view["churn"]}
    assert churn == {"2026-10": (2, 0, 0.0), "2026-11": (3, 1, 1 / 3), "2026-12": (2, 0, 0.0)}
    assert "churned at the end of m" in view["definitions"]["churn_rate"]

    table = cli("-w", root, "report", "lifecycle", "--at", "2026-12-10T00:00", "--months", "4")
    assert table.exit_code == 0 and "33.33%" in table.stdout and "Churn rate:" in table.stdout
    page = cli("-w", root, "report", "lifecycle", "--at", "2026-12-10T00:00", "--format", "html")
    assert page.exit_code == 0 and page.stdout.count("<rect") == 12 * 6 and "Churn rate" in page.stdout


def message(contact: str, day: int, channel: str = "email", purpose: str = "marketing", n: int = 0) -> Entry:
    return Entry(
        campaign_id=f"c{n}",
        occurrence="once",
        contact_id=contact,
        kind="message",
        channel=channel,
        purpose=purpose,
        variant="a",
        planned_at=datetime(2026, 11, 1) + timedelta(days=day),
        message_id=f"m{n}",
    )


def test_fatigue_rates_by_prior_messages_and_the_suggested_cap(cli, tmp_path: Path) -> None:
    root = workspace(tmp_path, ["x", "y"])
    entries = [
        message("x", 0, n=1),
        message("x", 1, n=2),
        message("x", 2, n=3),
        message("x", 10, n=4),  # 8 days after the third: nothing in its 7 days, three in its 30
        message("y", 0, n=5),
        message("x", 1, channel="sms", n=6),  # another channel: counted apart
        message("x", 3, purpose="transactional", n=7),  # never counted
    ]
    ledger.record(load_workspace(root), entries)
    add_events(
        root,
        [
            ("unsubscribe", "x", "m3", datetime(2026, 11, 3, 2)),
            ("unsubscribe", "x", "m3", datetime(2026, 11, 3, 3)),  # twice for one message counts once
            ("complaint", "y", "m5", datetime(2026, 11, 1, 5)),
            ("open", "x", "m4", datetime(2026, 11, 11)),
        ],
    )
    result = cli("-w", root, "report", "fatigue", "--format", "json", "--threshold", "0.05")
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    by = {c["channel"]: c for c in view["channels"]}
    assert set(by) == {"email", "sms"}

    def shape(curve: list[dict]) -> list[tuple[int, int, int, int]]:
        return [(p["prior"], p["messages"], p["unsubscribes"], p["complaints"]) for p in curve]

    assert shape(by["email"]["windows"]["7d"]) == [(0, 3, 0, 1), (1, 1, 0, 0), (2, 1, 1, 0)]
    assert shape(by["email"]["windows"]["30d"]) == [(0, 2, 0, 1), (1, 1, 0, 0), (2, 1, 1, 0), (3, 1, 0, 0)]
    assert shape(by["sms"]["windows"]["7d"]) == [(0, 1, 0, 0)]
    for point in by["email"]["windows"]["7d"]:
        low, high = point["unsubscribe_ci"]
        assert 0 <= low <= point["unsubscribe_rate"] <= high <= 1
    assert by["email"]["windows"]["7d"][2]["unsubscribe_ci"][0] > 0.05  # 1 of 1: Wilson lower bound 0.21
    assert by["email"]["suggestion"]["cap"] == {"max": 2, "per": "7d"}
    assert by["sms"]["suggestion"] is None

    strict = cli("-w", root, "report", "fatigue", "--format", "json", "--threshold", "0.5")
    assert json.loads(strict.stdout)["channels"][0]["suggestion"] is None
    table = cli("-w", root, "report", "fatigue")
    assert table.exit_code == 0 and "Suggested cap for email: {max: 2, per: 7d}" in table.stdout
    assert cli("-w", root, "report", "fatigue", "--format", "md").exit_code == 2
    assert cli("-w", root, "report", "fatigue", "--threshold", "2").exit_code == 2


def test_fatigue_with_an_empty_ledger(cli, tmp_path: Path) -> None:
    root = workspace(tmp_path, ["x"])
    result = cli("-w", root, "report", "fatigue")
    assert result.exit_code == 0 and "No marketing messages in the ledger yet." in result.stdout


def test_a_weekly_cadence_is_not_blamed_and_the_suggested_cap_removes_what_it_blames(cli, tmp_path: Path) -> None:
    # A newsletter every 7 days exactly, and a flash sale 2 days after each newsletter; the flash sales are
    # what people unsubscribe from. The cap rule (|t_m - t| < 7d) does not count the newsletter a week
    # before, so only the flash sales are blamed, and the suggested cap, replayed and then planned for
    # real, holds back the flash sales and none of the newsletters.
    people = [f"p{i:02d}" for i in range(40)]
    root = workspace(tmp_path, people)
    entries: list[Entry] = []
    unsubscribes = []

    def sent(campaign: str, week: int, day: int, who: str) -> Entry:
        return Entry(
            campaign,
            f"w{week}",
            who,
            "message",
            "email",
            "marketing",
            "a",
            datetime(2026, 11, 1) + timedelta(days=day),
            f"{campaign}-{week}-{who}",
        )

    for week in range(4):
        for i, who in enumerate(people):
            entries.append(sent("newsletter", week, 7 * week, who))
            if week < 3:  # the last week had no sale
                entries.append(sent("flash", week, 7 * week + 2, who))
                if i % 4 == week:  # a quarter of each sale's recipients leave, once each
                    unsubscribes.append(("unsubscribe", who, f"flash-{week}-{who}", datetime(2026, 11, 4 + 7 * week)))
    ledger.record(load_workspace(root), entries)
    add_events(root, unsubscribes)
    result = cli("-w", root, "report", "fatigue", "--format", "json", "--threshold", "0.05")
    assert result.exit_code == 0, result.output
    email = json.loads(result.stdout)["channels"][0]
    seven = {p["prior"]: (p["messages"], p["unsubscribes"]) for p in email["windows"]["7d"]}
    # the first newsletter has nothing before it; every sale has its newsletter 2 days before, and every later
    # newsletter the sale 5 days before it, but not the newsletter exactly 7 days before it
    assert seven == {0: (40, 0), 1: (240, 30)}
    assert email["suggestion"]["cap"] == {"max": 1, "per": "7d"}
    # replayed, the cap holds back every sale; the newsletters it blamed go out once the sale before them is gone
    assert email["suggestion"]["check"] == {"blamed": 240, "blamed_held": 120, "others_held": 0}
    table = cli("-w", root, "report", "fatigue", "--threshold", "0.05").stdout
    assert (
        "Checked on the history: applied in planned order, this cap holds back 120 of the 240 messages it blames,"
        " and 0 others." in table
    )

    # Applied for real: the cap stops a sale 2 days after the last newsletter, and lets the next newsletter,
    # exactly 7 days after it, through.
    campaign = (
        'name: Weekly\nchannel: email\nsender: {from: "S <s@shop.example.com>"}\n'
        'unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"\n'
        "variants:\n  - {id: a, subject: S, text: T}\n"
    )
    write(
        root,
        {
            "dmops.yaml": WS + "caps:\n  - {max: 1, per: 7d}\n",
            "campaigns/newsletter.yaml": "id: newsletter\nsend_at: '2026-11-29 00:00'\n" + campaign,
            "campaigns/flash.yaml": "id: flash\nsend_at: '2026-11-24 00:00'\n" + campaign,
        },
    )
    for name, reason in (("newsletter", None), ("flash", "frequency_cap")):
        planned = cli("-w", root, "plan", name, "--at", "2026-11-20T00:00", "--format", "json")
        assert planned.exit_code == 0, planned.output
        summary = json.loads(planned.stdout)
        if reason is None:
            assert summary["to_send"] == 40
        else:
            assert summary["excluded"][reason] == 40
