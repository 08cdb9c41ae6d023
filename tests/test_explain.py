"""`dmops plan --explain`, whole output: every step, its inputs and its outcome, pinned (SPEC §6).

One workspace holds a contact for each way through the funnel; each test compares the
whole explanation, so a change of wording or of a number is a visible diff here.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmops.cli import app
from dmops.ledger import Entry, record
from dmops.workspace import load_workspace
from tests.planning import message, seed, write
from tests.test_plan import CAMPAIGN, CELLS, CONTACTS, OPTOUTS, WS

WORKSPACE = (
    WS.replace("consent: {email: email_opt_in}", "consent: {email: email_opt_in, sms: sms_opt_in}")
    + "caps:\n  - {max: 1, per: 1d}\n  - {max: 3, per: 7d, channel: email}\n"
    + 'quiet_hours: {start: "21:00", end: "08:00"}\n'
)
PEOPLE = (
    CONTACTS.replace(  # c03: no consent value at all, in New York (10:00 Shanghai is 21:00 there: quiet)
        "c03,three@example.com,+8613800000003,Asia/Shanghai,no,yes,gold",
        "c03,three@example.com,+8613800000003,America/New_York,,yes,gold",
    ).replace(  # c09: a zone that does not exist
        "c09,nine@example.com,+8613800000009,Asia/Shanghai,yes,yes,gold",
        "c09,nine@example.com,+8613800000009,Mars/Olympus,yes,yes,gold",
    )
    + "c13,thirteen@example.com,+8613800000013,Asia/Shanghai,yes,yes,gold\n"
)
PEOPLE = (
    PEOPLE.replace("tier\n", "tier,dm_handle\n", 1)
    .replace("gold\n", "gold,wx_abcdef\n")
    .replace("silver\n", "silver,\n")
)
SMS = 'id: texts\nname: Texts\nchannel: sms\nsend_at: "2026-12-01 10:00"\nvariants:\n  - {id: a, text: Hello}\n'
DM = SMS.replace("id: texts", "id: chats").replace("channel: sms", "channel: dm")
PROMO = (
    CAMPAIGN.replace(
        '  - {id: a, subject: "Hi", text: "Hello"}',
        '  - {id: a, weight: 1, subject: "Hi", text: "Hello"}\n  - {id: b, weight: 3, subject: "Hi", text: "Hello"}',
    )
    + "holdout: 0.5\n"
)  # holdout [0, 0.5), a [0.5, 0.625), b [0.625, 1)
RECEIPT = CAMPAIGN.replace("id: promo", "id: receipt") + "purpose: transactional\n"
WITH_CELLS = CELLS + "holdout: {where: \"contact_id = 'c07'\"}\n"
WEIGHTED_WITH_HOLDOUT_CELL = PROMO.replace("id: promo", "id: split").replace(
    "holdout: 0.5", "holdout: {where: \"contact_id = 'c07'\"}"
)  # a [0, 0.25), b [0.25, 1): the holdout takes no slice of u


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write(
        tmp_path_factory.mktemp("explain"),
        {
            "dmops.yaml": WORKSPACE,
            "contacts.csv": PEOPLE,
            "optouts.csv": OPTOUTS,
            "campaigns/promo.yaml": PROMO,
            "campaigns/receipt.yaml": RECEIPT,
            "campaigns/cells.yaml": WITH_CELLS,
            "campaigns/texts.yaml": SMS,
            "campaigns/split.yaml": WEIGHTED_WITH_HOLDOUT_CELL,
            "campaigns/chats.yaml": DM,
        },
    )
    seed(
        root,
        message("c07", "2026-12-01T01:00:00"),  # another campaign, 1h before t: capped
        message("c08", "2026-12-01T02:00:00", campaign="promo", kind="holdout"),  # held out before: kept
        message("c09", "2026-12-01T02:00:00", campaign="promo"),  # already sent
    )
    return root


def explanation(root: Path, campaign: str, contact: str, *options: str) -> str:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["-w", str(root), *options, "plan", campaign, "--at", "2026-11-30T12:00", "--explain", contact]
    )
    assert result.exit_code == 0, result.output
    return result.stdout.split(f"explain contact {contact}:\n", 1)[1]


# Reviewed line by line against SPEC §6; the long cap lines are as a terminal shows them.
EXPECTED = {
    ("promo", "c01"): """\
  audience             in audience
                         audience.where: tier = 'gold'
  1 invalid_address    pass
                         email address: o***@example.com
  2 no_consent         pass
                         email_opt_in = 'yes'
  3 suppressed         pass
                         no suppression matches
  3 duplicate_address  pass
                         no other audience contact has this address
  4 already_sent       pass
                         occurrence once: nothing in the ledger
  5 frequency_cap      pass
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 0 within ±1d of 2026-12-01T02:00:00Z
                         max 3 marketing email messages within 7d (dmops.yaml caps[1]): 0 within ±7d of 2026-12-01T02:00:00Z
  time                 info
                         zone Asia/Shanghai
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            HOLDOUT
                         u = 0.407032 (md5 of 'promo:c01'), holdout 0.5
  7 variant            info
                         u = 0.407032 is in the holdout slice [0, 0.5)
  decision             excluded: holdout
