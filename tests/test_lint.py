"""`dmops lint`: every rule on a violating and a clean example; the CI formats; the send gate."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from dmops import lint
from dmops.campaign import load_campaign
from dmops.lint import RULES, SEVERITY, banned_claims, lint_campaign, normalise, sms_opt_out_present, ucs2_culprits
from dmops.plan import prepare
from dmops.workspace import load_workspace
from tests.conftest import BASIC_WORKSPACE, REPO
from tests.planning import write

WS = BASIC_WORKSPACE
CONTACTS = """\
contact_id,first_name,email,phone,email_opt_in,sms_opt_in,orders
00001,Lin,lin@example.com,13800138001,yes,yes,3
00002,,wei@example.com,13800138002,yes,yes,1
00003,Ana,ana@example.com,13800138003,yes,yes,0
"""
URL = "https://shop.example.com/u/{{ unsubscribe_token }}"


def email(variant: str, unsubscribe: str = URL) -> str:
    return (
        'id: c\nname: C\nchannel: email\npurpose: marketing\nsend_at: "2026-12-01 10:00"\n'
        f'sender: {{from: "Shop <news@shop.example.com>"}}\nunsubscribe_url: "{unsubscribe}"\n'
        f"variants:\n  - id: a\n{variant}"
    )


def sms(text: str) -> str:
    return (
        'id: c\nname: C\nchannel: sms\npurpose: marketing\nsend_at: "2026-12-01 10:00"\n'
        f"variants:\n  - id: a\n    text: {json.dumps(text, ensure_ascii=False)}\n"
    )


def fields(**parts: str) -> str:
    return "".join(f"    {k}: {json.dumps(v, ensure_ascii=False)}\n" for k, v in parts.items())


OK_TEXT = "Hello {{ first_name | default('there') }}\nUnsubscribe: {{ unsubscribe_url }}"
OK_HTML = "<p>Hello {{ first_name | default('there') }}, our winter collection is here.</p><a href='{{ unsubscribe_url }}'>unsubscribe</a>"
OK_SMS = "【好物商城】{{ first_name | default('亲') }}，冬季新品上市，回复TD退订"


def rules(tmp_path: Path, campaign: str, lint: str = "") -> set[str]:
    root = write(
        tmp_path / "ws",
        {"dmops.yaml": WS + lint, "contacts.csv": CONTACTS, "campaigns/c.yaml": campaign},
    )
    ws = load_workspace(root)
    loaded = load_campaign(root / "campaigns/c.yaml", ws)
    con = prepare(ws, loaded)
    try:
        result = lint_campaign(con, ws, loaded)
    finally:
        con.close()
    return {f.rule for f in result.findings}


SIGNED = "lint: {sms_signature: 【好物商城】}\n"
CASES = {  # rule: (violating campaign, clean campaign, lint config)
    "claim.banned": (sms("【好物商城】全场 顶 级 好货，回复TD退订"), sms(OK_SMS), ""),
    "email.unsubscribe-link": (
        email(fields(subject="Hi", text="Hello")),
        email(fields(subject="Hi", text=OK_TEXT)),
        "",
    ),
    "email.one-click": (
        email(fields(subject="Hi", text=OK_TEXT), "{{ 'http://shop.example.com/u/' ~ unsubscribe_token }}"),
        email(fields(subject="Hi", text=OK_TEXT)),
        "",
    ),
    "email.postal-address": (
        email(fields(subject="Hi", text=OK_TEXT)),
        email(fields(subject="Hi", text=OK_TEXT + "\nHaowu Shop, 88 Huaihai Road, Shanghai")),
        'lint: {postal_address: "Haowu Shop, 88 Huaihai Road, Shanghai"}\n',
    ),
    "sms.opt-out": (sms("【好物商城】冬季新品上市"), sms(OK_SMS), ""),
    "sms.signature": (sms("冬季新品上市，回复TD退订"), sms(OK_SMS), SIGNED),
    "template.unguarded": (
        email(fields(subject="Hi {{ first_name }}", text=OK_TEXT)),
        email(fields(subject="Hi {{ first_name | default('there') }} ({{ email }})", text=OK_TEXT)),
        "",
    ),
    "template.render": (
        email(fields(subject="{{ orders / 0 }}", text=OK_TEXT)),
        email(fields(subject="{{ orders / 2 }}", text=OK_TEXT)),
        "",
    ),
    "template.variable": (
        email(fields(subject="Hi {{ frist_name | default('there') }}", text=OK_TEXT)),
        email(fields(subject="Hi {{ first_name | default('there') }}", text=OK_TEXT)),
        "",
    ),
    "template.utm": (
        email(fields(subject="Hi", text=OK_TEXT + "\nhttps://shop.example.com/sale")),
        email(fields(subject="Hi", text=OK_TEXT + "\nhttps://shop.example.com/sale?utm_source=dmops")),
        "lint: {utm: required}\n",
    ),
    "sms.ucs2": (
        sms("Hi {{ first_name | default('there') }}, winter sale today 😀 Reply STOP to opt out"),
        sms("Hi {{ first_name | default('there') }}, winter sale today :) Reply STOP to opt out"),
        "",
    ),
    "sms.segments": (sms("【好物商城】" + "冬季新品上市" * 40 + "回复TD退订"), sms(OK_SMS), ""),
    "email.subject-length": (
        email(fields(subject="x" * 61, text=OK_TEXT)),
        email(fields(subject="x" * 60, text=OK_TEXT)),
        "",
    ),
    "email.header-control": (
        email(fields(subject="Hi\tthere", text=OK_TEXT)),
        email(fields(subject="Hi there", text=OK_TEXT)),
        "",
    ),
    "email.all-caps": (
        email(fields(subject="BIG WINTER SALE NOW ON", text=OK_TEXT)),
        email(fields(subject="Big winter sale now on", text=OK_TEXT)),
        "",
    ),
    "content.exclamations": (
        email(fields(subject="Sale!!", text=OK_TEXT)),
        email(fields(subject="Sale!", text=OK_TEXT)),
        "",
    ),
    "email.link-count": (
        email(fields(subject="Hi", text=OK_TEXT, html=OK_HTML + "<a href='https://x.example/'>x</a>" * 10)),
        email(fields(subject="Hi", text=OK_TEXT, html=OK_HTML + "<a href='https://x.example/'>x</a>" * 9)),
        "",
    ),
    "email.image-only": (
        email(
            fields(
                subject="Hi",
                text=OK_TEXT,
                html="<img src='https://x.example/b.png'><a href='{{ unsubscribe_url }}'>x</a>",
            )
        ),
        email(fields(subject="Hi", text=OK_TEXT, html="<img src='https://x.example/b.png'>" + OK_HTML)),
        "",
    ),
    "email.no-text-part": (
        email(fields(subject="Hi", html=OK_HTML)),
        email(fields(subject="Hi", text=OK_TEXT, html=OK_HTML)),
        "",
    ),
}


def test_every_rule_has_a_case() -> None:
    assert set(CASES) == set(SEVERITY)


def test_the_rule_table_in_the_docs_is_the_registry() -> None:
    """The module's table of rules (what users read) lists exactly the registered rules, severities included."""
    documented = dict(re.findall(r"^``([a-z0-9.-]+)``\s+(error|warning)\s", lint.__doc__ or "", re.MULTILINE))
    assert documented == SEVERITY
    assert len(SEVERITY) == 19


