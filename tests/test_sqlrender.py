"""The compiled SQL rendering path writes exactly the bytes the Jinja path writes."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmops.campaign import load_campaign
from dmops.errors import ConfigError, DataError, DmopsError
from dmops.message import unsubscribe_token
from dmops.outbox import MESSAGES
from dmops.send import send
from dmops.sqlrender import (
    Unsupported,
    compile_run,
    hmac_pads,
    is_missing,
    json_string,
    python_strip,
    python_whitespace,
    token_sql,
)
from dmops.traits import TRAITS
from dmops.workspace import load_workspace
from tests.conftest import BASIC_WORKSPACE
from tests.planning import write

AT = datetime(2026, 11, 30, 4, tzinfo=UTC)
WS = BASIC_WORKSPACE
HEADER = ["contact_id", "first_name", "tier", "city", "note", "orders", "score", "last_order_at"]
# Values that differ between naive SQL and Jinja: blanks of every kind, HTML specials, control
# characters, the text "\u00", non-BMP characters, case mappings that change length.
ODD = [
    ["Zoë", "gold", "São Paulo", "<b>\"Tom\" & 'Jerry'</b>", "3", "1.5", "2026-01-02"],
    ["", "   ", "", "line1\nline2\ttab", "", "", ""],
    ["  张伟 ", "silver", "北京", '\x0bvt\x1fus \\u00 back\\slash "q"', "12", "-0.25", "2025-12-31"],
    ["😀 Emoji", "silver", "İstanbul", "ß" * 40 + " ﬁ ǅ", "0", "1e3", ""],
    ["\u3000", "\u00a0", "\t", "\u2028sep\u0085nel", "7", "", "2026-11-01"],
    ["O'Brien", "gold ", "New York", "€{[~]}^|\\", "2", "3.0", "2026-06-30"],
    ["ǅemal ﬁx", "bronze", "straße", "a" * 300, "5", "0.1", "2026-02-28"],
    ["x\x1fy", "gold", "Zürich", "\r\n", "1", "2", "2026-03-01"],
    ["Curly", "", "", "{}" * 50 + "[~]" * 10, "4", "", ""],
]


def contacts_csv(rows: int = 40) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*HEADER, "email", "phone", "email_opt_in", "sms_opt_in"])
    for i in range(rows):
        odd = ODD[i % len(ODD)]
        values = odd if i < len(ODD) else [f"Name{i}", ["gold", "silver", ""][i % 3], "", "", str(i), "", ""]
        writer.writerow([f"c{i:03d}", *values, f"u{i}@example.com", f"+86138{i:08d}", "yes", "yes"])
    return out.getvalue()


def email_campaign(
    variants: list[dict[str, str]], unsubscribe: str = "https://x.example/u/{{ unsubscribe_token }}"
) -> str:
    body = {
        "id": "promo",
        "name": "Promo",
        "channel": "email",
        "sender": {"from": "Shop <news@shop.example.com>", "reply_to": "help@shop.example.com"},
        "unsubscribe_url": unsubscribe,
        "send_at": "2026-12-01 10:00",
        "holdout": 0,
        "variants": [{"id": chr(ord("a") + i), "weight": 1, **v} for i, v in enumerate(variants)],
    }
    return json.dumps(body, ensure_ascii=False)  # JSON is YAML


CORPUS = {
    "defaults and escaping": [
        {
            "subject": "Hi {{ first_name | default('there') }} & co",
            "text": "Tier: {{ tier | default('none') }}\nNote: {{ note | default('<none>') }}\n",
            "html": "<p>{{ note | default('<none>') }} {{ first_name | d('\"friend\"') }}</p>",
        },
        {"subject": "{{ city | default('') }}!", "text": "{{ first_name | default('x', true) }}"},
    ],
    "filters": [
        {
            "subject": "{{ first_name | default('friend') | title }}",
            "text": (
                "{{ first_name | default('x') | upper }} {{ city | default('?') | lower }} "
                "{{ note | default('') | truncate(20) }} {{ first_name | default('') | replace('a', '&') }} "
                "{{ note | default('-') | length }} {{ city | default('') | capitalize }} {{ note | default('') | trim }}"
            ),
            "html": "{{ first_name | default('x') | upper }} {{ note | default('') | e }} {{ city | default('') | safe }}",
        },
    ],
    "if blocks": [
        {
            "subject": "{% if first_name %}{{ first_name }}{% else %}friend{% endif %}",
            "text": (
                "{% if tier | default('') == 'gold' %}G{% elif tier | default('') == 'silver' %}S{% else %}O{% endif %}"
                " {% if not city %}nocity{% endif %}\n"
                "{%- if orders and orders > 2 %} big {{ orders }}{% endif -%}\n"
                "{% if first_name and city %}{{ first_name }} in {{ city }}{% elif first_name %}{{ first_name }}"
                "{% else %}someone{% endif %} end\n"
            ),
            "html": "{% if note %}<p>{{ note }}</p>{% endif %}{% if tier | default('') == tier | default('') %}same{% endif %}",
        },
        {"subject": "{% if campaign == 'promo' and variant == 'b' %}B{% endif %}", "text": "{{ variant }}"},
    ],
    "numbers and dates": [
        {
            "subject": "{{ orders | default(0) }} orders",
            "text": (
                "{{ score | default('n/a') }} {{ last_order_at | default('never') }} {{ (orders | default(0)) * 2 }} "
                "{{ '%.2f' | format(score | default(0)) }} {{ orders | default(0) + 1 }}"
            ),
        },
    ],
    "built-ins": [
        {
            "subject": "{{ campaign }}/{{ variant }}",
            "text": "{{ unsubscribe_url }} {{ unsubscribe_token }} {{ contact_id }} {{ email }}",
            "html": '<a href="{{ unsubscribe_url }}">{{ campaign | upper }}</a> {{ contact_id }} {{ email }}',
        },
    ],
    "headers through contact": [
        {
            "subject": "{{ contact['first_name'] | default('there') }}, {{ contact[\"city\"] | d('?') }}",
            "text": "{{ contact['orders'] | default(0) }} {% if contact['tier'] %}T{{ contact['tier'] }}{% endif %}",
            "html": "<p>{{ contact['note'] | default('<none>') }} {{ contact['score'] | default(0) + 1 }}</p>",
        },
    ],
    "whitespace, raw and constants": [
        {
            "subject": "  {{- first_name | default('x') -}}  !",
            "text": "{% raw %}{{ not a variable }}{% endraw %}\n{# a comment #}{{ '<literal> & \"q\"' }}\n\n",
            "html": "{{ '<literal> & \"q\"' }}{{ 42 }}{{ none | default('n') }}",
        },
    ],
}


def _pair(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    """Two identical workspaces sharing one token secret."""
    roots = []
    for name in ("jinja", "sql"):
        root = write(tmp_path / name, {"dmops.yaml": WS, "contacts.csv": contacts_csv(), **files})
        (root / ".dmops").mkdir()
        (root / ".dmops" / "secret.key").write_bytes(b"s" * 32)
        roots.append(root)
    return roots[0], roots[1]


def _send(root: Path, engine: str, name: str = "promo") -> bytes:
    ws = load_workspace(root)
    result = send(ws, load_campaign(root / f"campaigns/{name}.yaml", ws), AT, engine=engine)
    assert result.folder is not None
    return (result.folder / MESSAGES).read_bytes()


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_compiled_and_jinja_messages_are_byte_identical(tmp_path: Path, case: str) -> None:
    jinja_root, sql_root = _pair(tmp_path, {"campaigns/promo.yaml": email_campaign(CORPUS[case])})
    expected = _send(jinja_root, "jinja")
    got = _send(sql_root, "sql")  # "sql" raises Unsupported rather than falling back
    assert got == expected
    assert expected.count(b"\n") == 40


def test_the_unsubscribe_url_is_stripped_and_escaped_alike(tmp_path: Path) -> None:
    url = " https://x.example/u/{{ unsubscribe_token }}?c={{ campaign }}&id={{ contact_id }}&n={{ first_name | default('') }}\u3000"
    variants = [{"subject": "s", "text": "{{ unsubscribe_url }}", "html": "<a href='{{ unsubscribe_url }}'>x</a>"}]
    jinja_root, sql_root = _pair(tmp_path, {"campaigns/promo.yaml": email_campaign(variants, url)})
    expected = _send(jinja_root, "jinja")
    assert _send(sql_root, "sql") == expected
    first = json.loads(expected.splitlines()[0])
    assert first["headers"]["List-Unsubscribe"].startswith("<https://x.example/u/")
    assert "&amp;id=" in first["html"] and "&id=" in first["text"]


SMS = """\
id: promo
name: SMS
channel: sms
send_at: "2026-12-01 10:00"
holdout: 0
variants:
  - id: all
    text: "{{ first_name | default('') }} {{ note | default('') }}{{ note | default('') }} Reply STOP"
