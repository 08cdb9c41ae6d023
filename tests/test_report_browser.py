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


MEASURE = """<script>
window.addEventListener('load', () => {
  const root = document.documentElement, cards = [...document.querySelectorAll('section .cards')];
  const inside = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.left >= 0 && r.right <= root.clientWidth + 0.5; };
  const tables = [...document.querySelectorAll('table')].filter((t) => t.scrollWidth > t.clientWidth + 1).length;
  document.body.setAttribute('data-measured', JSON.stringify({
    scroll: root.scrollWidth, client: root.clientWidth, tables: tables,
    cards: cards.length, visible: cards.filter(inside).length, lang: root.lang,
    font: getComputedStyle(document.body).fontFamily}));
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("size", [(1200, 900), (390, 844)], ids=["desktop", "phone"])
def test_the_page_fits_the_screen_with_every_campaign_card_and_chinese_text(cli, tmp_path: Path, size) -> None:
    import json

    from dmops.ledger import Entry, record
    from dmops.workspace import load_workspace
    from tests.test_report import T

    chinese = CAMPAIGN.replace("name: Promo", "name: 双12 限时闪购 · 会员专享")
    sms = "id: texts\nname: 短信提醒\nchannel: sms\nvariants:\n  - {id: a, text: Hi}\n  - {id: b, text: Hello}\n"
    root = write(
        tmp_path / "ws",
        {
            "dmops.yaml": WS,
            "contacts.csv": CONTACTS,
            "campaigns/promo.yaml": chinese,
            "campaigns/texts.yaml": sms,
            "events.csv": EVENTS,
        },
    )
    entries = [
        Entry("promo", "once", f"c{i}", "message", "email", "marketing", "a" if i < 5 else "b", T, f"m{i}")
        for i in range(1, 7)
    ]
    entries += [Entry("promo", "once", f"c{i}", "holdout", "email", "marketing", None, T) for i in (7, 8)]
    entries += [
        Entry("texts", "once", f"c{i}", "message", "sms", "marketing", "ab"[i % 2], T, f"s{i}") for i in range(1, 9)
    ]
    record(load_workspace(root), entries)
    assert cli("-w", root, "events", "import", root / "events.csv").exit_code == 0
    page = tmp_path / "report.html"
    assert cli("-w", root, "report", "--format", "html", "--out", page).exit_code == 0
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html  # self-contained and static: the measuring script is the test's own
    measured = tmp_path / "measured.html"
    measured.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    assert CHROMIUM is not None
    width, height = size
    flags = [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},{height}", "--hide-scrollbars"]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--virtual-time-budget=2000", "--dump-dom", measured.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    found = json.loads(re.search(r"data-measured=\"([^\"]*)\"", dom).group(1).replace("&quot;", '"'))  # type: ignore[union-attr]
    assert found["scroll"] <= found["client"], found  # no horizontal scrolling of the page
    assert found["tables"] == 0, found  # and no table cut off inside it
    assert found["cards"] == 2 == found["visible"], found  # a summary card row per campaign, on screen
    assert found["lang"] == "zh-CN" and "WenQuanYi Micro Hei" in found["font"]  # the workspace is in Shanghai
    families = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout
    assert any(name in families for name in ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Source Han Sans SC")), (
        "a CJK font from the page's stack is installed (.ci/run installs fonts-wqy-microhei)"
    )
    sms_section = html.split("短信提醒", 1)[1].split("</section>", 1)[0]
    assert "<td>opened</td>" not in sms_section and "<td>clicked</td>" in sms_section  # no step SMS cannot have
    artifacts = Path(__file__).resolve().parent.parent / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / f"report-{width}x{height}.png"
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=True
    )
    assert shot.read_bytes().startswith(b"\x89PNG")