""",
    ("promo", "c02"): """\
  audience             in audience
                         audience.where: tier = 'gold'
  1 invalid_address    EXCLUDED
                         email address: none
  2 no_consent         not reached (pass)
                         email_opt_in = 'yes'
  3 suppressed         not reached (pass)
                         no suppression matches
  3 duplicate_address  not reached (pass)
                         no valid address to share
  4 already_sent       not reached (pass)
                         occurrence once: nothing in the ledger
  5 frequency_cap      not reached (pass)
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 0 within ±1d of 2026-12-01T02:00:00Z
                         max 3 marketing email messages within 7d (dmops.yaml caps[1]): 0 within ±7d of 2026-12-01T02:00:00Z
  time                 info
                         zone Asia/Shanghai
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            not reached (HOLDOUT)
                         u = 0.066472 (md5 of 'promo:c02'), holdout 0.5
  7 variant            info
                         u = 0.066472 is in the holdout slice [0, 0.5)
  decision             excluded: invalid_address
""",
    ("promo", "c03"): """\
  audience             in audience
                         audience.where: tier = 'gold'
  1 invalid_address    pass
                         email address: t***@example.com
  2 no_consent         EXCLUDED
                         email_opt_in = (blank)
  3 suppressed         not reached (pass)
                         no suppression matches
  3 duplicate_address  not reached (pass)
                         no other audience contact has this address
  4 already_sent       not reached (pass)
                         occurrence once: nothing in the ledger
  5 frequency_cap      not reached (pass)
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 0 within ±1d of 2026-12-01T13:00:00Z
                         max 3 marketing email messages within 7d (dmops.yaml caps[1]): 0 within ±7d of 2026-12-01T13:00:00Z
  time                 info
                         zone America/New_York
                         t = 2026-12-01T13:00:00Z = 2026-12-01 08:00:00 EST (UTC-0500)
                         quiet hours moved it from 2026-12-01T02:00:00Z
  6 holdout            not reached (HOLDOUT)
                         u = 0.083483 (md5 of 'promo:c03'), holdout 0.5
  7 variant            info
                         u = 0.083483 is in the holdout slice [0, 0.5)
  decision             excluded: no_consent
""",
    ("promo", "c05"): """\
  audience             in audience
                         audience.where: tier = 'gold'
  1 invalid_address    pass
                         email address: F***@Example.com
  2 no_consent         pass
                         email_opt_in = 'yes'
  3 suppressed         EXCLUDED
                         optouts.csv:3 unsubscribe on email (by email)
  3 duplicate_address  not reached (pass)
                         no other audience contact has this address
  4 already_sent       not reached (pass)
                         occurrence once: nothing in the ledger
  5 frequency_cap      not reached (pass)
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 0 within ±1d of 2026-12-01T02:00:00Z
                         max 3 marketing email messages within 7d (dmops.yaml caps[1]): 0 within ±7d of 2026-12-01T02:00:00Z
  time                 info
                         zone Asia/Shanghai
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            not reached (HOLDOUT)
                         u = 0.065832 (md5 of 'promo:c05'), holdout 0.5
  7 variant            info
                         u = 0.065832 is in the holdout slice [0, 0.5)
  decision             excluded: suppressed
