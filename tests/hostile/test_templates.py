"""Hostile templates: every render ends within its budget with exit 65 (send) or a lint finding, never hangs.

A workspace is often someone else's repository: its templates are input, not code. Each template
below used to run forever, exhaust memory or end in a traceback; each must now stop within 5 s
(the budget is 2 s per part), name the template's file and line, and leave the run lock free.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmops.cli import app
from tests.planning import write
from tests.test_send import WS, contacts

HOSTILE = {
    "nested loops that print nothing": (
        "{% for x in range(10**5) %}{% for y in range(10**5) %}{% endfor %}{% endfor %}"
    ),
    "a tower of powers": "{{ (((9**999)**999)**999) > 0 }}",
    "replace that multiplies": "{% set s = 'x' * 100000 %}{{ (s|replace('x', s))|length }}",
    "a doubling ~ chain": (
        "{% set ns = namespace(s='xxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}"
    ),
    "a squaring loop": (
        "{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n > 0 }}"
    ),
    "a printf width": "{{ '%999999999d' % 1 }}",
    "a format width": "{{ '{:>999999999}'.format(1) }}",
    "a center method": "{{ 'x'.center(999999999) }}",
    "a center filter": "{{ 'x'|center(999999999) }}",
    "a join of copies": "{% set s = 'x' * 100000 %}{{ ([s] * 100000)|join }}",
}


def campaign(text: str) -> str:
    return (
        "id: promo\nname: Promo\nchannel: email\npurpose: transactional\n"
        'sender: {from: "Shop <news@shop.example.com>"}\nsend_at: "2026-12-01 10:00"\n'
        'variants:\n  - id: a\n    subject: "Hi"\n    text: |\n      Hello\n      ' + text + "\n"
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(5)})


def run(root: Path, *args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    result = CliRunner().invoke(app, ["-w", str(root), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stderr + result.stdout, time.monotonic() - started


@pytest.mark.parametrize("name", list(HOSTILE))
def test_send_stops_within_the_budget(root: Path, name: str) -> None:
    write(root, {"campaigns/promo.yaml": campaign(HOSTILE[name])})
    code, output, took = run(root, "send", "promo", "--at", "2026-11-30T12:00", "--skip-lint")
    assert took < 5, f"{name}: {took:.1f} s"
    assert code == 65, output
    assert "error: campaigns/promo.yaml:10, key 'variants[0].text': the template failed for contact" in output
    assert not (root / "outbox").exists() or not any((root / "outbox").rglob("messages.jsonl"))
    write(root, {"campaigns/promo.yaml": campaign("Bye")})  # the lock is free: the next send runs
    code, output, _ = run(root, "send", "promo", "--at", "2026-11-30T12:00")
    assert code == 0, output


@pytest.mark.parametrize("name", list(HOSTILE))
def test_lint_reports_it_within_the_budget(root: Path, name: str) -> None:
    write(root, {"campaigns/promo.yaml": campaign(HOSTILE[name])})
    code, output, took = run(root, "lint", "promo", "--format", "json")
    assert took < 5, f"{name}: {took:.1f} s"
    assert code == 1, output
    findings = json.loads(output[output.index("{") :])["findings"]
    assert [(f["rule"], f["file"], f["line"]) for f in findings] == [("template.render", "campaigns/promo.yaml", 10)]
