"""Invariants of the funnel on random contacts, suppressions and ledgers (hypothesis)."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmops.addresses import normalise_email
from dmops.contacts import CONSENT_TRUE
from dmops.ledger import Entry
from tests.planning import plan, seed, write

T = datetime(2026, 12, 1, 2, 0, 0)  # every contact's planned time: send_at 10:00 Shanghai, no quiet hours

contact = st.fixed_dictionaries(
    {
        "email": st.sampled_from(["a@example.com", "B@Example.com", " c@example.org ", "bad@", ""]),
        "consent": st.sampled_from(["yes", "no", "", "TRUE", "0"]),
        "tz": st.sampled_from(["Asia/Shanghai", "America/New_York", "", "EST"]),
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
ledger_row = st.fixed_dictionaries(
    {
        "who": st.integers(0, 11),
        "campaign": st.sampled_from(["promo", "other"]),
        "kind": st.sampled_from(["message", "message", "holdout"]),
        "channel": st.sampled_from(["email", "sms"]),
        "purpose": st.sampled_from(["marketing", "transactional"]),
        "offset_hours": st.integers(-200, 200),
    }
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    contacts=st.lists(contact, min_size=1, max_size=12),
    suppressions=st.lists(suppression, max_size=6),
    ledger=st.lists(ledger_row, max_size=15),
    cap_max=st.integers(1, 3),
    cap_days=st.integers(1, 7),
    cap_channel=st.sampled_from([None, "email", "sms"]),
    purpose=st.sampled_from(["marketing", "transactional"]),
    holdout=st.sampled_from([0.0, 0.3]),
)
def test_funnel_invariants(contacts, suppressions, ledger, cap_max, cap_days, cap_channel, purpose, holdout) -> None:
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
        f"consent: {{email: email_opt_in}}\ncaps:\n{cap}"
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
                ids[r["who"]],
                r["kind"],
                r["channel"],
                r["purpose"],
                "a" if r["kind"] == "message" else None,
                T + timedelta(hours=r["offset_hours"]),
            )
            for r in ledger
            if r["who"] < len(ids)
        ]
        if entries:
            seed(root, *entries)
        summary, rows = plan(root, "campaigns/promo.yaml", "2026-11-30T12:00")
        assert summary.audience == len(ids) == summary.to_send + sum(summary.excluded.values())
        assert summary.to_send == sum(summary.variants.values())

        marketing = purpose == "marketing"
        for cid, c in zip(ids, contacts, strict=True):
            reason, variant, _ = rows[cid]
            if variant is None:
                continue
            assert reason is None
            assert normalise_email(c["email"]) is not None
            if marketing:
                assert c["consent"].lower() in CONSENT_TRUE
            email_key = c["email"].strip().lower()
            for line in optouts.splitlines()[1:]:
                sid, address, channel, why = line.split(",")
                applies = channel in ("", "email") and (marketing or why != "unsubscribe")
                matches = sid == cid or (address and address.lower() == email_key)
                assert not (applies and matches), (cid, line)
            assert not any(e.contact_id == cid and e.campaign_id == "promo" for e in entries)
            if marketing:
                counted = [
                    e
                    for e in entries
                    if e.contact_id == cid
                    and e.kind == "message"
                    and e.purpose == "marketing"
                    and (cap_channel is None or e.channel == cap_channel)
                    and abs(e.planned_at - T) < timedelta(days=cap_days)
                ]
                if cap_channel in (None, "email"):
                    assert len(counted) < cap_max


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
