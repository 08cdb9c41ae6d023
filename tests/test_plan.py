"""The eligibility funnel with hand-computed expectations (SPEC §4-§6)."""

from __future__ import annotations

import os
import stat
from datetime import datetime, time, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from dmops.errors import DmopsError
from dmops.plan import PlanSummary, hash_thresholds
from dmops.schedule import in_quiet_hours
from dmops.workspace import QuietHours
from tests.planning import dead_pid, independent_u, message, plan, seed, write

WS = """\
version: 1
timezone: Asia/Shanghai
contacts: contacts.csv
suppressions: [optouts.csv]
consent: {email: email_opt_in}
phone_region: CN
"""

CONTACTS = """\
contact_id,email,phone,timezone,email_opt_in,sms_opt_in,tier
c01,one@example.com,+8613800000001,Asia/Shanghai,yes,yes,gold
c02,not-an-email,+8613800000002,Asia/Shanghai,yes,yes,gold
c03,three@example.com,+8613800000003,Asia/Shanghai,no,yes,gold
c04,four@example.com,+8613800000004,Asia/Shanghai,yes,yes,gold
c05,Five@Example.com,+8613800000005,Asia/Shanghai,yes,yes,gold
c06,six@example.com,13800000006,Asia/Shanghai,yes,yes,gold
c07,seven@example.com,+8613800000007,Asia/Shanghai,yes,yes,gold
c08,eight@example.com,+8613800000008,Asia/Shanghai,yes,yes,gold
c09,nine@example.com,+8613800000009,Asia/Shanghai,yes,yes,gold
c10,ten@example.com,+8613800000010,Asia/Shanghai,yes,yes,silver
"""

OPTOUTS = """\
contact_id,address,channel,reason,ts
c04,,,unsubscribe,2026-01-01T00:00:00Z
, FIVE@example.COM ,email,unsubscribe,
,+86 138 0000 0006,sms,complaint,
"""