""",
    ("promo", "c06"): """\
  audience             in audience
                         audience.where: tier = 'gold'
  1 invalid_address    pass
                         email address: s***@example.com
  2 no_consent         pass
                         email_opt_in = 'yes'
  3 suppressed         pass
                         optouts.csv:4 complaint on sms (by phone) — does not apply
  3 duplicate_address  pass
                         no other audience contact has this address
  4 already_sent       pass
                         occurrence once: nothing in the ledger
  5 frequency_cap      pass
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 0 within ±1d of 2026-12-01T02:00:00Z
                         max 3 marketing email messages within 7d (dmops.yaml caps[1]): 0 within ±7d of 2026-12-01T02:00:00Z
  time                 info
                         zone Asia/Shanghai
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            HOLDOUT
                         u = 0.053040 (md5 of 'promo:c06'), holdout 0.5
  7 variant            info
                         u = 0.053040 is in the holdout slice [0, 0.5)
  decision             excluded: holdout
""",
    ("promo", "c07"): """\
  audience             in audience
                         audience.where: tier = 'gold'
  1 invalid_address    pass
                         email address: s***@example.com
  2 no_consent         pass
                         email_opt_in = 'yes'
  3 suppressed         pass
                         no suppression matches
  3 duplicate_address  pass
                         no other audience contact has this address
  4 already_sent       pass
                         occurrence once: nothing in the ledger
  5 frequency_cap      EXCLUDED
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 1 within ±1d of 2026-12-01T02:00:00Z
                         max 3 marketing email messages within 7d (dmops.yaml caps[1]): 1 within ±7d of 2026-12-01T02:00:00Z
  time                 info
                         zone Asia/Shanghai
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            not reached (HOLDOUT)
                         u = 0.145830 (md5 of 'promo:c07'), holdout 0.5
  7 variant            info
                         u = 0.145830 is in the holdout slice [0, 0.5)
  decision             excluded: frequency_cap
""",
    ("promo", "c08"): """\
  audience             in audience
                         audience.where: tier = 'gold'
  1 invalid_address    pass
                         email address: e***@example.com
  2 no_consent         pass
                         email_opt_in = 'yes'
  3 suppressed         pass
                         no suppression matches
  3 duplicate_address  pass
                         no other audience contact has this address
  4 already_sent       HOLDOUT (kept)
                         occurrence once: held out, planned 2026-12-01T02:00:00Z
  5 frequency_cap      not reached (pass)
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 0 within ±1d of 2026-12-01T02:00:00Z
                         max 3 marketing email messages within 7d (dmops.yaml caps[1]): 0 within ±7d of 2026-12-01T02:00:00Z
  time                 info
                         zone Asia/Shanghai
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            not reached (HOLDOUT)
                         u = 0.401075 (md5 of 'promo:c08'), holdout 0.5
  7 variant            info
                         u = 0.401075 is in the holdout slice [0, 0.5)
  decision             excluded: holdout
""",
    ("promo", "c09"): """\
  audience             in audience
                         audience.where: tier = 'gold'
  1 invalid_address    pass
                         email address: n***@example.com
  2 no_consent         pass
                         email_opt_in = 'yes'
  3 suppressed         pass
                         no suppression matches
  3 duplicate_address  pass
                         no other audience contact has this address
  4 already_sent       EXCLUDED
                         occurrence once: message variant a planned 2026-12-01T02:00:00Z
  5 frequency_cap      not reached (EXCLUDED)
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 1 within ±1d of 2026-12-01T02:00:00Z
                         max 3 marketing email messages within 7d (dmops.yaml caps[1]): 1 within ±7d of 2026-12-01T02:00:00Z
  time                 info
                         zone Asia/Shanghai (contact timezone missing or invalid: workspace zone)
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            not reached (pass)
                         u = 0.602485 (md5 of 'promo:c09'), holdout 0.5
  7 variant            info
                         u = 0.602485 is in [0.500000, 0.625000): variant a
  decision             excluded: already_sent
""",
    ("promo", "c10"): """\
  audience  not in audience
              audience.where is false or null: tier = 'gold'
""",
    ("promo", "c13"): """\
  audience             in audience
                         audience.where: tier = 'gold'
  1 invalid_address    pass
                         email address: t***@example.com
  2 no_consent         pass
                         email_opt_in = 'yes'
  3 suppressed         pass
                         no suppression matches
  3 duplicate_address  pass
                         no other audience contact has this address
  4 already_sent       pass
                         occurrence once: nothing in the ledger
  5 frequency_cap      pass
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 0 within ±1d of 2026-12-01T02:00:00Z
                         max 3 marketing email messages within 7d (dmops.yaml caps[1]): 0 within ±7d of 2026-12-01T02:00:00Z
  time                 info
                         zone Asia/Shanghai
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            pass
                         u = 0.860439 (md5 of 'promo:c13'), holdout 0.5
  7 variant            info
                         u = 0.860439 is in [0.625000, 1.000000): variant b
  decision             send variant b at 2026-12-01T02:00:00Z
