"""The HTML report in a real browser: headless Chromium draws its charts (.ci/run installs Debian's chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.planning import write
from tests.test_report import CAMPAIGN, CONTACTS, EVENTS, WS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_headless_chromium_draws_the_charts(cli, tmp_path: Path) -> None:
    from dmops.ledger import Entry, record
    from dmops.workspace import load_workspace
    from tests.test_report import T

    root = write(
        tmp_path / "ws",
        {"dmops.yaml": WS, "contacts.csv": CONTACTS, "campaigns/promo.yaml": CAMPAIGN, "events.csv": EVENTS},
    )
    entries = [
        Entry("promo", "once", f"c{i}", "message", "email", "marketing", "a" if i < 5 else "b", T, f"m{i}")
        for i in range(1, 7)
    ]
    entries += [Entry("promo", "once", f"c{i}", "holdout", "email", "marketing", None, T) for i in (7, 8)]
    record(load_workspace(root), entries)
    assert cli("-w", root, "events", "import", root / "events.csv").exit_code == 0
    page = tmp_path / "report.html"
    assert cli("-w", root, "report", "--format", "html", "--out", page).exit_code == 0
    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    widths = [float(w) for w in re.findall(r'<rect[^>]*width="([0-9.]+)"', dom)]
    assert len(widths) >= 5 and max(widths) > 50, "the funnel and rate bars are drawn"
    assert re.search(r'<line x1="[0-9.]+" x2="[0-9.]+"', dom), "confidence intervals are drawn on the rate bars"
    assert "Retention by month" in dom and '<td style="background:rgba(' in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000  # a page with text and bars, not a blank sheet