CAMPAIGN = """\
id: promo
name: Promo
channel: email
sender: {from: "Shop <news@shop.example.com>"}
unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"
audience: {where: "tier = 'gold'"}
send_at: "2026-12-01 10:00"
variants:
  - {id: a, subject: "Hi", text: "Hello"}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write(
        tmp_path, {"dmops.yaml": WS, "contacts.csv": CONTACTS, "optouts.csv": OPTOUTS, "campaigns/promo.yaml": CAMPAIGN}
    )


def reasons(rows: dict) -> dict[str, str | None]:
    return {cid: row[0] for cid, row in rows.items()}


def test_each_reason_in_order(root: Path) -> None:
    seed(
        root,
        message("c07", "2026-12-01T02:00:00", campaign="promo"),  # this occurrence: already sent
        message("c08", "2026-12-01T01:00:00", campaign="other"),  # 1h before t: within the 1d cap
        message("c09", "2026-12-01T02:00:00", campaign="promo", kind="holdout"),  # held before: stays held
        message("c02", "2026-12-01T02:00:00", campaign="promo"),  # invalid address wins over already sent
    )
    duplicate = "c11, ONE@Example.com ,+8613800000011,Asia/Shanghai,yes,yes,gold\n"  # c01's address: one person
    write(root, {"dmops.yaml": WS + "caps:\n  - {max: 1, per: 1d}\n", "contacts.csv": CONTACTS + duplicate})
    summary, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert reasons(rows) == {
        "c11": "duplicate_address",
        "c01": None,
        "c02": "invalid_address",
        "c03": "no_consent",
        "c04": "suppressed",  # by contact_id, all channels
        "c05": "suppressed",  # by email, trimmed and case-folded
        "c06": None,  # the phone suppression is for sms only
        "c07": "already_sent",
        "c08": "frequency_cap",
        "c09": "holdout",
    }
    assert rows["c01"] == (None, "a", "2026-12-01T02:00:00Z")
    assert summary.audience == 10 and summary.to_send == 2
    assert summary.excluded == {
        "invalid_address": 1,
        "no_consent": 1,
        "suppressed": 2,
        "duplicate_address": 1,
        "already_sent": 1,
        "frequency_cap": 1,
        "holdout": 1,
        "no_variant": 0,
    }
    assert summary.audience == summary.to_send + sum(summary.excluded.values())


def test_phone_suppression_matches_on_sms(root: Path) -> None:
    sms = CAMPAIGN.replace("channel: email", "channel: sms").replace('subject: "Hi", ', "")
    sms = "\n".join(line for line in sms.splitlines() if not line.startswith(("sender", "unsubscribe_url")))
    write(root, {"campaigns/sms.yaml": sms.replace("id: promo", "id: sms-promo") + "\n"})
    _, rows = plan(root, "campaigns/sms.yaml", "2026-11-30T12:00")
    assert rows["c06"][0] == "suppressed"  # written 13800000006 in the contacts, +86 138 0000 0006 in the opt-outs
    assert rows["c05"][0] is None  # the email suppression is for email only


CAP_CAMPAIGN = CAMPAIGN.replace("audience: {where: \"tier = 'gold'\"}", "audience: {where: \"contact_id = 'c01'\"}")


@pytest.mark.parametrize(
    ("planned", "channel", "capped"),
    [
        ("2026-12-01T02:00:00", "email", True),  # same instant
        ("2026-11-30T02:00:01", "email", True),  # 23:59:59 before
        ("2026-11-30T02:00:00", "email", False),  # exactly 1d before: not strictly within
        ("2026-12-02T02:00:00", "email", False),  # exactly 1d after
        ("2026-12-02T01:59:59", "email", True),  # planned later than t, within 1d: counts
        ("2026-12-01T02:00:00", "sms", True),  # the cap names no channel: every channel counts
    ],
)
def test_cap_window_edges(root: Path, planned: str, channel: str, capped: bool) -> None:
    write(root, {"dmops.yaml": WS + "caps:\n  - {max: 1, per: 1d}\n", "campaigns/promo.yaml": CAP_CAMPAIGN})
    seed(root, message("c01", planned, channel=channel))
    _, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert rows["c01"][0] == ("frequency_cap" if capped else None)


@pytest.mark.parametrize("planned", ["2026-11-30T02:00:00", "2026-12-02T02:00:00"])  # exactly 1d before / after t
def test_each_cap_uses_its_own_window_when_several_apply(root: Path, planned: str) -> None:
    # The 7-day cap sees the message (1 < 5); the 1-day cap must not: |t_m - t| = 1d is not strictly within 1d.
    caps = "caps:\n  - {max: 1, per: 1d}\n  - {max: 5, per: 7d}\n"
    write(root, {"dmops.yaml": WS + caps, "campaigns/promo.yaml": CAP_CAMPAIGN})
    seed(root, message("c01", planned))
    _, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert rows["c01"][0] is None
    seed(root, message("c01", "2026-12-01T03:00:00", campaign="third"))  # 1h after t: now the 1-day cap binds
    _, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert rows["c01"][0] == "frequency_cap"


def test_a_capped_contact_is_reported_capped_never_held_out(tmp_path: Path) -> None:
    # SPEC §6: frequency_cap (step 5) comes before holdout (step 6); a capped contact must not join the control group.
    contacts = "contact_id,email,email_opt_in\n" + "".join(f"h{i:02d},u{i}@example.com,yes\n" for i in range(20))
    campaign = CAMPAIGN.replace("audience: {where: \"tier = 'gold'\"}\n", "") + "holdout: 0.5\n"
    root = write(
        tmp_path,
        {
            "dmops.yaml": WS.replace("suppressions: [optouts.csv]\n", "") + "caps:\n  - {max: 1, per: 1d}\n",
            "contacts.csv": contacts,
            "campaigns/promo.yaml": campaign,
        },
    )
    # about half of these ids fall in the holdout slice (checked below, so the test keeps its point)
    assert 3 <= sum(independent_u("promo", f"h{i:02d}") < 0.5 for i in range(20)) <= 17
    seed(root, *(message(f"h{i:02d}", "2026-12-01T01:00:00") for i in range(20)))  # 1h before t
    summary, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert summary.excluded["frequency_cap"] == 20 and summary.excluded["holdout"] == 0
    assert {row[0] for row in rows.values()} == {"frequency_cap"}


def test_channel_cap_counts_its_channel_only_and_max_counts(root: Path) -> None:
    caps = "caps:\n  - {max: 2, per: 7d, channel: email}\n  - {max: 1, per: 1d, channel: sms}\n"
    write(root, {"dmops.yaml": WS + caps, "campaigns/promo.yaml": CAP_CAMPAIGN})
    seed(
        root,
        message("c01", "2026-11-28T02:00:00", channel="email"),
        message("c01", "2026-12-01T02:00:00", channel="sms"),
        message("c01", "2026-12-01T03:00:00", channel="dm"),
    )
    _, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert rows["c01"][0] is None  # 1 email in 7d < 2; the sms cap does not bind an email campaign
    seed(root, message("c01", "2026-12-05T02:00:00", channel="email"))
    _, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert rows["c01"][0] == "frequency_cap"  # 2 emails within 7d


def test_transactional_messages_do_not_count_and_are_not_capped(root: Path) -> None:
    write(root, {"dmops.yaml": WS + "caps:\n  - {max: 1, per: 1d}\n", "campaigns/promo.yaml": CAP_CAMPAIGN})
    seed(root, message("c01", "2026-12-01T02:00:00", purpose="transactional"))
    _, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert rows["c01"][0] is None
    seed(root, message("c01", "2026-12-01T02:00:00"))
    write(
        root, {"campaigns/receipt.yaml": CAP_CAMPAIGN.replace("id: promo", "id: receipt") + "purpose: transactional\n"}
    )
    _, rows = plan(root, "campaigns/receipt.yaml", "2026-11-30T12:00")
    assert rows["c01"][0] is None


def test_campaign_caps_add_to_workspace_caps(root: Path) -> None:
    write(root, {"campaigns/promo.yaml": CAP_CAMPAIGN + "caps:\n  - {max: 1, per: 30d}\n"})
    seed(root, message("c01", "2026-11-10T02:00:00"))
    _, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert rows["c01"][0] == "frequency_cap"


def test_transactional_ignores_unsubscribes_and_consent_but_not_bounces(root: Path) -> None:
    optouts = OPTOUTS + "c01,,,bounce,\n"
    receipt = CAMPAIGN.replace("id: promo", "id: receipt") + "purpose: transactional\n"
    write(root, {"optouts.csv": optouts, "campaigns/receipt.yaml": receipt})
    _, rows = plan(root, "campaigns/receipt.yaml", "2026-11-30T12:00")
    assert rows["c01"][0] == "suppressed"  # bounce: honoured
    assert rows["c03"][0] is None  # no consent: ignored
    assert rows["c04"][0] is None  # unsubscribe: ignored
    assert rows["c02"][0] == "invalid_address"


def test_missing_suppression_file_fails_the_plan(root: Path) -> None:
    (root / "optouts.csv").unlink()
    with pytest.raises(DmopsError) as caught:
        plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert caught.value.exit_code == 66


def test_bad_suppression_rows_are_named(root: Path) -> None:
    write(root, {"optouts.csv": "contact_id,address,channel,reason\nc01,,fax,\n,,,unsubscribe\nc02,,,spam\n"})
    with pytest.raises(DmopsError) as caught:
        plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    problems = caught.value.problems  # type: ignore[attr-defined]
    assert [(p.location.line, p.location.key) for p in problems] == [(2, "channel"), (3, "contact_id"), (4, "reason")]
    assert all(p.exit_code == 65 for p in problems)


def test_bad_suppression_rows_are_named_by_line_and_column_in_line_order(root: Path, cli) -> None:
    write(root, {"optouts.csv": "contact_id,address,channel,reason\nc01,,fax,\n,,,unsubscribe\nc02,,,spam\n"})
    result = cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00")
    assert result.exit_code == 65
    assert result.stderr.splitlines() == [
        "error: optouts.csv:2, key 'channel': channel must be email, sms, dm or blank",
        "error: optouts.csv:3, key 'contact_id': the row has neither contact_id nor address",
        "error: optouts.csv:4, key 'reason': reason must be unsubscribe, bounce, complaint, manual or blank",
    ]


# --- time ----------------------------------------------------------------------------------------------------

NY_WS = WS.replace("Asia/Shanghai", "America/New_York")


def _send_at(root: Path, send_at: str, *, contact_tz: str = "America/New_York", local: bool = True) -> str:
    contacts = f"contact_id,email,timezone,email_opt_in\nc01,one@example.com,{contact_tz},yes\n"
    campaign = CAMPAIGN.replace(
        'send_at: "2026-12-01 10:00"', f'send_at: "{send_at}"\nlocal_time: {str(local).lower()}'
    )
    campaign = campaign.replace("audience: {where: \"tier = 'gold'\"}\n", "")
    write(root, {"dmops.yaml": NY_WS, "contacts.csv": contacts, "campaigns/promo.yaml": campaign})
    _, rows = plan(root, "campaigns/promo.yaml", "2026-01-01T00:00")
    return rows["c01"][2]


def test_dst_gap_moves_forward_by_the_gap(root: Path) -> None:
    assert _send_at(root, "2026-03-08 02:30") == "2026-03-08T07:30:00Z"  # = 03:30 EDT


def test_dst_overlap_takes_the_first_occurrence(root: Path) -> None:
    assert _send_at(root, "2026-11-01 01:30") == "2026-11-01T05:30:00Z"  # 01:30 EDT, not EST


def test_explicit_offset_is_that_instant(root: Path) -> None:
    assert _send_at(root, "2026-12-01T10:00:00+08:00") == "2026-12-01T02:00:00Z"


def test_the_machine_zone_changes_no_time(root: Path, monkeypatch) -> None:
    # Offsets written in send_at and --at are instants; the zone of the machine running dmops reads nothing.
    import time as clock

    from tests.planning import run_cli

    contacts = "contact_id,email,timezone,email_opt_in\nc01,one@example.com,Europe/Berlin,yes\n"
    campaign = CAMPAIGN.replace('send_at: "2026-12-01 10:00"', 'send_at: "2026-12-01T10:00:00+08:00"')
    campaign = campaign.replace("audience: {where: \"tier = 'gold'\"}\n", "")
    write(root, {"dmops.yaml": NY_WS, "contacts.csv": contacts, "campaigns/promo.yaml": campaign})
    outputs = []
    for machine in ("UTC", "Pacific/Kiritimati"):  # UTC+14: a local clock anywhere would show
        monkeypatch.setenv("TZ", machine)
        clock.tzset()
        try:
            code, out = run_cli(root, "plan", "promo", "--at", "2026-11-30T20:00:00.250+08:00")
        finally:
            monkeypatch.undo()
            clock.tzset()
        assert code == 0, out
        outputs.append(out)
    assert outputs[0] == outputs[1]
    assert "occurrence once, at 2026-11-30T12:00:00Z" in outputs[0]
    assert "send times (UTC): 2026-12-01T02:00:00Z … 2026-12-01T02:00:00Z" in outputs[0]


def test_the_plan_shows_the_first_and_the_last_send_time(root: Path) -> None:
    from tests.planning import run_cli

    contacts = "contact_id,email,timezone,email_opt_in\nb,b@example.com,Europe/Berlin,yes\nn,n@example.com,,yes\n"
    campaign = CAMPAIGN.replace("audience: {where: \"tier = 'gold'\"}\n", "") + "local_time: true\n"
    write(root, {"dmops.yaml": NY_WS, "contacts.csv": contacts, "campaigns/promo.yaml": campaign})
    code, out = run_cli(root, "plan", "promo", "--at", "2026-11-30T12:00Z")
    assert code == 0, out
    assert "send times (UTC): 2026-12-01T09:00:00Z … 2026-12-01T15:00:00Z" in out  # 10:00 Berlin, 10:00 New York


def test_local_time_reads_send_at_in_each_recipients_zone(root: Path) -> None:
    assert _send_at(root, "2026-12-01 10:00", contact_tz="Europe/Berlin") == "2026-12-01T09:00:00Z"
    assert _send_at(root, "2026-12-01 10:00", contact_tz="Europe/Berlin", local=False) == "2026-12-01T15:00:00Z"


@pytest.mark.parametrize("bad_tz", ["", "EST", "Mars/Olympus"])
def test_missing_or_invalid_contact_zone_falls_back_to_workspace(root: Path, bad_tz: str) -> None:
    assert _send_at(root, "2026-12-01 10:00", contact_tz=bad_tz) == "2026-12-01T15:00:00Z"


QUIET = 'quiet_hours: {start: "21:00", end: "08:00"}\n'


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2026-12-01 20:59", "2026-12-01T12:59:00Z"),  # before start: unchanged
        ("2026-12-01 21:00", "2026-12-02T00:00:00Z"),  # start is quiet: next 08:00 = 00:00Z
        ("2026-12-01 23:30", "2026-12-02T00:00:00Z"),  # before midnight: tomorrow's 08:00
        ("2026-12-02 03:00", "2026-12-02T00:00:00Z"),  # after midnight: today's 08:00
        ("2026-12-02 08:00", "2026-12-02T00:00:00Z"),  # end is not quiet
    ],
)
def test_quiet_hours_wrap_midnight(root: Path, local: str, expected: str) -> None:
    contacts = "contact_id,email,timezone,email_opt_in\nc01,one@example.com,Asia/Shanghai,yes\n"
    campaign = CAMPAIGN.replace('send_at: "2026-12-01 10:00"', f'send_at: "{local}"').replace(
        "audience: {where: \"tier = 'gold'\"}\n", ""
    )
    write(root, {"dmops.yaml": WS + QUIET, "contacts.csv": contacts, "campaigns/promo.yaml": campaign})
    _, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert rows["c01"][2] == expected
    transactional = campaign.replace("id: promo", "id: receipt") + "purpose: transactional\n"
    write(root, {"campaigns/receipt.yaml": transactional})
    _, rows = plan(root, "campaigns/receipt.yaml", "2026-11-30T12:00")
    unshifted = datetime.fromisoformat(local) - timedelta(hours=8)  # Shanghai is UTC+8 all year
    assert rows["c01"][2] == unshifted.strftime("%Y-%m-%dT%H:%M:%SZ")  # transactional: no quiet hours


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2026-12-01 23:59", "2026-12-01T15:59:00Z"),  # before start: unchanged
        ("2026-12-02 00:00", "2026-12-01T23:00:00Z"),  # start is quiet: 07:00 the same day
        ("2026-12-02 06:59", "2026-12-01T23:00:00Z"),
        ("2026-12-02 07:00", "2026-12-01T23:00:00Z"),  # end is not quiet: stays
    ],
)
def test_quiet_hours_within_one_day(root: Path, local: str, expected: str) -> None:
    contacts = "contact_id,email,timezone,email_opt_in\nc01,one@example.com,Asia/Shanghai,yes\n"
    campaign = CAMPAIGN.replace('send_at: "2026-12-01 10:00"', f'send_at: "{local}"').replace(
        "audience: {where: \"tier = 'gold'\"}\n", ""
    )
    quiet = 'quiet_hours: {start: "00:00", end: "07:00"}\n'
    write(root, {"dmops.yaml": WS + quiet, "contacts.csv": contacts, "campaigns/promo.yaml": campaign})
    _, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert rows["c01"][2] == expected


@pytest.mark.parametrize(
    ("start", "end", "quiet", "not_quiet"),
    [
        ("21:00", "08:00", ["21:00", "23:59", "00:00", "07:59"], ["08:00", "12:00", "20:59"]),  # wraps midnight
        ("00:00", "07:00", ["00:00", "06:59"], ["07:00", "23:59"]),
        ("08:00", "08:00", [], ["07:59", "08:00", "08:01"]),  # start == end: no quiet hours
    ],
)
def test_quiet_hours_are_start_inclusive_end_exclusive(start: str, end: str, quiet: list, not_quiet: list) -> None:
    window = QuietHours(start=start, end=end)
    assert all(in_quiet_hours(time.fromisoformat(t), window) for t in quiet)
    assert not any(in_quiet_hours(time.fromisoformat(t), window) for t in not_quiet)


def test_quiet_hours_use_the_recipients_zone_even_without_local_time(root: Path) -> None:
    contacts = (
        "contact_id,email,timezone,email_opt_in\nc01,one@example.com,America/New_York,yes\nc02,two@example.com,,yes\n"
    )
    campaign = CAMPAIGN.replace("audience: {where: \"tier = 'gold'\"}\n", "")  # 10:00 Shanghai = 21:00 New York
    write(root, {"dmops.yaml": WS + QUIET, "contacts.csv": contacts, "campaigns/promo.yaml": campaign})
    _, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert rows["c01"][2] == "2026-12-01T13:00:00Z"  # next 08:00 in New York
    assert rows["c02"][2] == "2026-12-01T02:00:00Z"  # workspace zone: 10:00 is not quiet


def test_send_time_is_on_the_local_date_of_at(root: Path) -> None:
    contacts = "contact_id,email,timezone,email_opt_in\nc01,one@example.com,Asia/Shanghai,yes\nc02,two@example.com,America/Los_Angeles,yes\n"
    campaign = CAMPAIGN.replace('send_at: "2026-12-01 10:00"', 'send_time: "09:00"\nlocal_time: true').replace(
        "audience: {where: \"tier = 'gold'\"}\n", ""
    )
    write(root, {"contacts.csv": contacts, "campaigns/promo.yaml": campaign})
    # --at 2026-12-01 07:00 Shanghai = 2026-11-30 15:00 in Los Angeles
    _, rows = plan(root, "campaigns/promo.yaml", "2026-12-01T07:00")
    assert rows["c01"][2] == "2026-12-01T01:00:00Z"  # 09:00 on 12-01 in Shanghai (before --at: sent at once)
    assert rows["c02"][2] == "2026-11-30T17:00:00Z"  # 09:00 on 11-30 in Los Angeles


def test_no_send_time_means_at_itself_truncated_to_seconds(root: Path) -> None:
    campaign = CAMPAIGN.replace('send_at: "2026-12-01 10:00"\n', "")
    write(root, {"campaigns/promo.yaml": campaign})
    summary, rows = plan(root, "campaigns/promo.yaml", "2026-12-01T02:03:04.987654Z")
    assert rows["c01"][2] == "2026-12-01T02:03:04Z"
    assert summary.as_json()["at"] == "2026-12-01T02:03:04Z"


@pytest.mark.parametrize(
    ("recurrence", "at", "key"),
    [
        ("once", "2026-12-01T10:00", "once"),
        ("daily", "2026-12-01T00:30", "2026-12-01"),  # workspace-local date (UTC is still 11-30)
        ("weekly", "2027-01-01T10:00", "2026-W53"),  # ISO week-year
        ("weekly", "2026-12-28T10:00", "2026-W53"),
        ("monthly", "2026-12-31T23:59", "2026-12"),
    ],
)
def test_occurrence_keys(root: Path, recurrence: str, at: str, key: str) -> None:
    write(root, {"campaigns/promo.yaml": CAMPAIGN + f"recurrence: {recurrence}\n"})
    summary, _ = plan(root, "campaigns/promo.yaml", at)
    assert summary.occurrence == key


# --- assignment ----------------------------------------------------------------------------------------------


def _split(tmp_path: Path, variants: str, extra: str = "") -> tuple[PlanSummary, dict[str, tuple[Any, ...]]]:
    """Plan the campaign with ``variants`` (YAML list items) over 2,000 consenting contacts, no audience filter."""
    contacts = "contact_id,email,email_opt_in\n" + "".join(f"{i:05d},u{i}@example.com,yes\n" for i in range(2000))
    campaign = (
        CAMPAIGN.replace("audience: {where: \"tier = 'gold'\"}\n", "").replace(
            '  - {id: a, subject: "Hi", text: "Hello"}', variants
        )
        + extra
    )
    root = write(
        tmp_path,
        {
            "dmops.yaml": WS.replace("suppressions: [optouts.csv]\n", ""),
            "contacts.csv": contacts,
            "campaigns/promo.yaml": campaign,
        },
    )
    return plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")


def test_hash_split_matches_an_independent_computation(tmp_path: Path) -> None:
    summary, rows = _split(
        tmp_path,
        '  - {id: a, weight: 1, subject: "Hi", text: "Hello"}\n  - {id: b, weight: 3, subject: "Hi", text: "Hello"}',
        "holdout: 0.2\n",
    )
    for contact, (reason, variant, _) in rows.items():
        u = independent_u("promo", contact)
        expected = "holdout" if u < 0.2 else ("a" if u < 0.2 + 0.8 * 0.25 else "b")
        assert (reason or variant) == expected, (contact, u)
    assert 300 < summary.excluded["holdout"] < 500 and 300 < summary.variants["a"] < 500


def test_a_variant_without_a_weight_weighs_one(tmp_path: Path) -> None:
    """Weights may be given for some variants only: the others weigh 1 (a: 3, b: none -> 3:1)."""
    _, rows = _split(
        tmp_path, '  - {id: a, weight: 3, subject: "Hi", text: "Hello"}\n  - {id: b, subject: "Hi", text: "Hello"}'
    )
    for contact, (_, variant, _) in rows.items():
        assert variant == ("a" if independent_u("promo", contact) < 0.75 else "b"), contact


def test_thresholds_are_exact_integers() -> None:
    space = 16**15
    t0, bounds = hash_thresholds(0.1, [1, 1])
    # h < t0 exactly when u = h / 16^15 < 0.1 (the binary value of 0.1, as the YAML float holds it)
    assert Fraction(t0 - 1, space) < Fraction(0.1) <= Fraction(t0, space)
    middle = Fraction(0.1) + (1 - Fraction(0.1)) / 2
    assert Fraction(bounds[0] - 1, space) < middle <= Fraction(bounds[0], space)
    assert bounds[-1] == space


def test_thresholds_round_up_when_the_slice_is_not_whole() -> None:
    # three equal variants, no holdout: 16^15 / 3 = 384307168202282325.33..., and h < ceil(...) is u < 1/3
    t0, bounds = hash_thresholds(0.0, [1, 1, 1])
    assert t0 == 0
    assert bounds == [384307168202282326, 768614336404564651, 16**15]


CELLS = """\
id: cells
name: Cells
channel: email
sender: {from: "Shop <news@shop.example.com>"}
unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"
send_at: "2026-12-01 10:00"
variants:
  - {id: vip, where: "tier = 'gold'", subject: "Hi", text: "Hello"}
  - {id: all, where: "contact_id IN ('c01', 'c10')", subject: "Hi", text: "Hello"}