""",
    ("receipt", "c02"): """\
  audience             in audience
                         audience.where: tier = 'gold'
  1 invalid_address    EXCLUDED
                         email address: none
  2 no_consent         skipped
                         transactional campaigns need no consent
  3 suppressed         not reached (pass)
                         no suppression matches
  3 duplicate_address  not reached (pass)
                         no valid address to share
  4 already_sent       not reached (pass)
                         occurrence once: nothing in the ledger
  5 frequency_cap      skipped
                         transactional campaigns are not capped
  time                 info
                         zone Asia/Shanghai
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            not reached (pass)
                         u = 0.752113 (md5 of 'receipt:c02'), holdout 0.0
  7 variant            info
                         u = 0.752113 is in [0.000000, 1.000000): variant a
  decision             excluded: invalid_address
""",
    ("receipt", "c03"): """\
  audience             in audience
                         audience.where: tier = 'gold'
  1 invalid_address    pass
                         email address: t***@example.com
  2 no_consent         skipped
                         transactional campaigns need no consent
  3 suppressed         pass
                         no suppression matches
  3 duplicate_address  pass
                         no other audience contact has this address
  4 already_sent       pass
                         occurrence once: nothing in the ledger
  5 frequency_cap      skipped
                         transactional campaigns are not capped
  time                 info
                         zone America/New_York
                         t = 2026-12-01T02:00:00Z = 2026-11-30 21:00:00 EST (UTC-0500)
  6 holdout            pass
                         u = 0.901801 (md5 of 'receipt:c03'), holdout 0.0
  7 variant            info
                         u = 0.901801 is in [0.000000, 1.000000): variant a
  decision             send variant a at 2026-12-01T02:00:00Z
""",
    ("texts", "c06"): """\
  audience             in audience
                         audience.where: (no audience.where: every contact)
  1 invalid_address    pass
                         sms address: +86*******0006
  2 no_consent         pass
                         sms_opt_in = 'yes'
  3 suppressed         EXCLUDED
                         optouts.csv:4 complaint on sms (by phone)
  3 duplicate_address  not reached (pass)
                         no other audience contact has this address
  4 already_sent       not reached (pass)
                         occurrence once: nothing in the ledger
  5 frequency_cap      not reached (pass)
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 0 within ±1d of 2026-12-01T02:00:00Z
  time                 info
                         zone Asia/Shanghai
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            not reached (pass)
                         u = 0.818485 (md5 of 'texts:c06'), holdout 0.0
  7 variant            info
                         u = 0.818485 is in [0.000000, 1.000000): variant a
  decision             excluded: suppressed
""",
    ("chats", "c01"): """\
  audience             in audience
                         audience.where: (no audience.where: every contact)
  1 invalid_address    pass
                         dm address: w***
  2 no_consent         pass
                         no consent column configured for dm
  3 suppressed         pass
                         no suppression matches
  3 duplicate_address  pass
                         9 other audience contact(s) share this address
                         the lowest id keeps it
  4 already_sent       pass
                         occurrence once: nothing in the ledger
  5 frequency_cap      pass
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 0 within ±1d of 2026-12-01T02:00:00Z
  time                 info
                         zone Asia/Shanghai
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            pass
                         u = 0.997492 (md5 of 'chats:c01'), holdout 0.0
  7 variant            info
                         u = 0.997492 is in [0.000000, 1.000000): variant a
  decision             send variant a at 2026-12-01T02:00:00Z
""",
    ("split", "c13"): """\
  audience             in audience
                         audience.where: tier = 'gold'
  1 invalid_address    pass
                         email address: t***@example.com
  2 no_consent         pass
                         email_opt_in = 'yes'
  3 suppressed         pass
                         no suppression matches
  3 duplicate_address  pass
                         no other audience contact has this address
  4 already_sent       pass
                         occurrence once: nothing in the ledger
  5 frequency_cap      pass
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 0 within ±1d of 2026-12-01T02:00:00Z
                         max 3 marketing email messages within 7d (dmops.yaml caps[1]): 0 within ±7d of 2026-12-01T02:00:00Z
  time                 info
                         zone Asia/Shanghai
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            pass
                         holdout.where: contact_id = 'c07'
  7 variant            info
                         u = 0.951637 is in [0.250000, 1.000000): variant b
  decision             send variant b at 2026-12-01T02:00:00Z