def test_a_rule_id_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match=r"claim\.banned is registered twice"):
        lint.rule("claim.banned", "error")(lambda message: [])
    assert RULES["claim.banned"].check is not None and RULES["claim.banned"].severity == "error"


def test_rules_run_only_on_their_channel_and_purpose() -> None:
    """An SMS rule never fires on email and a marketing rule never on a transactional message."""
    by_channel = {r.channel for r in RULES.values()}
    assert by_channel == {None, "email", "sms"}
    assert {r.id for r in RULES.values() if r.marketing} == {
        "email.one-click",
        "email.unsubscribe-link",
        "email.postal-address",
        "sms.opt-out",
        "sms.signature",
    }


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_fires_on_the_violation_and_not_on_the_clean_example(tmp_path: Path, rule: str) -> None:
    bad, good, lint = CASES[rule]
    assert rule in rules(tmp_path / "bad", bad, lint)
    assert rules(tmp_path / "good", good, lint) == set()  # the clean example is clean of every rule


def test_claims_hidden_behind_full_width_characters_spaces_and_zero_width_joiners() -> None:
    assert normalise("１００％ 有\u200b效") == "100%有效"
    assert [t for t, _ in banned_claims("全场 顶\u3000级 好货", [], [])] == ["顶级"]
    assert [t for t, _ in banned_claims("本店１００％有效", [], [])] == ["100%有效"]
    assert [t for t, _ in banned_claims("A MIRACLE  Cure!", [], [])] == ["miracle cure"]
    assert banned_claims("第一次下单立减20元", [], ["第一次"]) == []  # allow masks the harmless phrase
    assert banned_claims("全国第一", [], ["第一次"]) != []
    assert banned_claims("super deal", ["Super  Deal"], []) == [("Super  Deal", "workspace")]
    assert banned_claims("冬季新品上市", [], []) == []