"""


def test_explicit_cells_first_match_wins_and_no_match_is_no_variant(root: Path) -> None:
    write(root, {"campaigns/cells.yaml": CELLS})
    _, rows = plan(root, "campaigns/cells.yaml", "2026-11-30T12:00")
    assert rows["c01"][:2] == (None, "vip")  # both cells match: the first wins
    assert rows["c10"][:2] == (None, "all")
    assert rows["c07"][:2] == (None, "vip")
    write(root, {"campaigns/cells.yaml": CELLS.replace("tier = 'gold'", "tier = 'bronze'")})
    _, rows = plan(root, "campaigns/cells.yaml", "2026-11-30T12:00")
    assert rows["c07"][:2] == ("no_variant", None)


def test_holdout_cell_with_weighted_variants(root: Path) -> None:
    write(
        root,
        {"campaigns/promo.yaml": CAMPAIGN.replace("tier = 'gold'", "true") + "holdout: {where: \"tier = 'silver'\"}\n"},
    )
    _, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert rows["c10"][0] == "holdout"
    assert rows["c01"][:2] == (None, "a")


def test_holdout_is_stable_across_reruns_even_if_the_data_changes(root: Path) -> None:
    write(
        root,
        {"campaigns/promo.yaml": CAMPAIGN.replace("tier = 'gold'", "true") + "holdout: {where: \"tier = 'silver'\"}\n"},
    )
    seed(root, message("c10", "2026-12-01T02:00:00", campaign="promo", kind="holdout"))
    write(
        root,
        {
            "contacts.csv": CONTACTS.replace(
                "c10,ten@example.com,+8613800000010,Asia/Shanghai,yes,yes,silver",
                "c10,ten@example.com,+8613800000010,Asia/Shanghai,yes,yes,gold",
            )
        },
    )
    _, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert rows["c10"][0] == "holdout"


# --- expressions ---------------------------------------------------------------------------------------------


def test_bad_expression_is_78_naming_campaign_file_and_key(root: Path) -> None:
    write(root, {"campaigns/promo.yaml": CAMPAIGN.replace("tier = 'gold'", "tier = (SELECT 1)")})
    with pytest.raises(DmopsError) as caught:
        plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    exc = caught.value
    assert exc.exit_code == 78
    assert (exc.location.file, exc.location.line, exc.location.key) == (
        root / "campaigns/promo.yaml",
        6,
        "audience.where",
    )


def test_expression_failing_on_the_data_is_65_without_quoting_it(root: Path) -> None:
    write(root, {"campaigns/promo.yaml": CAMPAIGN.replace("tier = 'gold'", "CAST(email AS INTEGER) > 0")})
    with pytest.raises(DmopsError) as caught:
        plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    exc = caught.value
    assert exc.exit_code == 65 and exc.location.key == "audience.where"
    assert "example.com" not in exc.render()


def test_run_date_is_the_workspace_local_date_of_at(root: Path) -> None:
    contacts = "contact_id,email,email_opt_in,signup_at\nc01,one@example.com,yes,2026-12-01\nc02,two@example.com,yes,2026-11-29\n"
    write(
        root,
        {
            "contacts.csv": contacts,
            "campaigns/promo.yaml": CAMPAIGN.replace("tier = 'gold'", "signup_at >= run_date - INTERVAL 1 DAY"),
        },
    )
    _, rows = plan(root, "campaigns/promo.yaml", "2026-12-01T23:30")  # Shanghai date 12-01; UTC 12-01 15:30
    assert set(rows) == {"c01"}


def test_contact_columns_may_share_names_with_internal_ones(root: Path) -> None:
    contacts = "contact_id,email,email_opt_in,zone,h,planned_at\nc01,one@example.com,yes,north,7,soon\n"
    write(
        root,
        {
            "contacts.csv": contacts,
            "campaigns/promo.yaml": CAMPAIGN.replace(
                "tier = 'gold'", "zone = 'north' AND h = 7 AND planned_at = 'soon'"
            ),
        },
    )
    _, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert rows == {"c01": (None, "a", "2026-12-01T02:00:00Z")}


def test_an_email_opt_out_suppresses_other_channels_even_when_the_email_is_invalid(root: Path) -> None:
    contacts = 'contact_id,email,phone,email_opt_in\nc01,"""quoted""@Example.com",+8613800000001,yes\n'
    optouts = 'contact_id,address,channel,reason\n,"""quoted""@example.com",,unsubscribe\n'
    sms = "id: sms\nname: SMS\nchannel: sms\nvariants:\n  - {id: a, text: Hi}\n"
    write(root, {"contacts.csv": contacts, "optouts.csv": optouts, "campaigns/sms.yaml": sms})
    _, rows = plan(root, "campaigns/sms.yaml", "2026-11-30T12:00")
    assert rows["c01"][0] == "suppressed"


