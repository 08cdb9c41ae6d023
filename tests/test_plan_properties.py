"""Invariants of the funnel on random contacts, suppressions and ledgers (hypothesis)."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dmops.addresses import normalise_email
from dmops.contacts import CONSENT_TRUE
from dmops.ledger import Entry
from tests.planning import independent_u, plan, seed, write

T = datetime(2026, 12, 1, 2, 0, 0)  # every contact's planned time: send_at 10:00 Shanghai, no quiet hours

ledger_row = st.fixed_dictionaries(  # one message or holdout record in a contact's history
    {
        "campaign": st.sampled_from(["other", "other", "other", "promo"]),
        "kind": st.sampled_from(["message", "message", "message", "holdout"]),
        "channel": st.sampled_from(["email", "email", "sms"]),
        "purpose": st.sampled_from(["marketing", "marketing", "transactional"]),
        "offset_hours": st.one_of(st.integers(-30, 30), st.integers(-200, 200)),
    }
)
contact = st.fixed_dictionaries(
    {
        "email": st.sampled_from(
            ["a@example.com", "B@Example.com", " c@example.org ", "d@example.net", "e@example.com", "bad@", ""]
        ),
        "consent": st.sampled_from(["yes", "y", "TRUE", "1", "no", "", "0"]),
        "tz": st.sampled_from(["Asia/Shanghai", "America/New_York", "", "EST"]),
        "history": st.lists(ledger_row, max_size=5),
    }
)
suppression = st.fixed_dictionaries(
    {
        "by": st.sampled_from(["id", "email"]),
        "who": st.integers(0, 11),
        "channel": st.sampled_from(["", "email", "sms"]),
        "reason": st.sampled_from(["unsubscribe", "bounce", "complaint", "manual"]),
    }
)


CAPPED_AND_IN_THE_HOLDOUT_SLICE = {  # contact 000 hashes to u = 0.10: random draws reach this case too rarely
    "contacts": [
        {
            "email": "a@example.com",
            "consent": "yes",
            "tz": "Asia/Shanghai",
            "history": [
                {"campaign": "other", "kind": "message", "channel": "email", "purpose": "marketing", "offset_hours": -1}
            ],
        }
    ],
    "suppressions": [],
    "cap_max": 1,
    "cap_days": 1,
    "cap_channel": None,
    "purpose": "marketing",
    "holdout": 0.3,
}


FUNNEL_CASES = {
    "contacts": st.lists(contact, min_size=1, max_size=12),
    "suppressions": st.lists(suppression, max_size=6),
    "cap_max": st.integers(1, 3),
    "cap_days": st.integers(1, 7),
    "cap_channel": st.sampled_from([None, None, "email", "sms"]),
    "purpose": st.sampled_from(["marketing", "marketing", "transactional"]),
    "holdout": st.sampled_from([0.0, 0.3, 0.9]),
}


@settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(**CAPPED_AND_IN_THE_HOLDOUT_SLICE)
@given(**FUNNEL_CASES)
def test_funnel_invariants(contacts, suppressions, cap_max, cap_days, cap_channel, purpose, holdout) -> None:
    check_funnel(contacts, suppressions, cap_max, cap_days, cap_channel, purpose, holdout)


def check_funnel(
    contacts, suppressions, cap_max, cap_days, cap_channel, purpose, holdout, engine: str = "duckdb"
) -> None:
    """Plan a workspace built from the drawn inputs on ``engine`` and check every contact's decision against
    SPEC §6 computed from the inputs alone."""
    ids = [f"{i:03d}" for i in range(len(contacts))]
    contacts_csv = "contact_id,email,email_opt_in,timezone\n" + "".join(
        f"{cid},{c['email']},{c['consent']},{c['tz']}\n" for cid, c in zip(ids, contacts, strict=True)
    )
    optouts = "contact_id,address,channel,reason\n"
    for s in suppressions:
        if s["who"] >= len(ids):
            continue
        if s["by"] == "id":
            optouts += f"{ids[s['who']]},,{s['channel']},{s['reason']}\n"
        elif contacts[s["who"]]["email"].strip():
            optouts += f",{contacts[s['who']]['email'].strip().upper()},{s['channel']},{s['reason']}\n"
    cap = f"  - {{max: {cap_max}, per: {cap_days}d{', channel: ' + cap_channel if cap_channel else ''}}}\n"
    ws = (
        "version: 1\ntimezone: Asia/Shanghai\ncontacts: contacts.csv\nsuppressions: [optouts.csv]\n"
        f"consent: {{email: email_opt_in}}\ncaps:\n{cap}engine: {engine}\n"
    )
    campaign = (
        'id: promo\nname: P\nchannel: email\nsender: {from: "S <s@shop.example.com>"}\n'
        f'purpose: {purpose}\nunsubscribe_url: "https://shop.example.com/u/{{{{ unsubscribe_token }}}}"\n'
        f'send_at: "2026-12-01 10:00"\nholdout: {holdout}\nvariants:\n  - {{id: a, subject: S, text: T}}\n'
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = write(
            Path(tmp),
            {"dmops.yaml": ws, "contacts.csv": contacts_csv, "optouts.csv": optouts, "campaigns/promo.yaml": campaign},
        )
        entries = [
            Entry(
                r["campaign"],
                "once",
                cid,
                r["kind"],
                r["channel"],
                r["purpose"],
                "a" if r["kind"] == "message" else None,
                T + timedelta(hours=r["offset_hours"]),
            )
            for cid, c in zip(ids, contacts, strict=True)
            for r in c["history"]
        ]
        if entries:
            seed(root, *entries)
        summary, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
        assert summary.audience == len(ids) == summary.to_send + sum(summary.excluded.values())
        assert summary.to_send == sum(summary.variants.values())

        marketing = purpose == "marketing"
        cap_binds = cap_channel in (None, "email")  # the campaign is email

        def first_three(cid: str, c: dict) -> str | None:
            """Steps 1-3 of SPEC §6, from the inputs alone."""
            address = normalise_email(c["email"])
            if address is None:
                return "invalid_address"
            if marketing and c["consent"].strip().lower() not in CONSENT_TRUE:
                return "no_consent"
            for line in optouts.splitlines()[1:]:
                sid, listed, channel, why = line.split(",")
                applies = channel in ("", "email") and (marketing or why != "unsubscribe")
                if applies and (sid == cid or (listed and listed.strip().casefold() == address.casefold())):
                    return "suppressed"
            return None

        def first_failing_check(cid: str, c: dict) -> str | None:
            """SPEC §6, step by step, from the inputs alone."""
            failed = first_three(cid, c)
            if failed:
                return failed
            address = (normalise_email(c["email"]) or "").casefold()
            for other, d in zip(ids, contacts, strict=True):
                same = (normalise_email(d["email"]) or "").casefold() == address
                if other < cid and same and first_three(other, d) is None:
                    return "duplicate_address"  # one person, one message: the lowest id keeps it
            mine = [e for e in entries if e.contact_id == cid]
            if any(e.campaign_id == "promo" and e.kind == "message" for e in mine):
                return "already_sent"
            if any(e.campaign_id == "promo" and e.kind == "holdout" for e in mine):
                return "holdout"  # held out before: stays held out
            counted = [
                e
                for e in mine
                if e.kind == "message"
                and e.purpose == "marketing"
                and (cap_channel is None or e.channel == cap_channel)
                and abs(e.planned_at - T) < timedelta(days=cap_days)
            ]
            if marketing and cap_binds and len(counted) >= cap_max:
                return "frequency_cap"
            if independent_u("promo", cid) < holdout:
                return "holdout"
            return None

        for cid, c in zip(ids, contacts, strict=True):
            reason, variant, _ = rows[cid]
            expected = first_failing_check(cid, c)
            assert reason == expected, (cid, c, reason, expected)
            assert variant == ("a" if expected is None else None)


@settings(max_examples=10, deadline=None)
@given(st.lists(st.sampled_from(["yes", "no"]), min_size=1, max_size=30))
def test_out_files_are_byte_identical_across_runs(consents) -> None:
    from dmops.campaign import load_campaign
    from dmops.plan import run_plan
    from dmops.schedule import resolve_at
    from dmops.timeutil import zone
    from dmops.workspace import load_workspace

    contacts_csv = "contact_id,email,email_opt_in\n" + "".join(
        f"{i:04d},u{i}@example.com,{c}\n" for i, c in enumerate(consents)
    )
    campaign = (
        'id: promo\nname: P\nchannel: email\nsender: {from: "S <s@shop.example.com>"}\n'
        'unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"\nholdout: 0.25\n'
        "variants:\n  - {id: a, weight: 2, subject: S, text: T}\n  - {id: b, weight: 1, subject: S, text: T}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = write(
            Path(tmp),
            {
                "dmops.yaml": "version: 1\ntimezone: UTC\ncontacts: contacts.csv\nconsent: {email: email_opt_in}\n",
                "contacts.csv": contacts_csv,
                "campaigns/promo.yaml": campaign,
            },
        )
        ws = load_workspace(root)
        outputs = []
        for name in ("one.csv", "two.csv"):
            out = root / name
            c = load_campaign(root / "campaigns/promo.yaml", ws)
            con, _ = run_plan(ws, c, resolve_at("2026-12-01T10:00", datetime.now(), zone("UTC")), out=out)
            con.close()
            outputs.append(out.read_bytes())
        assert outputs[0] == outputs[1]
