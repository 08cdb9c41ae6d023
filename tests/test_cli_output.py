"""Whole command outputs, pinned: a change of wording, order or figure is a visible diff here."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmops.cli import app
from tests.planning import write
from tests.test_plan import CAMPAIGN, CONTACTS, OPTOUTS, WS

LINKED = CAMPAIGN.replace('text: "Hello"', 'text: "Hello {{ unsubscribe_url }}"')


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write(
        tmp_path, {"dmops.yaml": WS, "contacts.csv": CONTACTS, "optouts.csv": OPTOUTS, "campaigns/promo.yaml": LINKED}
    )


def run(root: Path, *args: str) -> tuple[int, list[str], list[str]]:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["-w", str(root), *args])
    return result.exit_code, [line.rstrip() for line in result.stdout.splitlines()], result.stderr.splitlines()


def test_the_plan_table(root: Path) -> None:
    assert run(root, "plan", "promo", "--at", "2026-11-30T12:00") == (
        0,
        [
            "plan promo (Promo): email, marketing, occurrence once, at 2026-11-30T04:00:00Z",
            "                       contacts   share",
            "audience                      9  100.0%  ████████████████████████",
            "  − invalid_address           1   11.1%  ███",
            "  − no_consent                1   11.1%  ███",
            "  − suppressed                2   22.2%  █████",
            "  − duplicate_address         0    0.0%",
            "  − already_sent              0    0.0%",
            "  − frequency_cap             0    0.0%",
            "  − holdout                   0    0.0%",
            "  − no_variant                0    0.0%",
            "to send                       5   55.6%  █████████████",
            "  variant a                   5   55.6%  █████████████",
            "send times (UTC): 2026-12-01T02:00:00Z … 2026-12-01T02:00:00Z",
            "nothing was sent; to send: dmops send promo --at 2026-11-30T04:00:00Z",
        ],
        [],
    )


def test_a_dry_run_send(root: Path) -> None:
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00", "--dry-run") == (
        0,
        [
            "promo once: dry run: 5 messages rendered, nothing written (0 already sent, 0 holdout)",
            "to send for real: dmops send promo --at 2026-11-30T04:00:00Z",
        ],
        [],
    )


def test_lint_clean_and_failing(root: Path) -> None:
    assert run(root, "lint", "promo", "--at", "2026-11-30T12:00") == (
        0,
        ["1 campaign(s), 12 messages rendered: 0 error(s), 0 warning(s)"],
        [],
    )
    write(root, {"campaigns/promo.yaml": CAMPAIGN})  # no unsubscribe link in the text part
    assert run(root, "lint", "promo", "--at", "2026-11-30T12:00") == (
        1,
        [
            "campaigns/promo.yaml:9: error email.unsubscribe-link (promo/a/text): the text part has no unsubscribe"
            " link [12 sample contacts]",
            "    fix: add {{ unsubscribe_url }} to every part of a marketing email",
            "1 campaign(s), 12 messages rendered: 1 error(s), 0 warning(s)",
        ],
        [],
    )
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00", "--dry-run") == (
        1,
        [],
        [
            "error: 1 lint error(s), nothing was sent: email.unsubscribe-link (a/text): the text part has no "
            "unsubscribe link (`dmops lint CAMPAIGN` shows each with its file, line and fix; --skip-lint sends anyway)"
        ],
    )


def test_a_send_on_a_terminal_shows_progress_and_prints_the_same(root: Path, tmp_path: Path) -> None:
    """With a terminal (the injected check says so) the progress bar runs; stdout and the outbox are the same."""
    from dmops.cli import Options

    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["-w", str(root), "send", "promo", "--at", "2026-11-30T12:00"], obj=Options(interactive=lambda: True)
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["promo once: wrote 5 messages to outbox/promo/once/run-0001 (0 already sent)"]
    messages = root / "outbox" / "promo" / "once" / "run-0001" / "messages.jsonl"
    assert len(messages.read_text(encoding="utf-8").splitlines()) == 5


def test_tables_into_a_pipe_keep_their_width(root: Path) -> None:
    # cron and CI read the output from a pipe: a report row is one line there, not wrapped at 80 columns
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00")[0] == 0
    done = subprocess.run(
        [sys.executable, "-m", "dmops", "-w", str(root), "report", "promo"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[1]
    assert header.startswith("variant") and header.endswith("conv. lift vs holdout [95% CI]")
    assert len(header) > 80


def test_text_that_looks_like_an_emoji_code_is_printed_as_written(root: Path) -> None:
    """Rich turns :a: or :fire: into pictures unless told not to; a campaign name, a variant or a threshold
    (send:a:-5%) is printed as the user wrote it."""
    campaign = root / "campaigns" / "promo.yaml"
    campaign.write_text(campaign.read_text(encoding="utf-8").replace("name: Promo", "name: 'Sale :fire: :a:'"))
    code, out, _ = run(root, "plan", "promo", "--at", "2026-11-30T12:00")
    assert code == 0
    assert "Sale :fire: :a:" in out[0]