def test_suppression_file_errors_name_the_file_line_and_key(root: Path, cli) -> None:
    (root / "optouts.csv").unlink()
    missing = cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00")
    assert (missing.exit_code, missing.stderr.strip()) == (
        66,
        "error: dmops.yaml:4, key 'suppressions[0]': suppression file 'optouts.csv' not found "
        "(a listed suppression file must exist; it is never treated as empty)",
    )
    write(root, {"optouts.csv": "channel,reason\nemail,unsubscribe\n"})
    unusable = cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00")
    assert (unusable.exit_code, unusable.stderr.strip()) == (
        65,
        "error: optouts.csv:1: a suppression file needs a contact_id or an address column "
        "(columns: contact_id or address, optional channel, reason, ts)",
    )


@pytest.mark.parametrize(
    ("optouts", "suppressed"),
    [
        ("contact_id\nc01\n", {"c01"}),  # ids only
        ("Address\nONE@example.com\n", {"c01"}),  # addresses only, any case of the header
        ("CONTACT_ID,Channel\nc01,sms\nc07,\n", {"c07"}),
    ],
)
def test_a_suppression_file_needs_only_one_of_contact_id_and_address(root: Path, optouts: str, suppressed: set) -> None:
    write(root, {"optouts.csv": optouts})
    _, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
    assert {cid for cid, row in rows.items() if row[0] == "suppressed"} == suppressed


