"""Property: one person, one message (SPEC §6 duplicate_address and address-aware already_sent).

Random contact lists where several ids share an address (written in other cases, with spaces around it) and
ids are padded: no two messages of one send share a normalised address, and after the list is re-keyed (every
id replaced, rows shuffled) a rerun sends nothing new: the ledger knows each message's and each holdout's
address.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmops.addresses import normalise_email
from dmops.campaign import load_campaign
from dmops.send import send
from dmops.workspace import load_workspace
from tests.planning import write

WS = "version: 1\ntimezone: Asia/Shanghai\ncontacts: contacts.csv\nconsent: {email: email_opt_in}\n"
CAMPAIGN = (
    'id: promo\nname: P\nchannel: email\nsender: {from: "S <s@shop.example.com>"}\n'
    'unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"\nholdout: 0.2\n'
    "variants:\n  - {id: a, weight: 1, subject: S, text: T}\n  - {id: b, weight: 1, subject: S, text: T}\n"
)
AT = datetime(2026, 11, 30, 4, tzinfo=UTC)

person = st.fixed_dictionaries(
    {
        "address": st.sampled_from(["ann@example.com", "bo@example.com", "cy@example.org", "not-an-email"]),
        "case": st.sampled_from(["lower", "upper", "title"]),
        "pad": st.sampled_from(["", " ", "  "]),
        "consent": st.sampled_from(["yes", "yes", "no"]),
    }
)


def _contacts(people: list[dict[str, str]], ids: list[str]) -> str:
    rows = ["contact_id,email,email_opt_in"]
    for cid, p in zip(ids, people, strict=True):
        address = {"lower": str.lower, "upper": str.upper, "title": str.title}[p["case"]](p["address"])
        rows.append(f"{p['pad']}{cid}{p['pad']},{p['pad']}{address}{p['pad']},{p['consent']}")
    return "\n".join(rows) + "\n"


def _sent(root: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for path in sorted((root / "outbox").rglob("messages.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people=st.lists(person, min_size=1, max_size=14), order=st.randoms(use_true_random=False))
def test_one_message_per_address_and_none_again_after_rekeying(people, order) -> None:
    ids = [f"C{i:03d}" for i in range(len(people))]
    with tempfile.TemporaryDirectory() as tmp:
        root = write(
            Path(tmp), {"dmops.yaml": WS, "contacts.csv": _contacts(people, ids), "campaigns/promo.yaml": CAMPAIGN}
        )
        ws = load_workspace(root)
        send(ws, load_campaign(root / "campaigns/promo.yaml", ws), AT)
        first = _sent(root)
        keys = [str(m["to"]).lower() for m in first]
        assert len(keys) == len(set(keys))  # no address twice
        # every address someone consented on is reached once, or its consenting holder is in the holdout
        reachable = {
            (normalise_email(p["address"]) or "").lower()
            for p in people
            if p["consent"] == "yes" and normalise_email(p["address"])
        }
        assert set(keys) <= reachable

        rekeyed = list(zip([f"NEW-{i:04d}" for i in range(len(people))], people, strict=True))
        order.shuffle(rekeyed)
        write(root, {"contacts.csv": _contacts([p for _, p in rekeyed], [cid for cid, _ in rekeyed])})
        send(ws, load_campaign(root / "campaigns/promo.yaml", ws), AT)
        assert _sent(root) == first  # nothing new: sent addresses stay sent, held-out ones stay held out