""",
    ("cells", "c01"): """\
  audience             in audience
                         audience.where: (no audience.where: every contact)
  1 invalid_address    pass
                         email address: o***@example.com
  2 no_consent         pass
                         email_opt_in = 'yes'
  3 suppressed         pass
                         no suppression matches
  3 duplicate_address  pass
                         no other audience contact has this address
  4 already_sent       pass
                         occurrence once: nothing in the ledger
  5 frequency_cap      pass
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 0 within ±1d of 2026-12-01T02:00:00Z
                         max 3 marketing email messages within 7d (dmops.yaml caps[1]): 0 within ±7d of 2026-12-01T02:00:00Z
  time                 info
                         zone Asia/Shanghai
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            pass
                         holdout.where: contact_id = 'c07'
  7 no_variant         pass
                         first matching cell: vip
  decision             send variant vip at 2026-12-01T02:00:00Z
""",
    ("cells", "c07"): """\
  audience             in audience
                         audience.where: (no audience.where: every contact)
  1 invalid_address    pass
                         email address: s***@example.com
  2 no_consent         pass
                         email_opt_in = 'yes'
  3 suppressed         pass
                         no suppression matches
  3 duplicate_address  pass
                         no other audience contact has this address
  4 already_sent       pass
                         occurrence once: nothing in the ledger
  5 frequency_cap      EXCLUDED
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 1 within ±1d of 2026-12-01T02:00:00Z
                         max 3 marketing email messages within 7d (dmops.yaml caps[1]): 1 within ±7d of 2026-12-01T02:00:00Z
  time                 info
                         zone Asia/Shanghai
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            not reached (HOLDOUT)
                         holdout.where: contact_id = 'c07'
  7 no_variant         not reached (pass)
                         first matching cell: vip
  decision             excluded: frequency_cap
""",
    ("cells", "c10"): """\
  audience             in audience
                         audience.where: (no audience.where: every contact)
  1 invalid_address    pass
                         email address: t***@example.com
  2 no_consent         pass
                         email_opt_in = 'yes'
  3 suppressed         pass
                         no suppression matches
  3 duplicate_address  pass
                         no other audience contact has this address
  4 already_sent       pass
                         occurrence once: nothing in the ledger
  5 frequency_cap      pass
                         max 1 marketing messages on any channel within 1d (dmops.yaml caps[0]): 0 within ±1d of 2026-12-01T02:00:00Z
                         max 3 marketing email messages within 7d (dmops.yaml caps[1]): 0 within ±7d of 2026-12-01T02:00:00Z
  time                 info
                         zone Asia/Shanghai
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            pass
                         holdout.where: contact_id = 'c07'
  7 no_variant         pass
                         first matching cell: all
  decision             send variant all at 2026-12-01T02:00:00Z
""",
}


@pytest.mark.parametrize(("campaign", "contact"), list(EXPECTED), ids=[f"{c}-{p}" for c, p in EXPECTED])
def test_explain_prints_every_step_with_its_inputs(root: Path, campaign: str, contact: str) -> None:
    assert explanation(root, campaign, contact) == EXPECTED[(campaign, contact)]


def test_explain_shows_the_address_only_when_asked(root: Path) -> None:
    masked = explanation(root, "promo", "c05")
    shown = explanation(root, "promo", "c05", "--show-pii")
    assert "email address: F***@Example.com" in masked and "Five@Example.com" not in masked
    assert shown == masked.replace("F***@Example.com", "Five@Example.com")


def test_explain_an_unknown_contact_is_a_usage_error(root: Path) -> None:
    result = CliRunner().invoke(app, ["-w", str(root), "plan", "promo", "--explain", "c99"])
    assert result.exit_code == 2
    assert "no contact with contact_id 'c99' in contacts.csv" in result.output


# A second workspace: no caps, a suppression from imported events (no line number) beside one from a file,
# an unsubscribe a transactional campaign ignores, cells that match nobody, and a ledger holding two records.
SMALL_WS = (
    "version: 1\ntimezone: Asia/Shanghai\ncontacts: contacts.csv\nsuppressions: [optouts.csv]\n"
    "consent: {email: email_opt_in}\n"
)
SMALL_BASE = (
    'name: "N"\nchannel: email\nsender: {from: "Shop <news@shop.example.com>"}\n'
    'unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"\nsend_at: "2026-12-01 10:00"\n'
)
SMALL_EXPECTED = {
    ("receipt", "c01"): """\
  audience             in audience
                         audience.where: (no audience.where: every contact)
  1 invalid_address    pass
                         email address: o***@example.com
  2 no_consent         skipped
                         transactional campaigns need no consent
  3 suppressed         EXCLUDED
                         events:ev.csv complaint on all channels (by contact_id)
                         optouts.csv:2 unsubscribe on email (by contact_id) — does not apply
  3 duplicate_address  not reached (pass)
                         no other audience contact has this address
  4 already_sent       not reached (pass)
                         occurrence once: nothing in the ledger
  5 frequency_cap      skipped
                         transactional campaigns are not capped
  time                 info
                         zone Asia/Shanghai (contact timezone missing or invalid: workspace zone)
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            not reached (pass)
                         u = 0.869551 (md5 of 'receipt:c01'), holdout 0.0
  7 variant            info
                         u = 0.869551 is in [0.000000, 1.000000): variant a
  decision             excluded: suppressed