@pytest.mark.parametrize(
    "hidden",
    [
        "顶\u200b级",  # zero-width space
        "顶\u200c级",  # zero-width non-joiner
        "顶\u200d级",  # zero-width joiner
        "顶\u2060级",  # word joiner
        "顶\ufeff级",  # zero-width no-break space (BOM)
        "顶·级",  # middle dot
        "顶・级",  # katakana middle dot
        "顶*级",
        "顶_级",
        "顶-级",
        "顶.级",
        "顶\t\n级",
        "顶 * - 级",  # a run of them
    ],
)
def test_every_separator_a_sender_can_hide_a_claim_behind_is_removed(hidden: str) -> None:
    assert normalise(hidden) == "顶级"
    assert [t for t, _ in banned_claims(f"全场{hidden}好货", [], [])] == ["顶级"]


def test_punctuation_that_is_not_a_separator_stays() -> None:
    assert normalise("50%, OFF!") == "50%,off!"
    assert banned_claims("顶/级 好货", [], []) == []  # a slash separates words: not the claim


def test_opt_out_in_the_language_of_the_message() -> None:
    assert sms_opt_out_present("新品上市，回复TD退订")
    assert not sms_opt_out_present("新品上市 Reply STOP")  # Chinese text needs 退订
    assert sms_opt_out_present("New in. Reply STOP to opt out")
    assert sms_opt_out_present("New in. Text ＳＴＯＰ to end")  # full-width still counts
    assert not sms_opt_out_present("Don't stopgap your style")


def test_one_emoji_is_what_makes_an_sms_ucs2() -> None:
    assert ucs2_culprits("Winter sale today 😀") == ["😀"]
    assert ucs2_culprits("Winter sale today :)") == []
    assert ucs2_culprits("冬季新品上市") == []  # Chinese text is UCS-2 by nature


def test_the_sample_workspace_lints_clean(cli, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    for name in ("campaigns", "samples"):
        shutil.copytree(REPO / name, root / name)
    shutil.copy(REPO / "dmops.yaml", root / "dmops.yaml")
    assert cli("-w", root, "events", "import", "samples/events.csv").exit_code == 0
    result = cli("-w", root, "lint", "--format", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["findings"] == [] and payload["rendered"] > 1000


def test_the_bad_example_fires_every_rule(cli) -> None:
    root = REPO / "examples" / "lint-bad"
    result = cli("-w", root, "lint", "--format", "json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert {f["rule"] for f in payload["findings"]} == set(SEVERITY)
    assert all(f["file"].startswith("campaigns/") and f["line"] and f["hint"] for f in payload["findings"])
    render = [f for f in payload["findings"] if f["rule"] == "template.render"]
    assert len(render) == 1 and render[0]["contacts"] > 1  # one finding for every contact it fails for
    github = cli("-w", root, "lint", "--format", "github")
    assert github.exit_code == 1
    lines = github.stdout.splitlines()
    assert lines and all(line.startswith(("::error file=campaigns/", "::warning file=campaigns/")) for line in lines)
    table = cli("-w", root, "lint", "bad-sms")
    assert table.exit_code == 1 and "bad-sms.yaml:10: error claim.banned" in table.stdout


def test_send_refuses_on_a_lint_error_unless_skipped(cli, tmp_path: Path) -> None:
    bad = email(fields(subject="A miracle cure for dry skin", text=OK_TEXT))
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": CONTACTS, "campaigns/c.yaml": bad})
    assert cli("-w", root, "send", "c", "--at", "2026-11-30T12:00", "--dry-run").exit_code == 1
    refused = cli("-w", root, "send", "c", "--at", "2026-11-30T12:00")
    assert refused.exit_code == 1
    assert "claim.banned" in refused.stderr and "nothing was sent" in refused.stderr
    assert not (root / "outbox").exists()
    sent = cli("-w", root, "send", "c", "--at", "2026-11-30T12:00", "--skip-lint")
    assert sent.exit_code == 0, sent.output
    assert "--skip-lint" in sent.stderr and "NOT run" in sent.stderr
    assert list((root / "outbox").rglob("messages.jsonl"))
