"""`dmops send`: rendering, the outbox, the ledger, idempotency, the lock and the emergency stop."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import duckdb
import pytest

from dmops import ledger
from dmops.errors import IOFailure
from dmops.message import list_unsubscribe_uris, one_click_headers, tokens_match, unsubscribe_token
from dmops.outbox import MANIFEST, MESSAGES, message_id
from dmops.workspace import load_workspace
from tests.conftest import BASIC_WORKSPACE, REFERENCE
from tests.planning import write

WS = BASIC_WORKSPACE

EMAIL = """\
id: promo
name: Promo
channel: email
sender: {from: "Shop <news@shop.example.com>"}
unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"
send_at: "2026-12-01 10:00"
holdout: 0.2
variants:
  - id: a
    subject: "Hi {{ first_name | default('there') }}"
    text: "Hello {{ first_name | default('there') }} <{{ tier }}>\\nBye: {{ unsubscribe_url }}"
    html: "<p>Hello {{ first_name | default('there') }}</p><a href='{{ unsubscribe_url }}'>Unsubscribe</a>"
"""


def contacts(n: int, **override: str) -> str:
    rows = ["contact_id,first_name,email,phone,email_opt_in,sms_opt_in,tier"]
    for i in range(n):
        cid = f"{i:05d}"
        rows.append(override.get(cid, f"{cid},Name{i},u{i}@example.com,+86138{i:08d},yes,yes,gold"))
    return "\n".join(rows) + "\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(40), "campaigns/promo.yaml": EMAIL})


def outbox_messages(root: Path, campaign: str = "promo", occurrence: str = "once") -> list[dict]:
    """Every message in every visible run, after checking each manifest."""
    import hashlib

    messages = []
    folder = root / "outbox" / campaign / occurrence
    for run in (
        sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []
    ):
        manifest = json.loads((run / MANIFEST).read_text())
        data = (run / MESSAGES).read_bytes()
        assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
        assert len(data.splitlines()) == manifest["count"]
        messages += [json.loads(line) for line in data.splitlines()]
    return messages


def ledger_rows(root: Path, kind: str = "message") -> list[tuple]:
    path = root / ".dmops" / "ledger.duckdb"
    if not path.exists():
        return []
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "SELECT contact_id, variant, message_id FROM entries WHERE kind = $k ORDER BY contact_id", {"k": kind}
        ).fetchall()
    finally:
        con.close()


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_send_writes_a_complete_run_and_records_it(cli, root: Path) -> None:
    result = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00")
    assert result.exit_code == 0, result.output
    messages = outbox_messages(root)
    sent = ledger_rows(root)
    held = ledger_rows(root, "holdout")
    assert len(messages) + len(held) == 40 and 20 < len(messages) < 40
    assert f"wrote {len(messages)} messages to outbox/promo/once/run-0001 (0 already sent)" in result.output
    assert [m["contact_id"] for m in messages] == sorted(m["contact_id"] for m in messages)
    assert [(m["contact_id"], m["variant"], m["message_id"]) for m in messages] == sent
    first = messages[0]
    assert list(first) == [
        "message_id",
        "campaign_id",
        "occurrence",
        "contact_id",
        "channel",
        "variant",
        "to",
        "send_after",
        "subject",
        "text",
        "html",
        "headers",
    ]
    assert first["message_id"] == message_id("promo", "once", first["contact_id"])
    assert first["send_after"] == "2026-12-01T02:00:00Z"
    assert first["headers"]["From"] == "Shop <news@shop.example.com>"
    assert first["headers"]["Message-ID"] == f"<{first['message_id']}@shop.example.com>"
    assert first["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = list_unsubscribe_uris(first["headers"]["List-Unsubscribe"])[0]
    assert url.startswith("https://shop.example.com/u/") and url in first["text"]
    token = url.rsplit("/", 1)[1]
    assert first["contact_id"] not in token and "example.com" not in token and len(token) == 22


def test_rerun_sends_nothing_new(cli, root: Path) -> None:
    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00").exit_code == 0
    before = files_under(root / "outbox")
    result = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00")
    assert result.exit_code == 0
    assert "nothing new to send:" in result.output and "already sent" in result.output
    assert files_under(root / "outbox") == before
    assert len(ledger_rows(root)) == len(outbox_messages(root))


def test_limit_stages_the_send_and_the_rest_follows(cli, root: Path) -> None:
    first = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00", "--limit", "5")
    assert first.exit_code == 0, first.output
    assert len(outbox_messages(root)) == 5
    assert len(ledger_rows(root, "holdout")) > 0  # every holdout is recorded at once
    assert "eligible contacts left for a later run" in first.output
    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00").exit_code == 0
    messages = outbox_messages(root)
    ids = [m["contact_id"] for m in messages]
    assert len(ids) == len(set(ids)) == len(ledger_rows(root))
    assert sorted((root / "outbox/promo/once").iterdir())[-1].name == "run-0002"


def test_dry_run_writes_nothing(cli, root: Path) -> None:
    before = files_under(root)
    result = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run:" in result.output and "nothing written" in result.output
    assert "to send for real: dmops send promo" in result.output
    assert files_under(root) == before


def test_same_inputs_give_byte_identical_outboxes(cli, tmp_path: Path) -> None:
    outputs = []
    for name in ("one", "two"):
        ws = write(tmp_path / name, {"dmops.yaml": WS, "contacts.csv": contacts(30), "campaigns/promo.yaml": EMAIL})
        (ws / ".dmops").mkdir()
        (ws / ".dmops" / "secret.key").write_bytes(b"k" * 32)  # the same secret: the same tokens
        assert cli("-w", ws, "send", "promo", "--at", "2026-11-30T12:00").exit_code == 0
        outputs.append(files_under(ws / "outbox"))
    assert outputs[0] == outputs[1]


# --- rendering -----------------------------------------------------------------------------------------------


def test_missing_value_without_default_stops_before_writing(cli, root: Path) -> None:
    campaign = EMAIL.replace("Hi {{ first_name | default('there') }}", "Hi {{ first_name }}").replace(
        "holdout: 0.2", "holdout: 0"
    )
    write(
        root,
        {
            "campaigns/promo.yaml": campaign,
            "contacts.csv": contacts(40, **{"00007": "00007,,u7@example.com,,yes,yes,gold"}),
        },
    )
    result = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00")
    assert result.exit_code == 65
    assert (
        "campaigns/promo.yaml:10, key 'variants[0].subject': 'first_name' is missing or empty for contact 00*07"
        in result.output
    )
    assert "default" in result.output
    assert not (root / "outbox" / "promo" / "once").exists() or not any((root / "outbox/promo/once").iterdir())
    assert ledger_rows(root) == []


@pytest.mark.parametrize("value", ["", '""', "   "])
def test_empty_and_blank_values_use_the_default(cli, root: Path, value: str) -> None:
    assert _send_with_first_name(cli, root, value)["subject"] == "Hi there"


def test_guard_with_if_and_undefined_file_template_line(cli, root: Path) -> None:
    campaign = EMAIL.replace(
        "    text: \"Hello {{ first_name | default('there') }} <{{ tier }}>\\nBye: {{ unsubscribe_url }}\"",
        "    text: campaigns/t.txt.j2",
    )
    template = "Hello{% if first_name %} {{ first_name }}{% endif %},\n\nyour city: {{ city }}\n"
    write(
        root,
        {
            "campaigns/promo.yaml": campaign,
            "campaigns/t.txt.j2": template,
            "contacts.csv": contacts(5).replace("tier\n", "tier,city\n").replace(",gold\n", ",gold,\n"),
        },
    )
    result = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00")
    assert result.exit_code == 65
    assert "campaigns/t.txt.j2:3, key 'variants[0].text': 'city' is missing or empty" in result.output


def _send_with_first_name(cli, root: Path, value: str) -> dict:
    """Send to two contacts, 00001 named ``value`` (a CSV field); the message 00001 got."""
    write(
        root,
        {
            "contacts.csv": contacts(2, **{"00001": f"00001,{value},u1@example.com,,yes,yes,gold"}),
            "campaigns/promo.yaml": EMAIL.replace("holdout: 0.2", "holdout: 0"),
        },
    )
    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00").exit_code == 0
    return {m["contact_id"]: m for m in outbox_messages(root)}["00001"]


def test_html_is_escaped_and_text_is_not(cli, root: Path) -> None:
    name = "<script>alert(1)</script>"
    message = _send_with_first_name(cli, root, f'"{name}"')
    assert message["html"].startswith("<p>Hello &lt;script&gt;alert(1)&lt;/script&gt;</p><a href='https://")
    assert message["text"].startswith(f"Hello {name} <gold>")
    assert message["subject"] == f"Hi {name}"


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ self._TemplateReference__context }}",
        "{{ lipsum.__globals__['os'] }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ request.application.__globals__ }}",
    ],
)
def test_template_injection_fails_safely(cli, root: Path, payload: str) -> None:
    write(
        root,
        {
            "campaigns/promo.yaml": EMAIL.replace(
                "<p>Hello {{ first_name | default('there') }}</p>", payload.replace('"', "'")
            )
        },
    )
    result = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00")
    assert result.exit_code in (65, 78), result.output
    assert "uid=" not in result.output
    assert outbox_messages(root) == []


def test_payload_in_contact_data_is_just_text(cli, root: Path) -> None:
    payload = "{{ 7*7 }}{% print(1) %}"
    assert _send_with_first_name(cli, root, payload)["subject"] == f"Hi {payload}"


@pytest.mark.parametrize("expression", ["'x' * 10**9", "[1] * 10**8", "2 ** 100000", "'ab' * 60000 + 'c'"])
def test_render_budget_stops_huge_output(cli, root: Path, expression: str) -> None:
    write(
        root,
        {
            "campaigns/promo.yaml": EMAIL.replace(
                "<p>Hello {{ first_name | default('there') }}</p>", "{{ " + expression + " }}"
            )
        },
    )
    result = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00")
    assert result.exit_code == 65, result.output
    assert "the template failed for contact" in result.output
    assert outbox_messages(root) == []


def test_loop_output_budget(cli, root: Path) -> None:
    loop = "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"
    write(root, {"campaigns/promo.yaml": EMAIL.replace("<p>Hello {{ first_name | default('there') }}</p>", loop)})
    result = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00")
    assert result.exit_code == 65
    assert "longer than 1,000,000 characters" in result.output


def test_http_unsubscribe_url_is_refused(cli, root: Path) -> None:
    write(root, {"campaigns/promo.yaml": EMAIL.replace("https://shop", "http://shop")})
    result = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00")
    assert result.exit_code == 78
    assert "https" in result.output and "key 'unsubscribe_url'" in result.output
    assert cli("-w", root, "validate").exit_code == 78  # caught before any send


def test_sms_carries_encoding_and_segments(cli, root: Path) -> None:
    sms = textwrap.dedent("""\
        id: sms
        name: SMS
        channel: sms
        variants:
          - {id: a, text: "【好物商城】{{ first_name | default('亲') }}，双12闪购！回复TD退订"}
          - {id: b, text: "Sale today {{ first_name | default('friend') }}! Reply STOP to opt out"}
        """)
    write(root, {"campaigns/sms.yaml": sms})
    assert cli("-w", root, "send", "sms", "--at", "2026-11-30T12:00").exit_code == 0
    messages = outbox_messages(root, "sms")
    by_variant = {m["variant"]: m for m in messages}
    assert by_variant["a"]["encoding"] == "ucs2" and by_variant["a"]["segments"] == 1
    assert by_variant["b"]["encoding"] == "gsm7" and by_variant["b"]["segments"] == 1
    assert by_variant["a"]["subject"] is None and by_variant["a"]["html"] is None and by_variant["a"]["headers"] == {}
    assert by_variant["a"]["to"].startswith("+86138")


def test_an_open_event_for_an_sms_is_imported_with_a_warning(cli, root: Path) -> None:
    sms = 'id: sms\nname: SMS\nchannel: sms\nvariants:\n  - {id: a, text: "Sale today. Reply STOP to opt out"}\n'
    write(root, {"campaigns/sms.yaml": sms})
    assert cli("-w", root, "send", "sms", "--at", "2026-11-30T12:00").exit_code == 0
    ids = [m["message_id"] for m in outbox_messages(root, "sms")][:3]
    rows = [f"open,2026-12-01T03:00:00Z,{i}" for i in ids] + [f"click,2026-12-01T03:01:00Z,{ids[0]}"]
    (root / "ev.csv").write_text("event,ts,message_id\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = cli("-w", root, "events", "import", root / "ev.csv")
    assert result.exit_code == 0
    assert result.stdout.startswith("ev.csv: 4 rows, 4 imported")
    assert result.stderr.splitlines() == [
        "warning: ev.csv: 3 open events for SMS messages, which have no open tracking; imported all the same",
        "warning: ev.csv: 1 click events for SMS messages whose text holds no link; imported all the same",
    ]
    again = cli("-w", root, "events", "import", root / "ev.csv")  # nothing new: nothing to warn about
    assert again.exit_code == 0 and again.stderr == ""


def _click_on_an_sms(cli, root: Path, text: str, files: dict[str, str] | None = None) -> object:
    """Send an SMS campaign whose text is ``text``, then import a click on one of its messages."""
    sms = (
        'id: sms\nname: SMS\nchannel: sms\nunsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"\n'
        f'variants:\n  - {{id: a, text: "{text}"}}\n'
    )
    write(root, {"campaigns/sms.yaml": sms, **(files or {})})
    assert cli("-w", root, "send", "sms", "--at", "2026-11-30T12:00").exit_code == 0
    first = outbox_messages(root, "sms")[0]["message_id"]
    (root / "ev.csv").write_text(f"event,ts,message_id\nclick,2026-12-01T03:01:00Z,{first}\n", encoding="utf-8")
    return cli("-w", root, "events", "import", root / "ev.csv")


@pytest.mark.parametrize(
    ("text", "files"),
    [
        pytest.param(
            "Deals today. Opt out: {{ unsubscribe_url }}", None, id="the unsubscribe_url, no http in the text"
        ),
        pytest.param(
            "templates/sale.txt",
            {"templates/sale.txt": "Deals: https://shop.example.com/sale Reply STOP to opt out"},
            id="a template file",
        ),
    ],
)
def test_a_click_on_an_sms_with_a_link_is_imported_without_a_warning(cli, root: Path, text: str, files) -> None:
    result = _click_on_an_sms(cli, root, text, files)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_a_click_on_an_sms_whose_campaign_is_gone_is_imported_without_a_warning(cli, root: Path) -> None:
    """Whether its text held a link cannot be told once the campaign file is gone: nothing is said."""
    sms = 'id: sms\nname: SMS\nchannel: sms\nvariants:\n  - {id: a, text: "Sale today. Reply STOP to opt out"}\n'
    write(root, {"campaigns/sms.yaml": sms})
    assert cli("-w", root, "send", "sms", "--at", "2026-11-30T12:00").exit_code == 0
    first = outbox_messages(root, "sms")[0]["message_id"]
    (root / "campaigns" / "sms.yaml").unlink()
    (root / "ev.csv").write_text(f"event,ts,message_id\nclick,2026-12-01T03:01:00Z,{first}\n", encoding="utf-8")
    result = cli("-w", root, "events", "import", root / "ev.csv")
    assert result.exit_code == 0, result.output
    assert "1 imported" in result.stdout and result.stderr == ""


# --- the emergency stop and the lock -------------------------------------------------------------------------


def test_stop_before_send_exits_75_and_writes_nothing(cli, root: Path) -> None:
    assert cli("-w", root, "stop", "--reason", "wrong price").exit_code == 0
    result = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00")
    assert result.exit_code == 75
    assert "sending is stopped: wrong price" in result.output
    assert outbox_messages(root) == [] and ledger_rows(root) == []
    assert cli("-w", root, "resume").exit_code == 0
    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00").exit_code == 0


def test_stop_during_send_keeps_outbox_and_ledger_consistent(root: Path, monkeypatch) -> None:
    from datetime import UTC, datetime

    import dmops.send as sending
    from dmops.campaign import load_campaign
    from dmops.runlock import request_stop, resume
    from dmops.send import StoppedDuringSend, send
    from dmops.workspace import load_workspace

    write(root, {"contacts.csv": contacts(400)})
    monkeypatch.setattr(sending, "BATCH", 50)
    ws = load_workspace(root)
    campaign = load_campaign(root / "campaigns/promo.yaml", ws)
    at = datetime(2026, 11, 30, 4, tzinfo=UTC)

    def stop_after_first_batch(done: int, total: int) -> None:
        if done >= 50:
            request_stop(ws, "halt")

    with pytest.raises(StoppedDuringSend) as caught:
        send(ws, campaign, at, progress=stop_after_first_batch)
    assert caught.value.exit_code == 75
    partial = outbox_messages(root)
    assert len(partial) == 50 and len(ledger_rows(root)) == 50
    resume(ws)
    send(ws, campaign, at)
    messages = outbox_messages(root)
    ids = [m["contact_id"] for m in messages]
    assert len(ids) == len(set(ids)) == len(ledger_rows(root)) > 50


HOLD_LOCK = """
import sys, time
from pathlib import Path
from dmops.runlock import RunLock
with RunLock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""