"""


def test_sms_encoding_and_segments_match_the_python_count(tmp_path: Path) -> None:
    jinja_root, sql_root = _pair(tmp_path, {"campaigns/promo.yaml": SMS})
    expected = _send(jinja_root, "jinja")
    assert _send(sql_root, "sql") == expected
    messages = [json.loads(line) for line in expected.splitlines()]
    # the corpus reaches every branch: one part, several parts, and several parts with escape or surrogate pairs
    multi = [m for m in messages if m["segments"] > 1]
    assert any(m["encoding"] == "gsm7" and m["segments"] == 1 for m in messages)
    assert any(m["encoding"] == "gsm7" and "{" in m["text"] for m in multi)
    assert any(m["encoding"] == "ucs2" and "😀" in m["text"] for m in multi)
    assert any(m["encoding"] == "ucs2" and "😀" not in m["text"] for m in multi)


def _errors_on_both_paths(tmp_path: Path, campaign: str, kind: type[Exception]) -> list[tuple[object, ...]]:
    """(message, line, key) of the error each engine raises; neither leaves a visible run."""
    jinja_root, sql_root = _pair(tmp_path, {"campaigns/promo.yaml": campaign})
    errors = []
    for root, engine in ((jinja_root, "jinja"), (sql_root, "sql")):
        with pytest.raises(kind) as caught:
            _send(root, engine)
        error = caught.value
        assert isinstance(error, DmopsError)
        errors.append((error.message, error.location.line, error.location.key))
        assert not list((root / "outbox").rglob(MESSAGES))
    return errors


def test_a_missing_value_raises_the_same_error_on_both_paths(tmp_path: Path) -> None:
    variants = [{"subject": "Hi {{ first_name }}", "text": "{% if tier == 'gold' %}x{% endif %}"}]
    errors = _errors_on_both_paths(tmp_path, email_campaign(variants), DataError)
    assert errors[0] == errors[1] and "first_name" in str(errors[0][0])


def test_a_failing_if_test_raises_the_same_error_on_both_paths(tmp_path: Path) -> None:
    variants = [{"subject": "s", "text": "{% if tier == 'gold' %}gold{% endif %}"}]
    errors = _errors_on_both_paths(tmp_path, email_campaign(variants), DataError)
    assert errors[0] == errors[1] and "tier" in str(errors[0][0])


def test_an_unsubscribe_url_that_is_not_https_is_refused_on_both_paths(tmp_path: Path) -> None:
    campaign = email_campaign([{"subject": "s", "text": "t"}], "{{ city | default('http://x.example') }}")
    errors = _errors_on_both_paths(tmp_path, campaign, ConfigError)
    assert errors[0] == errors[1] and "https" in str(errors[0][0])


@pytest.mark.parametrize(
    "text",
    [
        "{% for i in range(2) %}{{ i }}{% endfor %}",
        "{% set x = first_name | default('') %}{{ x }}",
        "{{ unsubscribe_url | upper }}",
        "{% macro m() %}x{% endmacro %}{{ m() }}",
    ],
)
def test_templates_beyond_the_compiled_subset_fall_back_to_jinja(tmp_path: Path, text: str) -> None:
    variants = [{"subject": "s", "text": text}]
    jinja_root, sql_root = _pair(tmp_path, {"campaigns/promo.yaml": email_campaign(variants)})
    ws = load_workspace(sql_root)
    with pytest.raises(Unsupported):
        compile_run(load_campaign(sql_root / "campaigns/promo.yaml", ws), dict.fromkeys(HEADER, "VARCHAR"))
    assert _send(sql_root, "auto") == _send(jinja_root, "jinja")


def test_the_sample_workspace_campaigns_compile(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    root = tmp_path / "ws"
    shutil.copytree(repo / "campaigns", root / "campaigns")
    shutil.copy(repo / "dmops.yaml", root / "dmops.yaml")
    ws = load_workspace(root)
    for path in sorted((root / "campaigns").glob("*.yaml")):
        columns = {"first_name": "VARCHAR", "tier": "VARCHAR", "city": "VARCHAR", **TRAITS}
        compile_run(load_campaign(path, ws), columns)


# --- the SQL building blocks against their Python definitions ---------------------------------


def test_json_string_matches_python_for_every_bmp_character() -> None:
    con = duckdb.connect()
    strings = ["a" + chr(cp) + "\\u00" + chr(cp) for cp in range(0x10000) if not 0xD800 <= cp < 0xE000]
    strings += [chr(cp) for cp in (0x10000, 0x1F600, 0x10FFFF)] + ["", "\\", '"', "\\u001F"]
    rows = con.execute(
        f"SELECT s, {json_string('s')} FROM (SELECT unnest($s::VARCHAR[]) AS s)", {"s": strings}
    ).fetchall()
    wrong = [(s, got) for s, got in rows if got != json.dumps(s, ensure_ascii=False)]
    assert wrong == [] and len(rows) == len(strings)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=20))
def test_strip_and_blank_match_python(values: list[str]) -> None:
    values = [v.replace("\x00", "") for v in values]
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT s, {python_strip('s')}, {is_missing('s')} FROM (SELECT unnest($s::VARCHAR[]) AS s)", {"s": values}
    ).fetchall()
    for value, stripped, missing in rows:
        assert stripped == value.strip()
        assert missing == (not value.strip())


def test_python_whitespace_is_complete() -> None:
    assert python_whitespace() == "".join(ch for ch in map(chr, range(0x110000)) if ch.isspace())


@pytest.mark.parametrize("secret", [b"k" * 32, b"", b"x" * 64, bytes(range(200))])
def test_the_sql_token_is_the_hmac_token(secret: bytes) -> None:
    con = duckdb.connect()
    ipad, opad = hmac_pads(secret)
    ids = ["c1", "张伟", "with space", "x" * 100]
    rows = con.execute(
        f"SELECT contact_id, {token_sql('camp-1')} FROM (SELECT unnest($ids::VARCHAR[]) AS contact_id) AS _dm_send",
        {"ids": ids, "ipad": ipad, "opad": opad},
    ).fetchall()
    assert rows == [(i, unsubscribe_token(secret, "camp-1", i)) for i in ids]
