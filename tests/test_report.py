"""Events in, numbers out: import rules, KPI formulas on hand-computed event sets, statistics, goals."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from scipy import stats as scipy_stats

from dmops.ledger import Entry, ledger_path, record
from dmops.report.stats import sample_ratio_mismatch, two_proportions, welch
from dmops.tabular import csv_safe
from dmops.workspace import load_workspace
from tests.planning import write

WS = "version: 1\ntimezone: Asia/Shanghai\ncontacts: contacts.csv\nconsent: {email: email_opt_in}\n"
CONTACTS = "contact_id,email,email_opt_in\n" + "".join(f"c{i},u{i}@example.com,yes\n" for i in range(1, 9))
CAMPAIGN = """\
id: promo
name: Promo
channel: email
sender: {from: "Shop <news@shop.example.com>"}
unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"
variants:
  - {id: a, weight: 1, subject: S, text: T}
  - {id: b, weight: 1, subject: S, text: T}
holdout: 0.2
conversion: {window: 2d}
goals: {open_rate: 0.5, bounce_rate: 0.2, click_rate: 0.9, conversion_rate: 0.1}
"""
T = datetime(2026, 12, 1, 2, 0, 0)  # every planned send time, UTC


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": CONTACTS, "campaigns/promo.yaml": CAMPAIGN})
    entries = [Entry("promo", "once", f"c{i}", "message", "email", "marketing", "a", T, f"m{i}") for i in (1, 2, 3, 4)]
    entries += [Entry("promo", "once", f"c{i}", "message", "email", "marketing", "b", T, f"m{i}") for i in (5, 6)]
    entries += [Entry("promo", "once", f"c{i}", "holdout", "email", "marketing", None, T) for i in (7, 8)]
    record(load_workspace(root), entries)
    return root


EVENTS = """\
event,ts,message_id,contact_id,revenue,bounce_type,event_id
open,2026-12-01T03:00:00Z,m1,,,,
open,2026-12-01T04:00:00Z,m1,,,,
click,2026-12-01T04:05:00Z,m1,,,,
bounce,2026-12-01T02:01:00Z,m2,,,,
bounce,2026-12-01T02:01:00Z,m3,,,soft,
open,2026-12-01T05:00:00Z,m3,,,,
unsubscribe,2026-12-01T06:00:00Z,m4,,,,
conversion,2026-12-03T02:00:00Z,,c1,100,,
conversion,2026-12-03T02:00:01Z,,c2,50,,
conversion,2026-12-01T02:00:00Z,,c5,70,,
conversion,2026-12-01T12:00:00Z,,c6,30,,
conversion,2026-12-02T12:00:00Z,,c6,20,,
conversion,2026-12-02 10:00:00,,c7,40,,
"""


def report(cli, root: Path, *extra: str) -> dict:
    result = cli("-w", root, "report", "promo", "--format", "json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["campaigns"][0]


def test_kpis_on_a_hand_computed_event_set(cli, root: Path) -> None:
    write(root, {"events.csv": EVENTS})
    imported = cli("-w", root, "events", "import", root / "events.csv")
    assert imported.exit_code == 0, imported.output
    assert "13 rows, 13 imported" in imported.output
    rows = {r["variant"]: r for r in report(cli, root)["rows"]}
    a, b, held = rows["a"], rows["b"], rows["holdout"]
    # a: m1 opened twice (one unique open) and clicked; m2 bounced; m3 bounced but opened: delivered; m4 unsubscribed
    assert (a["recipients"], a["sent"], a["bounced"], a["delivered"]) == (4, 4, 1, 3)
    assert a["open_rate"] == pytest.approx(2 / 3) and a["click_rate"] == pytest.approx(1 / 3)
    assert a["ctor"] == pytest.approx(1 / 2) and a["bounce_rate"] == pytest.approx(1 / 4)
    assert a["unsubscribe_rate"] == pytest.approx(1 / 3) and a["complaint_rate"] == 0
    # c1 converts exactly at t + 2d (in the window); c2 one second later (out)
    assert (a["conversions"], a["revenue"], a["conversion_rate"]) == (1, 100.0, 0.25)
    assert a["revenue_per_recipient"] == 25.0
    # b: c5 at exactly t (not after t: out); c6 twice in the window: one conversion, both revenues
    assert (b["conversions"], b["revenue"]) == (1, 50.0)
    assert b["open_rate"] == 0 and b["ctor"] is None  # no opens: ctor's denominator is 0
    # the holdout converts from its own planned time; the naive ts is Shanghai time (02:00Z)
    assert (held["recipients"], held["conversions"], held["revenue"]) == (2, 1, 40.0)
    assert held["open_rate"] is None and held["sent"] is None


def test_events_split_over_imports_fold_into_the_same_counts_and_an_old_ledger_reads_the_same(cli, root: Path) -> None:
    import duckdb

    lines = EVENTS.splitlines()
    write(root, {"one.csv": "\n".join(lines[:4]) + "\n", "two.csv": "\n".join([lines[0], *lines[4:]]) + "\n"})
    for name in ("one.csv", "two.csv"):
        assert cli("-w", root, "events", "import", root / name).exit_code == 0
    whole = report(cli, root)
    ledger_file = root / ".dmops" / "ledger.duckdb"
    with duckdb.connect(str(ledger_file), read_only=True) as con:
        folded = con.execute("SELECT * FROM message_events ORDER BY message_id").fetchall()
    assert folded == [
        ("m1", "promo", False, True, True, False, False),
        ("m2", "promo", True, False, False, False, False),
        ("m3", "promo", True, True, False, False, False),
        ("m4", "promo", False, False, False, True, False),
    ]
    rows = {r["variant"]: r for r in whole["rows"]}
    assert (rows["a"]["bounced"], rows["a"]["delivered"], rows["a"]["open_rate"]) == (1, 3, pytest.approx(2 / 3))
    # a ledger written before message_events existed (schema version 2): read as it is, then upgraded
    with duckdb.connect(str(ledger_file)) as con:
        con.execute("DROP TABLE message_events")
        con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    assert report(cli, root) == whole
    write(root, {"none.csv": lines[0] + "\n"})
    assert cli("-w", root, "events", "import", root / "none.csv").exit_code == 0  # opens it for writing
    with duckdb.connect(str(ledger_file), read_only=True) as con:
        assert con.execute("SELECT * FROM message_events ORDER BY message_id").fetchall() == folded
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [("4",)]
    assert report(cli, root) == whole


def test_goals_lift_and_definitions(cli, root: Path) -> None:
    write(root, {"events.csv": EVENTS})
    cli("-w", root, "events", "import", root / "events.csv")
    data = report(cli, root)
    goals = {g["metric"]: g for g in data["goals"]}
    assert goals["open_rate"]["actual"] == pytest.approx(2 / 5) and goals["open_rate"]["met"] is False
    assert goals["bounce_rate"]["actual"] == pytest.approx(1 / 6) and goals["bounce_rate"]["met"] is True  # a maximum
    assert goals["conversion_rate"]["actual"] == pytest.approx(2 / 6) and goals["conversion_rate"]["met"] is True
    assert data["definitions"]["open_rate"] == "unique opened messages / delivered"
    lift = data["rows"][0]["lift"]["conversion_rate"]
    assert lift["abs"] == pytest.approx(0.25 - 0.5) and lift["rel"] == pytest.approx(-0.5)
    assert cli("-w", root, "report", "promo", "--check-goals").exit_code == 1


def test_goal_with_no_data_is_null_not_failed(cli, root: Path) -> None:
    data = report(cli, root)
    assert {g["metric"]: g["met"] for g in data["goals"]}["open_rate"] is None
    assert cli("-w", root, "report", "promo", "--check-goals").exit_code == 0


def test_import_is_idempotent_and_dedupes_overlaps(cli, root: Path) -> None:
    write(
        root, {"one.csv": EVENTS, "two.csv": EVENTS.splitlines()[0] + "\n" + "\n".join(EVENTS.splitlines()[5:]) + "\n"}
    )
    assert "13 imported" in cli("-w", root, "events", "import", root / "one.csv").output
    assert "0 imported" in cli("-w", root, "events", "import", root / "one.csv").output
    assert "0 imported" in cli("-w", root, "events", "import", root / "two.csv").output


def test_event_id_dedupes_rows_that_differ(cli, root: Path) -> None:
    header = "event,ts,message_id,event_id\n"
    write(
        root,
        {
            "a.csv": header + "open,2026-12-01T03:00:00Z,m1,e-1\n",
            "b.csv": header + "open,2026-12-01T03:00:05Z,m1,e-1\nopen,2026-12-01T03:00:05Z,m5,e-2\n",
        },
    )
    cli("-w", root, "events", "import", root / "a.csv")
    assert "1 imported, 1 already there" in cli("-w", root, "events", "import", root / "b.csv").output


def test_rows_that_store_the_same_values_are_one_event(cli, root: Path) -> None:
    header = "event,ts,message_id,contact_id,revenue,bounce_type\n"
    write(
        root,
        {
            "a.csv": header + "conversion,2026-12-03T02:00:00Z,,c1,10,\nbounce,2026-12-01T02:01:00Z,m2,,,\n",
            # the same instant in Shanghai, 10.0 for 10, a bounce's default type written out
            "b.csv": header + "conversion,2026-12-03 10:00:00,,c1,10.0,\nbounce,2026-12-01T10:01:00+08:00,m2,,,hard\n",
        },
    )
    assert "2 imported" in cli("-w", root, "events", "import", root / "a.csv").stdout
    assert "0 imported, 2 already there" in cli("-w", root, "events", "import", root / "b.csv").stdout
    # a soft bounce at the same moment stores another value: another event
    write(root, {"c.csv": header + "bounce,2026-12-01T02:01:00Z,m2,,,soft\n"})
    assert "1 imported, 0 already there" in cli("-w", root, "events", "import", root / "c.csv").stdout


def test_a_ledger_with_text_event_keys_is_upgraded_and_still_deduplicates(cli, root: Path) -> None:
    """Schema 3 kept keys as text (``id:`` and the event_id, or ``row:`` and a SHA-256 of the row's text);
    schema 4 keeps 128-bit numbers. An id key keeps its meaning; a row key is computed from the stored values."""
    header = "event,ts,message_id,event_id\n"
    write(root, {"ev.csv": header + "open,2026-12-01T03:00:00Z,m1,e-1\nclick,2026-12-01T03:01:00Z,m1,\n"})
    assert "2 imported" in cli("-w", root, "events", "import", root / "ev.csv").stdout
    ledger_file = root / ".dmops" / "ledger.duckdb"
    with duckdb.connect(str(ledger_file)) as con:
        keys = con.execute("SELECT event, event_key FROM events ORDER BY event").fetchall()
        # what schema 3 stored: the event_id's key as text, the other a hash of its text
        con.execute(
            "ALTER TABLE events ALTER event_key SET DATA TYPE VARCHAR USING"
            " CASE WHEN event = 'open' THEN 'id:e-1' ELSE 'row:' || sha256('a row of text') END"
        )
        con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    again = cli("-w", root, "events", "import", root / "ev.csv")  # opens it for writing: upgraded first
    assert "0 imported, 2 already there" in again.stdout
    with duckdb.connect(str(ledger_file), read_only=True) as con:
        assert con.execute("SELECT event, event_key FROM events ORDER BY event").fetchall() == keys
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [("4",)]


def test_bad_rows_are_listed_and_nothing_is_imported(cli, root: Path) -> None:
    bad = (
        "event,ts,message_id,contact_id,revenue\n"
        "open,2026-12-01T03:00:00Z,m1,,\n"
        "opened,2026-12-01T03:00:00Z,m1,,\n"
        "click,yesterday,m1,,\n"
        "click,2026-12-01T03:00:00Z,m999,,\n"
        "conversion,2026-12-01T03:00:00Z,,c1,-5\n"
        "open,2026-12-01T03:00:00Z,,c1,\n"
    )
    write(root, {"bad.csv": bad})
    result = cli("-w", root, "events", "import", root / "bad.csv")
    assert result.exit_code == 65
    for line, text in (
        (3, "unknown event"),
        (4, "ts is not"),
        (5, "not in the ledger"),
        (6, "revenue is negative"),
        (7, "needs a message_id"),
    ):
        assert f"bad.csv:{line}" in result.output and text in result.output
    assert report(cli, root)["rows"][0]["opened"] == 0


def test_unsubscribes_complaints_and_hard_bounces_suppress_the_next_plan(cli, root: Path) -> None:
    write(
        root,
        {"events.csv": EVENTS + "complaint,2026-12-01T06:00:00Z,m5,,,,\nunsubscribe,2026-12-01T06:00:00Z,,c8,,,\n"},
    )
    result = cli("-w", root, "events", "import", root / "events.csv")
    assert "4 suppressions added" in result.output  # m2 hard bounce, m4 unsubscribe, m5 complaint, c8 unsubscribe
    write(
        root, {"campaigns/next.yaml": CAMPAIGN.replace("id: promo", "id: next").replace("holdout: 0.2", "holdout: 0")}
    )
    plan = cli("-w", root, "plan", "next", "--at", "2026-12-05T10:00", "--out", root / "next.csv")
    assert plan.exit_code == 0, plan.output
    reasons = {line.split(",")[0]: line.split(",")[2] for line in (root / "next.csv").read_text().splitlines()[1:]}
    assert {cid for cid, reason in reasons.items() if reason == "suppressed"} == {"c2", "c4", "c5", "c8"}


def test_an_email_unsubscribe_suppresses_email_only(cli, tmp_path: Path) -> None:
    # SPEC §8: an unsubscribe suppresses the message's channel; one with only a contact id, every channel.
    ws = WS.replace(
        "consent: {email: email_opt_in}", "consent: {email: email_opt_in, sms: sms_opt_in}\nphone_region: CN"
    )
    contacts = "contact_id,email,phone,email_opt_in,sms_opt_in\n" + "".join(
        f"c{i},u{i}@example.com,+861380000000{i},yes,yes\n" for i in (1, 2, 3)
    )
    sms = "id: sms\nname: S\nchannel: sms\nvariants:\n  - {id: a, text: T}\n"
    email = CAMPAIGN.replace("id: promo", "id: mail").replace("holdout: 0.2", "holdout: 0")
    root = write(
        tmp_path / "ws",
        {"dmops.yaml": ws, "contacts.csv": contacts, "campaigns/sms.yaml": sms, "campaigns/mail.yaml": email},
    )
    record(load_workspace(root), [Entry("promo", "once", "c1", "message", "email", "marketing", "a", T, "m1")])
    events = (
        "event,ts,message_id,contact_id\nunsubscribe,2026-12-01T06:00:00Z,m1,\nunsubscribe,2026-12-01T06:00:00Z,,c2\n"
    )
    write(root, {"events.csv": events})
    assert cli("-w", root, "events", "import", root / "events.csv").exit_code == 0

    with duckdb.connect(str(ledger_path(load_workspace(root))), read_only=True) as con:
        stored = con.execute("SELECT contact_id, channel, reason FROM suppressions ORDER BY contact_id").fetchall()
    assert stored == [("c1", "email", "unsubscribe"), ("c2", None, "unsubscribe")]

    def reasons(campaign: str) -> dict[str, str]:
        out = root / f"{campaign}.csv"
        result = cli("-w", root, "plan", campaign, "--at", "2026-12-05T10:00", "--out", out)
        assert result.exit_code == 0, result.output
        return {line.split(",")[0]: line.split(",")[2] for line in out.read_text().splitlines()[1:]}

    assert reasons("sms") == {"c1": "", "c2": "suppressed", "c3": ""}
    assert reasons("mail") == {"c1": "suppressed", "c2": "suppressed", "c3": ""}


def test_csv_output_escapes_formula_injection() -> None:
    assert [csv_safe(v) for v in ("=SUM(A1)", "+1", "-2", "@x", "\tx", "\rx", "ok", 3)] == [
        "'=SUM(A1)",
        "'+1",
        "'-2",
        "'@x",
        "'\tx",
        "'\rx",
        "ok",
        3,
    ]


def test_report_formats(cli, root: Path, tmp_path: Path) -> None:
    write(root, {"events.csv": EVENTS})
    cli("-w", root, "events", "import", root / "events.csv")
    csv_text = cli("-w", root, "report", "promo", "--format", "csv").stdout
    assert csv_text.splitlines()[0].startswith("campaign,variant,recipients")
    assert len(csv_text.splitlines()) == 4
    assert "| a | 4 | 3 | 66.7% |" in cli("-w", root, "report", "promo", "--format", "md").stdout
    table = cli("-w", root, "report", "promo").stdout
    assert "conv. lift vs holdout [95% CI]" in table and "goal open_rate: 40.0% vs 50.0% — missed" in table
    assert "open_rate: unique opened messages / delivered" in table
    out = tmp_path / "report.html"
    assert cli("-w", root, "report", "promo", "--format", "html", "--out", out).exit_code == 0
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "http://" not in page.replace("https://", "")
    assert "unique opened messages / delivered" in page
    # an email campaign's page shows its open rate, in the summary and as a funnel step
    assert "<span>open rate</span>" in page and "<td>opened</td>" in page


def test_an_sms_campaigns_page_shows_no_opens(cli, root: Path, tmp_path: Path) -> None:
    sms = (
        CAMPAIGN.replace("channel: email", "channel: sms")
        .replace('sender: {from: "Shop <news@shop.example.com>"}\n', "")
        .replace("subject: S, ", "")
        .replace("open_rate: 0.5, ", "")
    )
    write(root, {"campaigns/promo.yaml": sms})
    out = tmp_path / "sms.html"
    result = cli("-w", root, "report", "promo", "--format", "html", "--out", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "<span>click rate</span>" in page and "<td>clicked</td>" in page
    assert "<span>open rate</span>" not in page and "<td>opened</td>" not in page  # an SMS has no open tracking


def test_retention_cohorts(cli, root: Path) -> None:
    header = "event,ts,contact_id\n"
    rows = [
        ("c1", "2026-01-10"),
        ("c1", "2026-02-03"),
        ("c2", "2026-01-20"),
        ("c2", "2026-03-01"),
        ("c3", "2026-02-14"),
        ("c3", "2026-02-20"),
    ]
    write(root, {"orders.csv": header + "".join(f"conversion,{d}T12:00:00,{c}\n" for c, d in rows)})
    assert cli("-w", root, "events", "import", root / "orders.csv").exit_code == 0
    result = cli("-w", root, "report", "retention", "--format", "json")
    assert json.loads(result.stdout) == {
        "period": "month",
        "event": "conversion",
        "cohorts": [
            {"cohort": "2026-01", "size": 2, "retention": [1.0, 0.5, 0.5]},
            {"cohort": "2026-02", "size": 1, "retention": [1.0, 0.0]},
        ],
    }


# --- statistics against independent computations -------------------------------------------------------------


def test_two_proportion_test_matches_the_textbook() -> None:
    result = two_proportions(45, 100, 30, 100)
    assert result is not None
    pooled = 75 / 200
    z = 0.15 / math.sqrt(pooled * (1 - pooled) * (2 / 100))
    assert result["abs"] == pytest.approx(0.15) and result["rel"] == pytest.approx(0.5)
    assert result["p_value"] == pytest.approx(math.erfc(z / math.sqrt(2)))  # 2 * (1 - Phi(z)) = 0.02846
    assert result["p_value"] == pytest.approx(0.02846, abs=1e-5)
    from scipy.stats import binomtest

    w1 = binomtest(45, 100).proportion_ci(method="wilson")  # Newcombe's method 10 from scipy's Wilson intervals
    w0 = binomtest(30, 100).proportion_ci(method="wilson")
    assert (result["ci_low"], result["ci_high"]) == (
        pytest.approx(0.15 - math.hypot(0.45 - w1.low, w0.high - 0.30)),
        pytest.approx(0.15 + math.hypot(w1.high - 0.45, 0.30 - w0.low)),
    )
    assert two_proportions(1, 1, 0, 10) is None and two_proportions(1, 10, 0, 10)["rel"] is None  # type: ignore[index]


def test_welch_matches_scipy_on_raw_data() -> None:
    a = [0, 0, 0, 120.5, 0, 80, 0, 0, 35, 0, 0, 0]
    b = [0, 0, 60, 0, 0, 0, 0, 0]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    sd = lambda xs: math.sqrt(sum((x - mean(xs)) ** 2 for x in xs) / (len(xs) - 1))  # noqa: E731
    result = welch(mean(a), sd(a), len(a), mean(b), sd(b), len(b))
    assert result is not None
    assert result["p_value"] == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)
    v1, v0 = sd(a) ** 2 / len(a), sd(b) ** 2 / len(b)
    df = (v1 + v0) ** 2 / (v1**2 / (len(a) - 1) + v0**2 / (len(b) - 1))
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(v1 + v0)
    assert result["ci_low"] == pytest.approx(mean(a) - mean(b) - half)


def test_sample_ratio_mismatch() -> None:
    assert sample_ratio_mismatch([5000, 5000], [1, 1])["mismatch"] is False
    flagged = sample_ratio_mismatch([5000, 5400], [1, 1])
    assert flagged["mismatch"] is True and flagged["p_value"] < 0.001
    assert flagged["chi2"] == pytest.approx((200**2 / 5200) * 2)


def test_period_view_sums_campaigns_per_month_and_quarter(cli, root: Path) -> None:
    write(root, {"campaigns/later.yaml": CAMPAIGN.replace("id: promo", "id: later"), "events.csv": EVENTS})
    january = datetime(2027, 1, 5, 2, 0, 0)
    record(
        load_workspace(root),
        [Entry("later", "once", f"c{i}", "message", "email", "marketing", "a", january, f"n{i}") for i in (1, 2, 3)],
    )
    assert cli("-w", root, "events", "import", root / "events.csv").exit_code == 0
    result = cli("-w", root, "report", "--period", "month", "--format", "json")
    assert result.exit_code == 0, result.output
    periods = {p["period"]: p for p in json.loads(result.stdout)["periods"]}
    assert set(periods) == {"2026-12", "2027-01"}
    december, january_row = periods["2026-12"], periods["2027-01"]
    assert (december["sent"], december["delivered"], december["conversions"]) == (6, 5, 2)  # holdouts left out
    assert december["open_rate"] == pytest.approx(2 / 5)
    assert (january_row["sent"], january_row["campaigns"]) == (3, ["later"])
    quarters = json.loads(cli("-w", root, "report", "--period", "quarter", "--format", "json").stdout)["periods"]
    assert [q["period"] for q in quarters] == ["2026-Q4", "2027-Q1"]
    assert cli("-w", root, "report", "--period", "week").exit_code == 2


def test_jsonl_and_parquet_import_like_csv(cli, root: Path) -> None:
    import duckdb

    lines = [
        {"event": "open", "ts": "2026-12-01T03:00:00Z", "message_id": "m1", "event_id": "j1"},
        {
            "event": "conversion",
            "ts": "2026-12-02T03:00:00+08:00",
            "contact_id": "c1",
            "revenue": 12.5,
            "event_id": "j2",
        },
    ]
    write(root, {"events.jsonl": "".join(json.dumps(line) + "\n" for line in lines)})
    result = cli("-w", root, "events", "import", root / "events.jsonl")
    assert "2 rows, 2 imported" in result.output, result.output
    duckdb.connect().execute(
        "COPY (SELECT 'click' AS event, TIMESTAMP '2026-12-01 12:00:00' AS ts, 'm1' AS message_id) "
        f"TO '{root / 'events.parquet'}' (FORMAT parquet)"
    )
    assert "1 rows, 1 imported" in cli("-w", root, "events", "import", root / "events.parquet").output
    row = {r["variant"]: r for r in report(cli, root)["rows"]}["a"]
    assert (row["opened"], row["clicked"], row["conversions"], row["revenue"]) == (1, 1, 1, 12.5)
    write(root, {"broken.jsonl": '{"event": "open", "ts": \n'})
    assert cli("-w", root, "events", "import", root / "broken.jsonl").exit_code == 65


def test_sms_has_no_open_rate(cli, root: Path) -> None:
    sms = "id: sms\nname: SMS\nchannel: sms\nvariants:\n  - {id: a, text: Hi}\ngoals: {open_rate: 0.2}\n"
    write(root, {"campaigns/sms.yaml": sms, "events.csv": "event,ts,message_id\nclick,2026-12-01T03:00:00Z,s1\n"})
    record(
        load_workspace(root),
        [
            Entry("sms", "once", "c1", "message", "sms", "marketing", "a", T, "s1"),
            Entry("sms", "once", "c2", "message", "sms", "marketing", "a", T, "s2"),
        ],
    )
    assert cli("-w", root, "events", "import", root / "events.csv").exit_code == 0
    data = json.loads(cli("-w", root, "report", "sms", "--format", "json").stdout)["campaigns"][0]
    row = data["rows"][0]
    assert row["open_rate"] is None and row["ctor"] is None and row["click_rate"] == 0.5
    assert data["goals"] == [{"metric": "open_rate", "target": 0.2, "actual": None, "met": None}]


# --- whole outputs: every key and number of a report, pinned ---------------------------------------------------


def same(actual: object, expected: object) -> bool:
    """Equal structure and keys in order; floats equal to 1e-9 (statistics may differ in the last bits)."""
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and list(actual) == list(expected)
            and all(same(actual[k], expected[k]) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(same(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, float):
        return isinstance(actual, float) and actual == pytest.approx(expected, rel=1e-9, abs=1e-12)
    return type(actual) is type(expected) and actual == expected


# Checked by hand: a = c1-c4 (m2 hard bounce, m3 soft bounce then opened, m4 unsubscribed), b = c5, c6,
# holdout = c7, c8; conversions in (t, t + 2d]; lift vs the holdout; sample ratio over 0.2/0.4/0.4 of 8.
CAMPAIGN_REPORT = {
    "campaign": "promo",
    "name": "Promo",
    "definitions": {
        "recipients": "messages sent (variant) / contacts held out (holdout)",
        "sent": "messages written to the outbox",
        "bounced": "unique messages with a bounce and no open or click",
        "delivered": "sent - bounced (delivered events are informational)",
        "open_rate": "unique opened messages / delivered",
        "click_rate": "unique clicked messages / delivered",
        "ctor": "unique clicked messages / unique opened messages",
        "unsubscribe_rate": "unique messages with an unsubscribe / delivered",
        "complaint_rate": "unique messages with a complaint / delivered",
        "bounce_rate": "bounced / sent",
        "conversions": "recipients with >= 1 conversion in (t, t + window], t = their planned send time",
        "conversion_rate": "conversions / recipients",
        "revenue": "sum of the revenue of those conversions",
        "revenue_per_recipient": "revenue / recipients",
    },
    "rows": [
        {
            "variant": "a",
            "recipients": 4,
            "sent": 4,
            "bounced": 1,
            "delivered": 3,
            "opened": 2,
            "clicked": 1,
            "open_rate": 0.6666666666666666,
            "click_rate": 0.3333333333333333,
            "ctor": 0.5,
            "unsubscribe_rate": 0.3333333333333333,
            "complaint_rate": 0.0,
            "bounce_rate": 0.25,
            "conversions": 1,
            "conversion_rate": 0.25,
            "conversion_rate_ci": [0.04558726080970055, 0.6993581574175981],
            "revenue": 100.0,
            "revenue_per_recipient": 25.0,
            "lift": {
                "conversion_rate": {
                    "abs": -0.25,
                    "rel": -0.5,
                    "ci_low": -0.7040809521072406,
                    "ci_high": 0.35525011091372427,
                    "p_value": 0.5402913746074199,
                    "caution": "small sample",
                },
                "revenue_per_recipient": {
                    "abs": 5.0,
                    "rel": 0.25,
                    "ci_low": -87.69051263632335,
                    "ci_high": 97.69051263632335,
                    "p_value": 0.884211373837097,
                },
            },
        },
        {
            "variant": "b",
            "recipients": 2,
            "sent": 2,
            "bounced": 0,
            "delivered": 2,
            "opened": 0,
            "clicked": 0,
            "open_rate": 0.0,
            "click_rate": 0.0,
            "ctor": None,
            "unsubscribe_rate": 0.0,
            "complaint_rate": 0.0,
            "bounce_rate": 0.0,
            "conversions": 1,
            "conversion_rate": 0.5,
            "conversion_rate_ci": [0.09453120573423074, 0.9054687942657693],
            "revenue": 50.0,
            "revenue_per_recipient": 25.0,
            "lift": {
                "conversion_rate": {
                    "abs": 0.0,
                    "rel": 0.0,
                    "ci_low": -0.5734194679697172,
                    "ci_high": 0.5734194679697172,
                    "p_value": 1.0,
                    "caution": "small sample",
                },
                "revenue_per_recipient": {
                    "abs": 5.0,
                    "rel": 0.25,
                    "ci_low": -139.31258816009893,
                    "ci_high": 149.31258816009893,
                    "p_value": 0.8908437783135867,
                },
            },
        },
        {
            "variant": "holdout",
            "recipients": 2,
            "sent": None,
            "bounced": None,
            "delivered": None,
            "opened": None,
            "clicked": None,
            "open_rate": None,
            "click_rate": None,
            "ctor": None,
            "unsubscribe_rate": None,
            "complaint_rate": None,
            "bounce_rate": None,
            "conversions": 1,
            "conversion_rate": 0.5,
            "conversion_rate_ci": [0.09453120573423074, 0.9054687942657693],
            "revenue": 40.0,
            "revenue_per_recipient": 20.0,
        },
    ],
    "goals": [
        {"metric": "open_rate", "target": 0.5, "actual": 0.4, "met": False},
        {"metric": "bounce_rate", "target": 0.2, "actual": 0.16666666666666666, "met": True},
        {"metric": "click_rate", "target": 0.9, "actual": 0.2, "met": False},
        {"metric": "conversion_rate", "target": 0.1, "actual": 0.3333333333333333, "met": True},
    ],
    "ab": {
        "pairs": [
            {
                "a": "a",
                "b": "b",
                "conversion_rate": {
                    "abs": 0.25,
                    "rel": 1.0,
                    "ci_low": -0.35525011091372427,
                    "ci_high": 0.7040809521072406,
                    "p_value": 0.5402913746074199,
                    "caution": "small sample",
                },
            }
        ],
        "sample_ratio": {"chi2": 0.75, "p_value": 0.6872892787909721, "mismatch": False},
    },
    "decisions": {},
}


def test_the_whole_campaign_report(cli, root: Path) -> None:
    write(root, {"events.csv": EVENTS})
    assert cli("-w", root, "events", "import", root / "events.csv").exit_code == 0
    assert same(report(cli, root), CAMPAIGN_REPORT)


def test_the_whole_csv_report(cli, root: Path) -> None:
    write(root, {"events.csv": EVENTS})
    assert cli("-w", root, "events", "import", root / "events.csv").exit_code == 0
    lines = cli("-w", root, "report", "promo", "--format", "csv").stdout.splitlines()
    columns = lines[0].split(",")
    assert columns == [
        "campaign",
        "variant",
        *[k for k in CAMPAIGN_REPORT["definitions"] if k != "sent"],
        "sent",
        "conversion_rate_ci_low",
        "conversion_rate_ci_high",
        "lift_conversion_abs",
        "lift_conversion_ci_low",
        "lift_conversion_ci_high",
        "lift_conversion_p_value",
        "lift_conversion_caution",
        "lift_revenue_abs",
        "lift_revenue_p_value",
    ]
    for line, row in zip(lines[1:], CAMPAIGN_REPORT["rows"], strict=True):
        cells = dict(zip(columns, line.split(","), strict=True))
        lift = row.get("lift") or {"conversion_rate": {}, "revenue_per_recipient": {}}
        interval = row["conversion_rate_ci"] or [None, None]
        expected = {
            **row,
            "campaign": "promo",
            "conversion_rate_ci_low": interval[0],
            "conversion_rate_ci_high": interval[1],
            "lift_conversion_abs": lift["conversion_rate"].get("abs"),
            "lift_conversion_ci_low": lift["conversion_rate"].get("ci_low"),
            "lift_conversion_ci_high": lift["conversion_rate"].get("ci_high"),
            "lift_conversion_caution": lift["conversion_rate"].get("caution"),
            "lift_conversion_p_value": lift["conversion_rate"].get("p_value"),
            "lift_revenue_abs": lift["revenue_per_recipient"].get("abs"),
            "lift_revenue_p_value": lift["revenue_per_recipient"].get("p_value"),
        }
        for column, cell in cells.items():
            value = expected[column]
            if value is None:
                assert cell == "", column
            elif isinstance(value, float):
                assert float(cell) == pytest.approx(value, rel=1e-9, abs=1e-12), column
            else:
                assert cell == str(value), column


PERIOD_REPORT = {
    "period": "month",
    "periods": [
        {
            "period": "2026-12",
            "campaigns": ["promo"],
            "recipients": 6,
            "sent": 6,
            "bounced": 1,
            "delivered": 5,
            "opened": 2,
            "clicked": 1,
            "open_rate": 0.4,
            "click_rate": 0.2,
            "ctor": 0.5,
            "unsubscribe_rate": 0.2,
            "complaint_rate": 0.0,
            "bounce_rate": 0.16666666666666666,
            "conversions": 2,
            "conversion_rate": 0.3333333333333333,
            "conversion_rate_ci": [0.09677141110578041, 0.700006684861608],
            "revenue": 150.0,
            "revenue_per_recipient": 25.0,
            "goals": [
                {"campaign": "promo", "metric": "open_rate", "target": 0.5, "actual": 0.4, "met": False},
                {
                    "campaign": "promo",
                    "metric": "bounce_rate",
                    "target": 0.2,
                    "actual": 0.16666666666666666,
                    "met": True,
                },
                {"campaign": "promo", "metric": "click_rate", "target": 0.9, "actual": 0.2, "met": False},
                {
                    "campaign": "promo",
                    "metric": "conversion_rate",
                    "target": 0.1,
                    "actual": 0.3333333333333333,
                    "met": True,
                },
            ],
            "goals_met": 2,
            "goals_missed": 2,
        },
        {
            "period": "2027-01",
            "campaigns": ["later"],
            "recipients": 3,
            "sent": 3,
            "bounced": 0,
            "delivered": 3,
            "opened": 0,
            "clicked": 0,
            "open_rate": 0.0,
            "click_rate": 0.0,
            "ctor": None,
            "unsubscribe_rate": 0.0,
            "complaint_rate": 0.0,
            "bounce_rate": 0.0,
            "conversions": 0,
            "conversion_rate": 0.0,
            "conversion_rate_ci": [0.0, 0.5614970317550454],
            "revenue": 0.0,
            "revenue_per_recipient": 0.0,
            "goals": [
                {"campaign": "later", "metric": "open_rate", "target": 0.5, "actual": 0.0, "met": False},
                {"campaign": "later", "metric": "bounce_rate", "target": 0.2, "actual": 0.0, "met": True},
                {"campaign": "later", "metric": "click_rate", "target": 0.9, "actual": 0.0, "met": False},
                {"campaign": "later", "metric": "conversion_rate", "target": 0.1, "actual": 0.0, "met": False},
            ],
            "goals_met": 1,
            "goals_missed": 3,
        },
    ],
}


def test_the_whole_period_report(cli, root: Path) -> None:
    write(root, {"campaigns/later.yaml": CAMPAIGN.replace("id: promo", "id: later"), "events.csv": EVENTS})
    january = datetime(2027, 1, 5, 2, 0, 0)
    record(
        load_workspace(root),
        [Entry("later", "once", f"c{i}", "message", "email", "marketing", "a", january, f"n{i}") for i in (1, 2, 3)],
    )
    assert cli("-w", root, "events", "import", root / "events.csv").exit_code == 0
    result = cli("-w", root, "report", "--period", "month", "--format", "json")
    assert result.exit_code == 0, result.output
    assert same(json.loads(result.stdout), PERIOD_REPORT)


BROKEN_JSON = '{"event": "open", "ts": "2026-12-01T03:00:00Z"\n'


@pytest.mark.parametrize(
    ("name", "body", "code", "stderr"),
    [
        ("missing.csv", None, 66, "error: missing.csv: events file not found"),
        ("missing.jsonl", None, 66, "error: missing.jsonl: events file not found"),
        ("missing.parquet", None, 66, "error: missing.parquet: events file not found"),
        *[
            (
                f"bad{suffix}",
                BROKEN_JSON,
                65,
                f"error: bad{suffix}: cannot read the JSON lines (InvalidInputException) "
                "(one JSON object per line, UTF-8)",
            )
            for suffix in (".jsonl", ".ndjson", ".json", ".JSONL")
        ],
        (
            "nocol.csv",
            "ts,contact_id\n",
            65,
            "error: nocol.csv:1: no event column (columns: event, ts, message_id or contact_id)",
        ),
        (
            "nots.csv",
            "event,message_id\n",
            65,
            "error: nots.csv:1: no ts column (columns: event, ts, message_id or contact_id)",
        ),
        ("noid.csv", "event,ts\n", 65, "error: noid.csv:1: neither a message_id nor a contact_id column"),
        (
            "noid.jsonl",
            '{"event": "open", "ts": "2026-12-01"}\n',
            65,
            "error: noid.jsonl:1: neither a message_id nor a contact_id column",
        ),
        (
            "nothing.csv",
            "url\n",
            65,
            "error: nothing.csv:1: no event column (columns: event, ts, message_id or contact_id)\n"
            "error: nothing.csv:1: no ts column (columns: event, ts, message_id or contact_id)\n"
            "error: nothing.csv:1: neither a message_id nor a contact_id column",
        ),
    ],
)
def test_an_events_file_that_cannot_be_read_is_named_with_its_line(
    cli, root: Path, name: str, body: str | None, code: int, stderr: str
) -> None:
    if body is not None:
        write(root, {name: body})
    result = cli("-w", root, "events", "import", root / name)
    assert (result.exit_code, result.stderr.strip()) == (code, stderr)


def test_every_kind_of_bad_event_row_is_named_by_line_and_column(cli, root: Path) -> None:
    bad = (
        "event,ts,message_id,contact_id,revenue,bounce_type\n"
        "open,2026-12-01T03:00:00Z,m1,,,\n"  # line 2: fine
        "opened,2026-12-01T03:00:00Z,m1,,,\n"
        ",2026-12-01T03:00:00Z,m1,,,\n"
        "click,yesterday,m1,,,\n"
        "click,2026-12-01T03:00:00Z,m999,,,\n"
        "conversion,2026-12-01T03:00:00Z,,c1,-5,\n"
        "conversion,2026-12-01T03:00:00Z,,c1,lots,\n"
        "open,2026-12-01T03:00:00Z,,c1,,\n"
        "unsubscribe,2026-12-01T03:00:00Z,,,,\n"
        "open,2026-12-01T03:00:00Z,m1,c2,,\n"
        "bounce,2026-12-01T03:00:00Z,m1,,,maybe\n"
    )
    write(root, {"bad.csv": bad})
    result = cli("-w", root, "events", "import", root / "bad.csv")
    events = "delivered, bounce, open, click, unsubscribe, complaint, conversion"
    assert result.exit_code == 65
    assert result.stderr.splitlines() == [
        f"error: bad.csv:3, key 'event': unknown event (use {events})",
        f"error: bad.csv:4, key 'event': unknown event (use {events})",
        "error: bad.csv:5, key 'ts': ts is not an ISO 8601 date and time",
        "error: bad.csv:6, key 'message_id': message_id is not in the ledger (was it sent by dmops?)",
        "error: bad.csv:7, key 'revenue': revenue is negative",
        "error: bad.csv:8, key 'revenue': revenue is not a number",
        "error: bad.csv:9, key 'message_id': this event needs a message_id",
        "error: bad.csv:10, key 'contact_id': the row has neither message_id nor contact_id",
        "error: bad.csv:11, key 'contact_id': contact_id does not match the message's contact",
        "error: bad.csv:12, key 'bounce_type': bounce_type must be hard or soft",
    ]
    assert report(cli, root)["rows"][0]["opened"] == 0  # nothing imported


def test_bad_event_rows_are_listed_twenty_of_a_kind_forty_in_all(cli, root: Path) -> None:
    rows = "".join("opened,2026-12-01T03:00:00Z,m1,\n" for _ in range(25))
    rows += "".join("open,someday,m1,\n" for _ in range(25))
    rows += "".join("open,2026-12-01T03:00:00Z,m999,\n" for _ in range(25))
    write(root, {"bad.csv": "event,ts,message_id,contact_id\n" + rows})
    result = cli("-w", root, "events", "import", root / "bad.csv")
    lines = result.stderr.splitlines()
    assert result.exit_code == 65 and len(lines) == 40
    assert [line.split(",")[0] for line in lines] == [f"error: bad.csv:{n}" for n in [*range(2, 22), *range(27, 47)]]


def test_the_import_time_is_recorded_in_utc_whatever_the_machine_zone(root: Path, monkeypatch) -> None:
    import time

    from dmops.events import import_events

    write(root, {"events.csv": EVENTS})
    monkeypatch.setenv("TZ", "Asia/Shanghai")  # eight hours from UTC: a local clock would be caught
    time.tzset()
    try:
        before = datetime.now(UTC).replace(tzinfo=None)
        import_events(load_workspace(root), root / "events.csv")
        after = datetime.now(UTC).replace(tzinfo=None)
    finally:
        monkeypatch.undo()
        time.tzset()
    with duckdb.connect(str(ledger_path(load_workspace(root))), read_only=True) as con:
        stamps = {row[0] for row in con.execute("SELECT imported_at FROM events").fetchall()}
    assert len(stamps) == 1 and before <= stamps.pop() <= after


PLAIN = """\
id: plain
name: Plain
channel: email
sender: {from: "Shop <news@shop.example.com>"}
unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"
variants:
  - {id: a, subject: S, text: T}
  - {id: b, subject: S, text: T}
  - {id: c, subject: S, text: T}
"""
WITH_CELLS = PLAIN.replace("id: plain", "id: cells").replace(", subject", ", where: 'true', subject")

# No holdout, no weights (equal shares), a variant nobody got: sample ratio over [3, 1, 0] with 4/3
# expected each is 3.5 (p = e^-1.75); b has one recipient, too few to compare. Cells have no planned ratio.
REPORT_WITHOUT_HOLDOUT = {
    "campaign": "plain",
    "name": "Plain",
    "rows": [
        {
            "variant": "a",
            "recipients": 3,
            "sent": 3,
            "bounced": 0,
            "delivered": 3,
            "opened": 0,
            "clicked": 0,
            "open_rate": 0.0,
            "click_rate": 0.0,
            "ctor": None,
            "unsubscribe_rate": 0.0,
            "complaint_rate": 0.0,
            "bounce_rate": 0.0,
            "conversions": 0,
            "conversion_rate": 0.0,
            "conversion_rate_ci": [0.0, 0.5614970317550454],
            "revenue": 0.0,
            "revenue_per_recipient": 0.0,
            "lift": {"conversion_rate": None, "revenue_per_recipient": None},
        },
        {
            "variant": "b",
            "recipients": 1,
            "sent": 1,
            "bounced": 0,
            "delivered": 1,
            "opened": 0,
            "clicked": 0,
            "open_rate": 0.0,
            "click_rate": 0.0,
            "ctor": None,
            "unsubscribe_rate": 0.0,
            "complaint_rate": 0.0,
            "bounce_rate": 0.0,
            "conversions": 0,
            "conversion_rate": 0.0,
            "conversion_rate_ci": [0.0, 0.7934506856227626],
            "revenue": 0.0,
            "revenue_per_recipient": 0.0,
            "lift": {"conversion_rate": None, "revenue_per_recipient": None},
        },
        {
            "variant": "c",
            "recipients": 0,
            "sent": 0,
            "bounced": 0,
            "delivered": 0,
            "opened": 0,
            "clicked": 0,
            "open_rate": None,
            "click_rate": None,
            "ctor": None,
            "unsubscribe_rate": None,
            "complaint_rate": None,
            "bounce_rate": None,
            "conversions": 0,
            "conversion_rate": None,
            "conversion_rate_ci": None,
            "revenue": 0.0,
            "revenue_per_recipient": None,
            "lift": {"conversion_rate": None, "revenue_per_recipient": None},
        },
        {
            "variant": "holdout",
            "recipients": 0,
            "sent": None,
            "bounced": None,
            "delivered": None,
            "opened": None,
            "clicked": None,
            "open_rate": None,
            "click_rate": None,
            "ctor": None,
            "unsubscribe_rate": None,
            "complaint_rate": None,
            "bounce_rate": None,
            "conversions": 0,
            "conversion_rate": None,
            "conversion_rate_ci": None,
            "revenue": 0.0,
            "revenue_per_recipient": None,
        },
    ],
    "goals": [],
    "ab": {
        "pairs": [
            {"a": "a", "b": "b", "conversion_rate": None},
            {"a": "a", "b": "c", "conversion_rate": None},
            {"a": "b", "b": "c", "conversion_rate": None},
        ],
        "sample_ratio": {"chi2": 3.500000000000001, "p_value": 0.17377394345044508, "mismatch": False},
    },
}
REPORT_WITH_CELLS = {
    "campaign": "cells",
    "name": "Plain",
    "rows": [
        {
            "variant": "a",
            "recipients": 2,
            "sent": 2,
            "bounced": 0,
            "delivered": 2,
            "opened": 0,
            "clicked": 0,
            "open_rate": 0.0,
            "click_rate": 0.0,
            "ctor": None,
            "unsubscribe_rate": 0.0,
            "complaint_rate": 0.0,
            "bounce_rate": 0.0,
            "conversions": 0,
            "conversion_rate": 0.0,
            "conversion_rate_ci": [0.0, 0.6576197724933469],
            "revenue": 0.0,
            "revenue_per_recipient": 0.0,
            "lift": {"conversion_rate": None, "revenue_per_recipient": None},
        },
        {
            "variant": "b",
            "recipients": 2,
            "sent": 2,
            "bounced": 0,
            "delivered": 2,
            "opened": 0,
            "clicked": 0,
            "open_rate": 0.0,
            "click_rate": 0.0,
            "ctor": None,
            "unsubscribe_rate": 0.0,
            "complaint_rate": 0.0,
            "bounce_rate": 0.0,
            "conversions": 0,
            "conversion_rate": 0.0,
            "conversion_rate_ci": [0.0, 0.6576197724933469],
            "revenue": 0.0,
            "revenue_per_recipient": 0.0,
            "lift": {"conversion_rate": None, "revenue_per_recipient": None},
        },
        {
            "variant": "c",
            "recipients": 0,
            "sent": 0,
            "bounced": 0,
            "delivered": 0,
            "opened": 0,
            "clicked": 0,
            "open_rate": None,
            "click_rate": None,
            "ctor": None,
            "unsubscribe_rate": None,
            "complaint_rate": None,
            "bounce_rate": None,
            "conversions": 0,
            "conversion_rate": None,
            "conversion_rate_ci": None,
            "revenue": 0.0,
            "revenue_per_recipient": None,
            "lift": {"conversion_rate": None, "revenue_per_recipient": None},
        },
        {
            "variant": "holdout",
            "recipients": 0,
            "sent": None,
            "bounced": None,
            "delivered": None,
            "opened": None,
            "clicked": None,
            "open_rate": None,
            "click_rate": None,
            "ctor": None,
            "unsubscribe_rate": None,
            "complaint_rate": None,
            "bounce_rate": None,
            "conversions": 0,
            "conversion_rate": None,
            "conversion_rate_ci": None,
            "revenue": 0.0,
            "revenue_per_recipient": None,
        },
    ],
    "goals": [],
    "ab": {
        "pairs": [
            {
                "a": "a",
                "b": "b",
                "conversion_rate": {
                    "abs": 0.0,
                    "rel": None,
                    "ci_low": -0.6576197724933469,
                    "ci_high": 0.6576197724933469,
                    "p_value": None,
                    "caution": "small sample",
                },
            },
            {"a": "a", "b": "c", "conversion_rate": None},
            {"a": "b", "b": "c", "conversion_rate": None},
        ],
        "sample_ratio": {"chi2": None, "p_value": None, "mismatch": None},
    },
}


def test_the_whole_report_without_a_holdout_and_with_cells(cli, tmp_path: Path) -> None:
    root = write(
        tmp_path / "ws",
        {"dmops.yaml": WS, "contacts.csv": CONTACTS, "campaigns/plain.yaml": PLAIN, "campaigns/cells.yaml": WITH_CELLS},
    )
    entries = [Entry("plain", "once", f"c{i}", "message", "email", "marketing", "a", T, f"p{i}") for i in (1, 2, 3)]
    entries += [Entry("plain", "once", "c4", "message", "email", "marketing", "b", T, "p4")]
    entries += [Entry("cells", "once", f"c{i}", "message", "email", "marketing", "a", T, f"q{i}") for i in (1, 2)]
    entries += [Entry("cells", "once", f"c{i}", "message", "email", "marketing", "b", T, f"q{i}") for i in (3, 4)]
    record(load_workspace(root), entries)
    for campaign, expected in (("plain", REPORT_WITHOUT_HOLDOUT), ("cells", REPORT_WITH_CELLS)):
        result = cli("-w", root, "report", campaign, "--format", "json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)["campaigns"][0]
        assert data.pop("definitions") == CAMPAIGN_REPORT["definitions"]
        assert data.pop("decisions") == {}  # seeded, not sent
        assert same(data, expected), campaign


def test_a_goal_met_exactly_is_met() -> None:
    from dmops.report.kpis import _goal

    assert _goal("bounce_rate", 0.2, 0.2)["met"] is True  # a maximum: at most
    assert _goal("bounce_rate", 0.2, 0.21)["met"] is False
    assert _goal("open_rate", 0.5, 0.5)["met"] is True  # a minimum: at least
    assert _goal("open_rate", 0.5, 0.49)["met"] is False
    assert _goal("open_rate", 0.5, None) == {"metric": "open_rate", "target": 0.5, "actual": None, "met": None}


def test_revenue_is_reported_to_the_cent(cli, root: Path) -> None:
    write(root, {"orders.csv": "event,ts,contact_id,revenue\nconversion,2026-12-01T12:00:00Z,c1,33.333\n"})
    assert cli("-w", root, "events", "import", root / "orders.csv").exit_code == 0
    a = {r["variant"]: r for r in report(cli, root)["rows"]}["a"]
    assert a["revenue"] == 33.33 and a["revenue_per_recipient"] == pytest.approx(33.333 / 4)


def test_two_campaigns_in_one_month_are_summed(cli, root: Path) -> None:
    write(root, {"campaigns/also.yaml": CAMPAIGN.replace("id: promo", "id: also"), "events.csv": EVENTS})
    record(
        load_workspace(root),
        [Entry("also", "once", f"c{i}", "message", "email", "marketing", "b", T, f"x{i}") for i in (1, 2, 3)],
    )
    assert cli("-w", root, "events", "import", root / "events.csv").exit_code == 0
    result = cli("-w", root, "report", "--period", "month", "--format", "json")
    [december] = json.loads(result.stdout)["periods"]
    assert december["campaigns"] == ["also", "promo"]
    assert (december["recipients"], december["sent"], december["delivered"]) == (9, 9, 8)
    assert [(g["campaign"], g["metric"]) for g in december["goals"]][:2] == [
        ("also", "open_rate"),
        ("also", "bounce_rate"),
    ]
    assert (december["goals_met"], december["goals_missed"]) == (4, 4)  # each: bounce and conversion met


def test_weekly_retention_labels_iso_weeks(cli, root: Path) -> None:
    header = "event,ts,contact_id\n"
    rows = [("c1", "2026-12-28"), ("c1", "2027-01-05"), ("c2", "2027-01-04")]  # ISO weeks 2026-W53, 2027-W01
    write(root, {"orders.csv": header + "".join(f"conversion,{d}T12:00:00,{c}\n" for c, d in rows)})
    assert cli("-w", root, "events", "import", root / "orders.csv").exit_code == 0
    result = cli("-w", root, "report", "retention", "--period", "week", "--format", "json")
    assert json.loads(result.stdout) == {
        "period": "week",
        "event": "conversion",
        "cohorts": [
            {"cohort": "2026-W53", "size": 1, "retention": [1.0, 1.0]},
            {"cohort": "2027-W01", "size": 1, "retention": [1.0]},
        ],
    }


def test_lift_goals_and_sample_ratio_on_the_edges(cli, tmp_path: Path) -> None:
    from scipy import stats as st

    base = 'channel: email\nsender: {from: "Shop <news@shop.example.com>"}\n'
    base += 'unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"\nname: "N"\n'
    weighted = (
        "id: weighted\n"
        + base
        + "holdout: 0.2\ngoals: {open_rate: 0.5, conversion_rate: 0.1, revenue_per_recipient: 1.0}\n"
        "variants:\n"
        "  - {id: z, weight: 1, subject: S, text: T}\n  - {id: a, weight: 1, subject: S, text: T}\n"
        "  - {id: b, weight: 3, subject: S, text: T}\n"
    )
    quiet = "id: quiet\n" + base + "holdout: 0.5\nvariants:\n  - {id: p, subject: S, text: T}\n"
    celled = (
        "id: celled\n" + base + "holdout: {where: \"contact_id = 'c14'\"}\nvariants:\n"
        "  - {id: x, subject: S, text: T}\n  - {id: w, subject: S, text: T}\n"
    )
    root = write(
        tmp_path / "ws",
        {
            "dmops.yaml": WS,
            "contacts.csv": CONTACTS,
            "campaigns/weighted.yaml": weighted,
            "campaigns/quiet.yaml": quiet,
            "campaigns/celled.yaml": celled,
            # conversions only: no campaign event yet, so rates from events have no data, conversions do
            "orders.csv": "event,ts,contact_id,revenue\n"
            + "".join(
                f"conversion,2026-12-01T03:00:00Z,{c},{r}\n" for c, r in [("c6", 10), ("c7", 30), ("c8", 5), ("c9", 15)]
            ),
        },
    )

    def entry(campaign: str, contact: str, variant: str | None) -> Entry:
        kind = "holdout" if variant is None else "message"
        return Entry(
            campaign,
            "once",
            contact,
            kind,
            "email",
            "marketing",
            variant,
            T,
            f"{campaign}-{contact}" if variant else None,
        )

    record(
        load_workspace(root),
        [
            *(entry("weighted", c, "a") for c in ("c1", "c2")),  # nobody in z; a converts nothing
            *(entry("weighted", c, "b") for c in ("c3", "c4", "c5")),
            *(entry("weighted", c, None) for c in ("c6", "c7")),  # the holdout converts: 10 and 30
            *(entry("quiet", c, "p") for c in ("c8", "c9")),  # p converts: 5 and 15
            *(entry("quiet", c, None) for c in ("c10", "c11")),  # its holdout does not
            entry("celled", "c12", "x"),
            entry("celled", "c13", "w"),
            entry("celled", "c14", None),
        ],
    )
    assert cli("-w", root, "events", "import", root / "orders.csv").exit_code == 0

    def campaign(name: str) -> dict:
        result = cli("-w", root, "report", name, "--format", "json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["campaigns"][0]

    w = campaign("weighted")
    rows = {r["variant"]: r for r in w["rows"]}
    spread = math.sqrt(((10 - 20) ** 2 + (30 - 20) ** 2) / 1)  # the holdout's sample standard deviation
    assert same(rows["a"]["lift"]["revenue_per_recipient"], welch(0.0, 0.0, 2, 20.0, spread, 2))  # revenue 0, no spread
    assert rows["a"]["lift"]["revenue_per_recipient"]["abs"] == -20.0
    assert w["ab"]["pairs"][0] == {"a": "z", "b": "a", "conversion_rate": None}  # z had nobody
    assert {g["metric"]: g["met"] for g in w["goals"]} == {
        "open_rate": None,  # no event of this campaign yet: no data
        "conversion_rate": False,  # conversions are known: 0 of 5
        "revenue_per_recipient": False,
    }
    planned = [0.2, 0.8 / 5, 0.8 / 5, 0.8 * 3 / 5]  # holdout, z, a, b
    observed = [2, 0, 2, 3]
    chi2 = st.chisquare(observed, [7 * p for p in planned]).statistic
    assert w["ab"]["sample_ratio"]["chi2"] == pytest.approx(chi2)

    q = {r["variant"]: r for r in campaign("quiet")["rows"]}
    spread = math.sqrt(((5 - 10) ** 2 + (15 - 10) ** 2) / 1)
    assert same(q["p"]["lift"]["revenue_per_recipient"], welch(10.0, spread, 2, 0.0, 0.0, 2))  # holdout: 0, no spread

    c = campaign("celled")  # a holdout cell has no planned share: the variants are compared with each other
    assert c["ab"]["sample_ratio"]["chi2"] == 0.0 and c["rows"][-1]["recipients"] == 1


def test_retention_is_given_to_six_places_and_csv_lines_end_in_newline_only(cli, root: Path) -> None:
    rows = [("c1", "2026-01-10"), ("c2", "2026-01-11"), ("c3", "2026-01-12"), ("c1", "2026-02-01")]
    write(root, {"orders.csv": "event,ts,contact_id\n" + "".join(f"conversion,{d}T12:00:00,{c}\n" for c, d in rows)})
    assert cli("-w", root, "events", "import", root / "orders.csv").exit_code == 0
    cohorts = json.loads(cli("-w", root, "report", "retention", "--format", "json").stdout)["cohorts"]
    assert cohorts == [{"cohort": "2026-01", "size": 3, "retention": [1.0, 0.333333]}]
    from dmops.report.kpis import to_csv

    header = to_csv([])  # the CLI runner folds \r\n, so the text is checked as dmops builds it
    assert header.startswith("campaign,variant,") and header.endswith("_p_value\n") and "\r" not in header


def test_a_clicked_url_is_stored_with_its_event(cli, root: Path) -> None:
    write(root, {"clicks.csv": "event,ts,message_id,URL\nclick,2026-12-01T04:00:00Z,m1,https://shop.example.com/x\n"})
    assert cli("-w", root, "events", "import", root / "clicks.csv").exit_code == 0
    with duckdb.connect(str(ledger_path(load_workspace(root))), read_only=True) as con:
        assert con.execute("SELECT event, url FROM events").fetchall() == [("click", "https://shop.example.com/x")]


def test_events_found_elsewhere_keep_their_instant_and_import_time_whatever_the_local_zone(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider's receipt or a bounce read from a mailbox (events.import_found) is stored at its UTC
    instant, and stamped with the import's clock, also when the machine's own zone is not UTC."""
    import time
    from datetime import UTC, datetime

    import duckdb

    from dmops.events import Found, import_found

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        now = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
        found = [Found("m1", "delivered", datetime(2026, 12, 1, 12, 0, tzinfo=UTC), "receipt-1")]
        result = import_found(load_workspace(root), found, now=now, source="receipts")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert result is not None and result.imported == 1
    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    rows = con.execute("SELECT ts, imported_at, source FROM events WHERE message_id = 'm1'").fetchall()
    con.close()
    assert rows == [(datetime(2026, 12, 1, 12, 0), datetime(2026, 12, 2, 9, 30), "receipts")]