HOLD_LEDGER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
"""


def _holder(script: str, arg: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(arg)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_send_exits_75_naming_the_holder(cli, root: Path) -> None:
    holder = _holder(HOLD_LOCK, root / ".dmops")
    try:
        result = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00")
        assert result.exit_code == 75
        assert f"another dmops send is running in this workspace (pid {holder.pid})" in result.output
    finally:
        holder.communicate("")
    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00").exit_code == 0


def test_a_lock_left_by_a_killed_process_does_not_block(cli, root: Path) -> None:
    holder = _holder(HOLD_LOCK, root / ".dmops")
    holder.kill()
    holder.wait()
    assert (root / ".dmops" / "send.lock").exists()
    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00").exit_code == 0


def test_plan_says_clearly_when_a_send_holds_the_ledger(cli, root: Path) -> None:
    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00", "--limit", "1").exit_code == 0
    holder = _holder(HOLD_LEDGER, root / ".dmops" / "ledger.duckdb")
    try:
        result = cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00")
        assert result.exit_code == 75
        assert "the ledger is in use by a running send" in result.output
    finally:
        holder.communicate("")


# --- RFC 8058 and .eml ---------------------------------------------------------------------------------------


def test_exported_eml_parses_with_one_click_headers(cli, root: Path, tmp_path: Path) -> None:
    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00").exit_code == 0
    result = cli("-w", root, "outbox", "export", "--eml", tmp_path / "eml")
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "eml").glob("*.eml"))
    assert len(files) == len(outbox_messages(root))
    parsed = message_from_bytes(files[0].read_bytes(), policy=default_policy)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [uri] = list_unsubscribe_uris(str(parsed["List-Unsubscribe"]))
    assert uri.startswith("https://shop.example.com/u/")
    assert parsed["Message-ID"].startswith("<") and parsed["From"] == "Shop <news@shop.example.com>"
    assert parsed.get_body(("plain",)).get_content().startswith("Hello Name")
    assert parsed.get_body(("html",)).get_content().startswith("<p>Hello Name")
    again = cli("-w", root, "outbox", "export", "--eml", tmp_path / "eml")
    assert again.exit_code == 73  # never overwrites
    named = again.stderr.removeprefix("error: ").split(": an .eml file already exists (export into an empty folder)")
    assert len(named) == 2 and Path(named[0]) in files  # the .eml that is in the way, not a staging file
    assert sorted((tmp_path / "eml").iterdir()) == files  # no staging file left behind


RFC8058 = json.loads((REFERENCE / "list_unsubscribe_rfc8058.json").read_text())


@pytest.mark.parametrize("vector", RFC8058["render_vectors"])
def test_rfc8058_render_vectors(vector: dict) -> None:
    base, token, expect = vector["base_url"], vector["token"], vector["expect"]
    url = base.rstrip("/") + "/" + token  # the vectors join base and token; in dmops the URL template does
    if expect == "error_non_https":
        with pytest.raises(ValueError):
            one_click_headers(url)
        return
    if expect == "error_empty_token":
        # dmops never has an empty token to put in (HMAC output, 22 URL-safe characters, whatever the ids),
        # and an empty token presented back never validates
        for campaign, contact in (("", ""), ("promo", ""), ("", "00001"), ("promo", "00001")):
            assert re.fullmatch(r"[A-Za-z0-9_-]{22}", unsubscribe_token(b"k" * 32, campaign, contact))
        assert tokens_match("", "") is False
        assert tokens_match(unsubscribe_token(b"k" * 32, "promo", "00001"), "") is False
        return
    headers = one_click_headers(url)
    if "https_uri" in expect:
        assert list_unsubscribe_uris(headers["List-Unsubscribe"]) == [expect["https_uri"]]
    if "headers" in expect:
        assert headers == expect["headers"] and len(headers) == expect["header_count"]
    if "https_uri_contains" in expect:
        assert expect["https_uri_contains"] in headers["List-Unsubscribe"]
    if "token_validates" in expect:
        assert tokens_match(token, token) is expect["token_validates"]


@pytest.mark.parametrize("vector", RFC8058["token_validation_vectors"])
def test_rfc8058_token_validation_vectors(vector: dict) -> None:
    assert tokens_match(vector["token"], vector["candidate"]) is vector["valid"]


@pytest.mark.parametrize("vector", RFC8058["parse_vectors"])
def test_rfc8058_parse_vectors(vector: dict) -> None:
    assert list_unsubscribe_uris(vector["header"]) == vector["uris"]


@pytest.mark.parametrize("engine", ["sql", "jinja"])
def test_message_ids_are_the_documented_hash_in_outbox_and_ledger(root: Path, engine: str) -> None:
    # outbox.message_id's contract: the first 32 hex digits of sha256(campaign US occurrence US contact_id);
    # both rendering engines and the ledger insert must produce it, for a dated occurrence and zero-padded ids.
    import hashlib

    write(root, {"campaigns/promo.yaml": EMAIL + "recurrence: weekly\n"})
    _send_in_process(root, engine=engine)
    messages = outbox_messages(root, occurrence="2026-W49")
    assert messages
    for m in messages:
        expected = hashlib.sha256(f"promo\x1f2026-W49\x1f{m['contact_id']}".encode()).hexdigest()[:32]
        assert m["message_id"] == expected == message_id("promo", "2026-W49", m["contact_id"])
    assert ledger_rows(root) == [(m["contact_id"], m["variant"], m["message_id"]) for m in messages]


def test_tokens_differ_per_campaign_and_contact_and_secret() -> None:
    a = unsubscribe_token(b"s" * 32, "promo", "00001")
    assert a == unsubscribe_token(b"s" * 32, "promo", "00001")
    assert (
        len(
            {
                a,
                unsubscribe_token(b"s" * 32, "other", "00001"),
                unsubscribe_token(b"s" * 32, "promo", "00002"),
                unsubscribe_token(b"t" * 32, "promo", "00001"),
            }
        )
        == 4
    )


def _send_in_process(root: Path, **kwargs: object) -> object:
    from datetime import UTC, datetime

    from dmops.campaign import load_campaign
    from dmops.send import send
    from dmops.workspace import load_workspace

    ws = load_workspace(root)
    return send(ws, load_campaign(root / "campaigns/promo.yaml", ws), datetime(2026, 11, 30, 4, tzinfo=UTC), **kwargs)


def test_rendering_on_every_core_writes_the_same_bytes(tmp_path: Path, monkeypatch) -> None:
    import dmops.send as sending

    monkeypatch.setattr(sending, "BATCH", 7)
    runs = []
    for name, parallel_min in (("one", 10**9), ("many", 10)):
        monkeypatch.setattr(sending, "PARALLEL_MIN", parallel_min)
        ws = write(tmp_path / name, {"dmops.yaml": WS, "contacts.csv": contacts(60), "campaigns/promo.yaml": EMAIL})
        (ws / ".dmops").mkdir()
        (ws / ".dmops" / "secret.key").write_bytes(b"k" * 32)
        _send_in_process(ws, engine="jinja")
        runs.append((ws / "outbox/promo/once/run-0001" / MESSAGES).read_bytes())
    assert runs[0] == runs[1] and runs[0].count(b"\n") > 30


def test_a_render_error_in_a_worker_names_file_line_and_contact(tmp_path: Path, monkeypatch) -> None:
    import dmops.send as sending
    from dmops.errors import DataError

    monkeypatch.setattr(sending, "BATCH", 5)
    monkeypatch.setattr(sending, "PARALLEL_MIN", 10)
    campaign = EMAIL.replace("Hi {{ first_name | default('there') }}", "Hi {{ first_name }}").replace(
        "holdout: 0.2", "holdout: 0"
    )
    ws = write(
        tmp_path / "ws",
        {
            "dmops.yaml": WS,
            "campaigns/promo.yaml": campaign,
            "contacts.csv": contacts(40, **{"00033": "00033,,u33@example.com,,yes,yes,gold"}),
        },
    )
    with pytest.raises(DataError) as caught:
        _send_in_process(ws, engine="jinja")
    assert caught.value.location.key == "variants[0].subject" and caught.value.location.line == 10
    assert "contact 00*33" in caught.value.message
    assert outbox_messages(ws) == []


def test_an_outbox_run_that_does_not_match_its_manifest_is_refused(cli, root: Path, tmp_path: Path) -> None:
    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00").exit_code == 0
    run = root / "outbox" / "promo" / "once" / "run-0001"
    messages, manifest = (run / MESSAGES).read_bytes(), (run / MANIFEST).read_text()
    where = "error: outbox/promo/once/run-0001: "

    def export() -> tuple[int, str]:
        target = tmp_path / f"eml-{len(list(tmp_path.iterdir()))}"
        result = cli("-w", root, "outbox", "export", "--eml", target)
        return result.exit_code, result.stderr.strip()

    changed = f"{where}outbox run does not match its manifest (the file was changed after dmops wrote it)"
    (run / MESSAGES).write_bytes(messages + messages.splitlines(keepends=True)[0])  # one line more
    assert export() == (74, changed)
    (run / MESSAGES).write_bytes(messages.replace(b"Hello", b"Hallo", 1))  # same count, other bytes
    assert export() == (74, changed)
    (run / MESSAGES).write_bytes(messages)
    count = json.loads(manifest)["count"]
    (run / MANIFEST).write_text(manifest.replace(f'"count": {count}', f'"count": {count + 1}'))  # same bytes
    assert export() == (74, changed)
    (run / MANIFEST).write_text("{not json")
    assert export() == (74, f"{where}cannot read outbox run (JSONDecodeError)")
    (run / MANIFEST).write_text(manifest.replace('"sha256"', '"sha"'))  # a count but no sha256
    assert export() == (74, f"{where}outbox run has no valid manifest (the manifest was changed after dmops wrote it)")
    (run / MANIFEST).write_text('{"count": "3", "sha256": null}')
    assert export() == (74, f"{where}outbox run has no valid manifest (the manifest was changed after dmops wrote it)")
    (run / MANIFEST).write_text(manifest)
    (run / MESSAGES).unlink()
    assert export() == (74, f"{where}cannot read outbox run (FileNotFoundError)")
    (run / MANIFEST).unlink()
    assert export() == (74, f"{where}cannot read outbox run (FileNotFoundError)")


def test_recovery_refuses_a_run_whose_manifest_cannot_be_read(cli, root: Path) -> None:
    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00").exit_code == 0
    (root / ".dmops" / "ledger.duckdb").unlink()  # the run is now one the ledger has not recorded
    (root / "outbox" / "promo" / "once" / "run-0001" / MANIFEST).write_text("[]")
    result = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00")
    assert (result.exit_code, result.stderr.strip()) == (
        74,
        "error: outbox/promo/once/run-0001: outbox run has no valid manifest "
        "(the manifest was changed after dmops wrote it)",
    )


def test_the_manifest_is_pinned(cli, root: Path) -> None:
    # SPEC §7: manifest.json holds the count and sha256 of messages.jsonl; consumers read these exact keys.
    import hashlib

    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00").exit_code == 0
    run = root / "outbox" / "promo" / "once" / "run-0001"
    data = (run / MESSAGES).read_bytes()
    assert (run / MANIFEST).read_text(encoding="utf-8") == (
        "{\n"
        '  "at": "2026-11-30T04:00:00Z",\n'
        '  "campaign_id": "promo",\n'
        '  "channel": "email",\n'
        f'  "count": {len(data.splitlines())},\n'
        '  "file": "messages.jsonl",\n'
        '  "occurrence": "once",\n'
        '  "purpose": "marketing",\n'
        '  "run": "run-0001",\n'
        f'  "sha256": "{hashlib.sha256(data).hexdigest()}"\n'
        "}\n"
    )


def test_only_run_folders_are_runs(cli, root: Path, tmp_path: Path) -> None:
    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00").exit_code == 0
    folder = root / "outbox" / "promo" / "once"
    (folder / "run-0009").write_text("a file, not a run folder\n")  # named like a run: still not one
    (folder / "notes").mkdir()
    result = cli("-w", root, "outbox", "export", "--eml", tmp_path / "eml")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "eml").iterdir())) == len(ledger_rows(root)) > 0


# --- opening the ledger ---------------------------------------------------------------------------------------

EVENTS = "event,ts,message_id\n"  # a header only: the ledger is opened before any row is read


def test_events_import_says_the_ledger_is_in_use_and_names_it(cli, root: Path) -> None:
    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00", "--limit", "1").exit_code == 0
    (root / "ev.csv").write_text(EVENTS, encoding="utf-8")
    holder = _holder(HOLD_LEDGER, root / ".dmops" / "ledger.duckdb")
    try:
        result = cli("-w", root, "events", "import", "ev.csv")
    finally:
        holder.communicate("")
    assert result.exit_code == 75
    assert "error: .dmops/ledger.duckdb: the ledger is in use by another dmops process" in result.output


def test_a_ledger_that_is_not_a_database_is_an_io_error_naming_it(cli, root: Path) -> None:
    (root / ".dmops").mkdir()
    (root / ".dmops" / "ledger.duckdb").write_bytes(b"not a database " * 400)
    result = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00")
    assert result.exit_code == 74
    assert "error: .dmops/ledger.duckdb: cannot open the ledger (IOException)" in result.output
    assert not (root / "outbox").exists()


def test_a_state_folder_that_cannot_be_made_is_named(cli, root: Path) -> None:
    (root / "dmops.yaml").write_text(WS + "state_dir: blocked/state\n", encoding="utf-8")
    (root / "blocked").write_text("a file where the state folder's parent should be\n", encoding="utf-8")
    result = cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00")
    assert result.exit_code == 73
    assert "blocked/state" in result.output and "Not a directory" in result.output
    # the ledger, opened on its own (as the seeding API does), says the same as an I/O error
    with pytest.raises(IOFailure) as caught:
        ledger.open_for_writing(load_workspace(root))
    assert caught.value.message == "cannot create the state folder: Not a directory"
    assert caught.value.location.file == root / "blocked" / "state"


def test_the_ledger_makes_missing_parent_folders(root: Path) -> None:
    (root / "dmops.yaml").write_text(WS + "state_dir: var/lib/dmops\n", encoding="utf-8")
    ledger.open_for_writing(load_workspace(root)).close()
    assert (root / "var" / "lib" / "dmops" / "ledger.duckdb").is_file()


def test_a_nested_state_folder_is_created_and_records_the_schema_version(cli, root: Path) -> None:
    (root / "dmops.yaml").write_text(WS + "state_dir: var/lib/dmops\n", encoding="utf-8")
    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00").exit_code == 0
    con = duckdb.connect(str(root / "var" / "lib" / "dmops" / "ledger.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT * FROM meta").fetchall() == [("schema_version", "4")]
        assert con.execute("SELECT count(*) FROM entries WHERE kind = 'message'").fetchall()[0][0] > 0
    finally:
        con.close()


def test_at_is_truncated_to_whole_seconds_in_what_is_recorded(cli, root: Path) -> None:
    # SPEC §5: --at is truncated to whole seconds; with no send_at, the run's instant is the send time.
    from datetime import datetime

    (root / "campaigns/promo.yaml").write_text(EMAIL.replace('send_at: "2026-12-01 10:00"\n', ""), encoding="utf-8")
    assert cli("-w", root, "send", "promo", "--at", "2026-11-30T12:00:00.999999Z").exit_code == 0
    con = duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True)
    try:
        planned = {row[0] for row in con.execute("SELECT DISTINCT planned_at FROM entries").fetchall()}
    finally:
        con.close()
    assert planned == {datetime(2026, 11, 30, 12, 0, 0)}


def test_a_click_on_an_sms_with_a_link_is_no_surprise(cli, root: Path) -> None:
    sms = (
        'id: sms\nname: SMS\nchannel: sms\nvariants:\n  - {id: a, text: "Sale: https://s.example/x STOP to opt out"}\n'
    )
    write(root, {"campaigns/sms.yaml": sms})
    assert cli("-w", root, "send", "sms", "--at", "2026-11-30T12:00").exit_code == 0
    first = outbox_messages(root, "sms")[0]["message_id"]
    (root / "ev.csv").write_text(f"event,ts,message_id\nclick,2026-12-01T03:01:00Z,{first}\n", encoding="utf-8")
    result = cli("-w", root, "events", "import", root / "ev.csv")
    assert result.exit_code == 0 and result.stderr == ""


def test_a_run_larger_than_one_read_is_checked_whole(tmp_path: Path) -> None:
    """verified_messages reads in chunks: a run of several chunks is counted and hashed across all of them."""
    from dmops.outbox import CHUNK, RunWriter, verified_messages

    writer = RunWriter.start(tmp_path / "outbox" / "promo" / "once", tmp_path)
    line = b'{"message_id":"m","text":"' + b"x" * 1000 + b'"}\n'
    count = (3 * CHUNK) // len(line) + 7  # a little over three chunks
    writer.write_lines(line * count, count)
    run = writer.finish({"campaign_id": "promo"})
    assert verified_messages(run) == run / MESSAGES  # every line counted, every chunk hashed
    (run / MESSAGES).write_bytes(line * (count - 1) + line.replace(b"x", b"y"))  # the last chunk differs
    with pytest.raises(IOFailure, match="does not match its manifest"):
        verified_messages(run)
    (run / MESSAGES).unlink()
    with pytest.raises(IOFailure) as caught:
        verified_messages(run)
    assert caught.value.message == "cannot read outbox run (FileNotFoundError)" and caught.value.location.file == run