def test_a_suppression_file_outside_the_workspace_is_refused(root: Path, tmp_path_factory, cli) -> None:
    elsewhere = tmp_path_factory.mktemp("shared") / "global-optouts.csv"
    elsewhere.write_text("contact_id,reason\nc01,complaint\n", encoding="utf-8")
    write(root, {"dmops.yaml": WS.replace("suppressions: [optouts.csv]", f"suppressions: ['{elsewhere}']")})
    result = cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00")
    assert result.exit_code == 78 and "dmops.yaml:4, key 'suppressions[0]'" in result.stderr


def test_an_expression_that_fails_on_the_data_names_its_file_line_and_key(root: Path) -> None:
    from tests.planning import run_cli

    contacts = "contact_id,email,email_opt_in,tier\nc01,a@example.com,yes,7\nc02,b@example.com,yes,gold\n"
    campaign = CAMPAIGN.replace(
        "audience: {where: \"tier = 'gold'\"}", 'audience:\n  where: "CAST(tier AS INTEGER) > 1"'
    )
    write(root, {"contacts.csv": contacts, "campaigns/promo.yaml": campaign})
    code, out = run_cli(root, "plan", "promo", "--at", "2026-11-30T12:00")
    assert code == 65
    assert out.strip() == (
        "error: campaigns/promo.yaml:7, key 'audience.where': the expression failed on the contact data"
        " (ConversionException) (a column holds values the expression cannot compare; cast it or fix the data)"
    )