""",
    ("nocell", "c01"): """\
  audience             in audience
                         audience.where: (no audience.where: every contact)
  1 invalid_address    pass
                         email address: o***@example.com
  2 no_consent         pass
                         email_opt_in = 'yes'
  3 suppressed         EXCLUDED
                         events:ev.csv complaint on all channels (by contact_id)
                         optouts.csv:2 unsubscribe on email (by contact_id)
  3 duplicate_address  not reached (pass)
                         no other audience contact has this address
  4 already_sent       not reached (pass)
                         occurrence once: nothing in the ledger
  5 frequency_cap      not reached (pass)
                         no caps apply
  time                 info
                         zone Asia/Shanghai (contact timezone missing or invalid: workspace zone)
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            not reached (pass)
                         u = 0.807140 (md5 of 'nocell:c01'), holdout 0.0
  7 no_variant         not reached (EXCLUDED)
                         first matching cell: none
  decision             excluded: suppressed
""",
    ("nocell", "c02"): """\
  audience             in audience
                         audience.where: (no audience.where: every contact)
  1 invalid_address    pass
                         email address: t***@example.com
  2 no_consent         pass
                         email_opt_in = 'yes'
  3 suppressed         pass
                         no suppression matches
  3 duplicate_address  pass
                         no other audience contact has this address
  4 already_sent       EXCLUDED
                         occurrence once: message variant vip planned 2026-12-01T02:00:00Z
                         held out, planned 2026-12-01T02:00:00Z
  5 frequency_cap      not reached (pass)
                         no caps apply
  time                 info
                         zone Asia/Shanghai (contact timezone missing or invalid: workspace zone)
                         t = 2026-12-01T02:00:00Z = 2026-12-01 10:00:00 CST (UTC+0800)
  6 holdout            not reached (pass)
                         u = 0.574548 (md5 of 'nocell:c02'), holdout 0.0
  7 no_variant         not reached (EXCLUDED)
                         first matching cell: none
  decision             excluded: already_sent
""",
}


def test_explain_without_caps_with_event_suppressions_and_unmatched_cells(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "dmops.yaml": SMALL_WS,
            "contacts.csv": "contact_id,email,email_opt_in,tier\nc01,one@example.com,yes,gold\nc02,two@example.com,yes,gold\n",
            "optouts.csv": "contact_id,address,channel,reason\nc01,,email,unsubscribe\n",
            "campaigns/receipt.yaml": "id: receipt\n"
            + SMALL_BASE
            + "purpose: transactional\nvariants:\n  - {id: a, subject: S, text: T}\n",
            "campaigns/nocell.yaml": "id: nocell\n"
            + SMALL_BASE
            + "variants:\n  - {id: vip, where: \"tier = 'platinum'\", subject: S, text: T}\n",
            "ev.csv": "event,ts,message_id\ncomplaint,2026-12-01T05:00:00Z,m1\n",
        },
    )
    t = datetime(2026, 12, 1, 2)
    record(
        load_workspace(root),
        [
            Entry("other", "once", "c01", "message", "email", "marketing", "a", t, "m1"),
            Entry("nocell", "once", "c02", "message", "email", "marketing", "vip", t, "m2"),
            Entry("nocell", "once", "c02", "holdout", "email", "marketing", None, t),
        ],
    )
    assert CliRunner().invoke(app, ["-w", str(root), "events", "import", str(root / "ev.csv")]).exit_code == 0
    for (campaign, contact), expected in SMALL_EXPECTED.items():
        assert explanation(root, campaign, contact) == expected, (campaign, contact)