def test_a_spark_hand_over_folder_is_new_private_and_clears_killed_commands_folders(tmp_path: Path) -> None:
    """The folder where a Spark command hands contact rows over: under state_dir/spark (made with its parents),
    private to the user, named after the command and process, and the folders of killed commands go first."""
    from dmops.durable import hand_over_folder
    from dmops.workspace import load_workspace

    files = {"dmops.yaml": WS + "state_dir: state/deep\n", "contacts.csv": CONTACTS, "optouts.csv": OPTOUTS}
    root = write(tmp_path / "ws", files)
    ws = load_workspace(root)
    first = hand_over_folder(ws.state_dir, "plan")
    parent = root / "state" / "deep" / "spark"
    assert first.parent == parent and first.name.startswith(f"plan-{os.getpid()}-")
    assert stat.S_IMODE(parent.stat().st_mode) == 0o700 and stat.S_IMODE(first.stat().st_mode) == 0o700
    killed = parent / f"send-{dead_pid()}-0a1b"
    killed.mkdir()
    (killed / "in-contacts.parquet").write_bytes(b"c0001,p1@example.com")
    second = hand_over_folder(ws.state_dir, "send")
    assert second != first and second.name.startswith(f"send-{os.getpid()}-")
    assert sorted(parent.iterdir()) == sorted([first, second])  # the killed command's folder is gone, ours stay
