"""Reports as text: a terminal table, Markdown, and a self-contained HTML page (no network)."""

from __future__ import annotations

import html
from typing import Any

from dmops.report.kpis import DEFINITIONS, CampaignReport
from dmops.report.stats import wilson

SHOWN = ("recipients", "delivered", "open_rate", "click_rate", "ctor", "conversion_rate", "revenue_per_recipient")


def fmt(value: Any, key: str = "") -> str:
    if value is None:
        return "–"
    if key.endswith("rate") or key == "ctor":
        return f"{100 * value:.1f}%"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def lift_text(lift: dict[str, Any] | None, percent: bool = True) -> str:
    if not lift:
        return "–"
    scale, unit = (100, " pp") if percent else (1, "")
    p = lift.get("p_value")
    return (
        f"{scale * lift['abs']:+.2f}{unit} [{scale * lift['ci_low']:+.2f}, {scale * lift['ci_high']:+.2f}]"
        + (f" p={p:.3g}" if p is not None else "")
        + (f" ({lift['caution']})" if lift.get("caution") else "")
    )


def decisions_text(decisions: dict[str, int]) -> str | None:
    """One line on the funnel at the latest send: who was left out and why (None before any send)."""
    if not decisions:
        return None
    left_out = ", ".join(f"{reason} {n:,}" for reason, n in decisions.items() if reason != "send" and n)
    audience = sum(decisions.values())
    return (
        f"at the latest send, of {audience:,} audience contacts: {decisions.get('send', 0):,} sent or left for a "
        f"later run; left out: {left_out or 'none'}"
    )


def markdown(reports: list[CampaignReport]) -> str:
    lines: list[str] = []
    for report in reports:
        lines += [
            f"## {report.campaign} — {report.name}",
            "",
            "| variant | " + " | ".join(SHOWN) + " | conversion lift vs holdout |",
            "|---" * (len(SHOWN) + 2) + "|",
        ]
        for row in report.rows:
            lift = (row.get("lift") or {}).get("conversion_rate")
            cells = [fmt(row.get(k), k) for k in SHOWN]
            lines.append(f"| {row['variant']} | " + " | ".join(cells) + f" | {lift_text(lift)} |")
        if report.goals:
            lines += ["", "Goals:"]
            for goal in report.goals:
                state = {True: "met", False: "MISSED", None: "no data"}[goal["met"]]
                lines.append(
                    f"- {goal['metric']}: {fmt(goal['actual'], goal['metric'])} vs target "
                    f"{fmt(goal['target'], goal['metric'])} — {state}"
                )
        srm = report.ab["sample_ratio"]
        if srm.get("mismatch"):
            lines.append(f"- sample ratio mismatch: p = {srm['p_value']:.2g}")
        decided = decisions_text(report.decisions)
        if decided:
            lines += ["", decided[0].upper() + decided[1:] + "."]
        lines.append("")
    lines += ["Formulas:", ""] + [f"- **{k}**: {v}" for k, v in DEFINITIONS.items()]
    return "\n".join(lines) + "\n"


def _bar(value: float | None, low: float | None = None, high: float | None = None, scale: float = 1.0) -> str:
    """A bar (and its interval as a line) that shrinks with its column: drawn in a 220 by 18 box."""
    box = 'viewBox="0 0 220 18" width="220" height="18" style="max-width:100%;height:auto" role="img"'
    if value is None:
        return f"<svg {box}></svg>"
    width = 200 / scale if scale else 0
    parts = [f'<rect x="0" y="3" width="{max(0.0, value) * width:.1f}" height="12" fill="#4c78a8"/>']
    if low is not None and high is not None:
        parts.append(
            f'<line x1="{max(0.0, low) * width:.1f}" x2="{max(0.0, high) * width:.1f}" y1="9" y2="9" '
            'stroke="#222" stroke-width="2"/>'
        )
    return f"<svg {box}>{''.join(parts)}</svg>"


FONTS = (
    "system-ui, -apple-system, 'Segoe UI', 'PingFang SC', 'Hiragino Sans GB', 'Microsoft YaHei', "
    "'Noto Sans CJK SC', 'Source Han Sans SC', 'WenQuanYi Micro Hei', sans-serif"
)
STYLE = (
    f"body{{font-family:{FONTS};margin:0;color:#222;background:#f6f7f9;font-size:15px;line-height:1.4}}"
    "main{max-width:1100px;margin:0 auto;padding:16px}"
    "section{background:#fff;border:1px solid #e3e6ea;border-radius:8px;padding:16px;margin:0 0 16px}"
    "h1{font-size:1.5em}h2{margin:0 0 8px;font-size:1.25em}h3{font-size:1em;margin:16px 0 6px;color:#444}"
    "table{border-collapse:collapse;width:100%;margin:4px 0}"
    "td,th{padding:3px 6px;text-align:right;border-bottom:1px solid #eee;overflow-wrap:break-word}"
    "th{font-weight:600;color:#555}td:first-child,th:first-child{text-align:left}"
    ".cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:8px;margin:8px 0}"
    ".card{border:1px solid #e3e6ea;border-radius:6px;padding:8px}.card b{display:block;font-size:1.3em}"
    ".card span{color:#666;font-size:.85em}.verdict{font-size:1.05em;margin:8px 0}"
    ".badge{display:inline-block;border-radius:10px;padding:1px 8px;margin:2px;font-size:.85em}"
    ".met{background:#e3f4e3;color:#075c07}.missed{background:#fbe3e3;color:#900}.no-data{background:#eee;color:#555}"
    ".caution{color:#8a5a00;font-size:.85em}.heat td{text-align:center;min-width:2em}"
    ".legend{font-size:.85em;color:#555}"
    "@media (max-width:600px){body{font-size:13px}main{padding:6px}section{padding:10px}"
    "td,th{padding:2px 3px}.wide td:nth-child(5),.wide th:nth-child(5),.wide td:nth-child(7),.wide th:nth-child(7)"
    "{display:none}}"
    "@media print{body{background:#fff}section{break-inside:avoid;border:0}}"
)
FUNNEL_STEPS = {"email": ("recipients", "delivered", "opened", "clicked", "conversions")}
OTHER_STEPS = ("recipients", "delivered", "clicked", "conversions")  # SMS and DM report no opens


def _verdict(report: CampaignReport) -> str:
    """In words: which variant won on conversion rate, or that the data cannot tell."""
    variants = [r for r in report.rows if r["variant"] != "holdout"]
    better: dict[str, int] = {}
    for pair in report.ab["pairs"]:
        test = pair["conversion_rate"]
        if test and test["p_value"] is not None and test["p_value"] < 0.05:
            winner = pair["b"] if test["abs"] > 0 else pair["a"]
            better[winner] = better.get(winner, 0) + 1
    champion = [v for v, wins in better.items() if wins == len(variants) - 1]
    if len(variants) > 1 and champion:
        return f"Variant {champion[0]} converts best (significant at p < 0.05 against every other variant)."
    lifts = [(r["variant"], (r.get("lift") or {}).get("conversion_rate")) for r in variants]
    significant = [(v, lift) for v, lift in lifts if lift and lift["p_value"] is not None and lift["p_value"] < 0.05]
    parts = []
    if len(variants) > 1:
        parts.append("No significant difference between the variants in conversion rate.")
    for variant, lift in significant:
        parts.append(f"Variant {variant} {'beats' if lift['abs'] > 0 else 'trails'} the holdout ({lift_text(lift)}).")
    if not significant and any(lift for _, lift in lifts):
        parts.append("No variant differs significantly from the holdout.")
    return " ".join(parts) or "Not enough data to compare yet."


def _card(label: str, value: str) -> str:
    return f"<div class='card'><b>{html.escape(value)}</b><span>{html.escape(label)}</span></div>"


def _summary(report: CampaignReport) -> list[str]:
    variants = [r for r in report.rows if r["variant"] != "holdout"]
    total = {k: sum((r.get(k) or 0) for r in variants) for k in ("sent", "delivered", "opened", "clicked")}
    total.update({k: sum((r.get(k) or 0) for r in variants) for k in ("recipients", "conversions", "revenue")})
    cards = [_card("sent", f"{total['sent']:,}"), _card("delivered", f"{total['delivered']:,}")]
    if report.channel == "email":
        cards.append(
            _card("open rate", fmt(total["opened"] / total["delivered"] if total["delivered"] else None, "rate"))
        )
    cards.append(
        _card("click rate", fmt(total["clicked"] / total["delivered"] if total["delivered"] else None, "rate"))
    )
    cards.append(
        _card(
            "conversion rate", fmt(total["conversions"] / total["recipients"] if total["recipients"] else None, "rate")
        )
    )
    cards.append(_card("revenue", fmt(float(total["revenue"]))))
    out = [f"<div class='cards'>{''.join(cards)}</div>", f"<p class='verdict'>{html.escape(_verdict(report))}</p>"]
    if report.goals:
        badges = []
        for goal in report.goals:
            state = {True: "met", False: "missed", None: "no data"}[goal["met"]]
            badges.append(
                f"<span class='badge {state.replace(' ', '-')}'>{html.escape(goal['metric'])} "
                f"{html.escape(fmt(goal['actual'], goal['metric']))} / {html.escape(fmt(goal['target'], goal['metric']))}"
                f" — {state}</span>"
            )
        out.append(f"<p>{''.join(badges)}</p>")
    return out


def page(reports: list[CampaignReport], retention: dict[str, Any] | None = None, lang: str = "en") -> str:
    """One self-contained HTML file (no network, printable): a summary card per campaign, variant rates with their
    intervals drawn, the funnel without steps the channel cannot have, health rates, the audience at the latest
    send, and a cohort-retention heatmap with its headers and legend."""
    body: list[str] = ["<main><h1>dmops report</h1>"]
    for report in reports:
        body.append(f"<section><h2>{html.escape(report.campaign)} — {html.escape(report.name)}</h2>")
        body += _summary(report)
        variants = [r for r in report.rows if r["variant"] != "holdout"]
        intervals = {row["variant"]: wilson(row.get("conversions"), row.get("recipients")) for row in report.rows}
        scale = max([high for _, high in intervals.values() if high is not None] + [0.01])
        body.append(
            "<h3>Conversion by variant (bar: rate; line: its 95% interval)</h3><table class='wide'><tr>"
            "<th>variant</th><th>recipients</th><th>conversion rate</th><th>95% interval</th>"
            "<th></th><th>lift vs holdout</th><th>revenue / recipient</th></tr>"
        )
        for row in report.rows:
            lift = (row.get("lift") or {}).get("conversion_rate")
            low, high = intervals[row["variant"]]
            interval = f"{fmt(low, 'rate')} – {fmt(high, 'rate')}" if low is not None else "–"
            caution = (
                f"<br><span class='caution'>{html.escape(lift['caution'])}</span>"
                if lift and lift.get("caution")
                else ""
            )
            lift_cell = html.escape(lift_text({k: v for k, v in lift.items() if k != "caution"})) if lift else "–"
            body.append(
                f"<tr><td>{html.escape(row['variant'])}</td><td>{fmt(row.get('recipients'))}</td>"
                f"<td>{fmt(row.get('conversion_rate'), 'rate')}</td><td>{html.escape(interval)}</td>"
                f"<td>{_bar(row.get('conversion_rate'), low, high, scale)}</td><td>{lift_cell}{caution}</td>"
                f"<td>{html.escape(fmt(row.get('revenue_per_recipient')))}</td></tr>"
            )
        body.append("</table>")
        steps = FUNNEL_STEPS.get(report.channel, OTHER_STEPS)
        top = max([r["recipients"] or 0 for r in variants] + [1])
        body.append("<h3>Funnel</h3><table><tr><th>variant</th><th>step</th><th>messages</th><th></th></tr>")
        for row in variants:
            for key in steps:
                value = row.get(key) or 0
                body.append(
                    f"<tr><td>{html.escape(row['variant'])}</td><td>{key}</td><td>{value:,}</td>"
                    f"<td>{_bar(value / top)}</td></tr>"
                )
        body.append("</table>")
        health = ("bounce_rate", "unsubscribe_rate", "complaint_rate")
        body.append(
            "<h3>Deliverability and list health</h3><table><tr><th>variant</th>"
            + "".join(f"<th>{k.replace('_', ' ')}</th>" for k in health)
            + "</tr>"
        )
        for row in variants:
            body.append(
                f"<tr><td>{html.escape(row['variant'])}</td>"
                + "".join(f"<td>{html.escape(fmt(row.get(k), k))}</td>" for k in health)
                + "</tr>"
            )
        body.append("</table>")
        if report.decisions:
            audience = max(sum(report.decisions.values()), 1)
            body.append("<h3>Audience at the latest send</h3><table class='decisions'>")
            for reason, n in report.decisions.items():
                label = "sent or left for a later run" if reason == "send" else reason
                body.append(f"<tr><td>{html.escape(label)}</td><td>{n:,}</td><td>{_bar(n / audience)}</td></tr>")
            body.append("</table>")
        body.append("</section>")
    if retention and retention["cohorts"]:
        width = max(len(c["retention"]) for c in retention["cohorts"])
        body.append(
            f"<section><h2>Retention by {retention['period']} ({html.escape(retention['event'])})</h2>"
            f"<p class='legend'>Each row is a cohort: the contacts whose first {html.escape(retention['event'])} fell in "
            f"that {retention['period']}. Cell k: the share of them with one again {retention['period']} k later; "
            "darker is more.</p><table class='heat'><tr><th>cohort</th><th>size</th>"
            + "".join(f"<th>{k}</th>" for k in range(width))
            + "</tr>"
        )
        for cohort in retention["cohorts"]:
            cells = "".join(
                f"<td style='background:rgba(76,120,168,{value:.2f})' title='{value:.1%}'>{100 * value:.0f}</td>"
                for value in cohort["retention"]
            )
            body.append(f"<tr><th>{cohort['cohort']}</th><td>{cohort['size']:,}</td>{cells}</tr>")
        body.append("</table></section>")
    body.append(
        "<section><h2>Formulas</h2><ul>"
        + "".join(f"<li><b>{k}</b>: {html.escape(v)}</li>" for k, v in DEFINITIONS.items())
        + "</ul></section></main>"
    )
    return (
        f"<!doctype html><html lang='{html.escape(lang)}'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>dmops report</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )


def period_markdown(periods: list[dict[str, Any]]) -> str:
    """The period view: every campaign summed per month or quarter."""
    keys = ("sent", "delivered", "open_rate", "click_rate", "conversion_rate", "conversions", "revenue")
    lines = [
        "| period | campaigns | " + " | ".join(keys) + " | goals met | goals missed |",
        "|---" * (len(keys) + 4) + "|",
    ]
    for p in periods:
        cells = " | ".join(fmt(p.get(k), k) for k in keys)
        lines.append(f"| {p['period']} | {len(p['campaigns'])} | {cells} | {p['goals_met']} | {p['goals_missed']} |")
    return "\n".join(lines) + "\n\nRates are over every campaign's messages in the period (holdouts excluded).\n"


STAGE_COLOURS = {
    "prospect": "#bab0ac",
    "new": "#59a14f",
    "active": "#4c78a8",
    "reactivated": "#b07aa1",
    "at_risk": "#f28e2b",
    "churned": "#e15759",
}


def _html_page(title: str, body: list[str]) -> str:
    style = (
        f"body{{font-family:{FONTS};margin:2em;color:#222}}table{{border-collapse:collapse;margin:.5em 0}}"
        "td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #eee}.key span{display:inline-block;"
        "width:1em;height:1em;margin:0 .3em 0 1em;vertical-align:middle}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def lifecycle_table(view: dict[str, Any]) -> str:
    """The lifecycle report as plain text: stage counts per month, churn, flows."""
    stages = view["stages"]
    churn = {c["month"]: c for c in view["churn"]}
    width = max(len(s) for s in stages) + 2
    lines = [f"Lifecycle stages at the end of each month (the last as of {view['at']})", ""]
    lines.append("month   " + "".join(f"{s:>{width}}" for s in stages) + f"{'churn rate':>{width + 2}}")
    for month in view["months"]:
        rate = churn.get(month["month"], {}).get("rate")
        lines.append(
            f"{month['month']:<8}"
            + "".join(f"{month['counts'][s]:>{width},}" for s in stages)
            + f"{_percent(rate):>{width + 2}}"
        )
    lines += ["", "Flows between consecutive months:"]
    for flow in view["flows"]:
        lines.append(
            f"  {flow['from_month']} → {flow['to_month']}: won back (at_risk → active/reactivated) "
            f"{flow['won_back']:,}; slipped (new/active/reactivated → at_risk) {flow['slipped']:,}; "
            f"churned → reactivated {flow['reactivated_from_churned']:,}"
        )
    lines += ["", f"Churn rate: {view['definitions']['churn_rate']}."]
    return "\n".join(lines) + "\n"


def lifecycle_page(view: dict[str, Any]) -> str:
    """Self-contained HTML: a stacked bar per month, the counts, the flows and the churn definition."""
    months = view["months"]
    stages = view["stages"]
    top = max([sum(m["counts"].values()) for m in months] + [1])
    bar_w, gap, height = 36, 12, 220
    svg = [f'<svg width="{len(months) * (bar_w + gap) + 40}" height="{height + 40}" role="img">']
    for i, month in enumerate(months):
        x = 20 + i * (bar_w + gap)
        y = height + 10
        for stage in stages:
            h = month["counts"][stage] / top * height
            y -= h
            svg.append(
                f'<rect x="{x}" y="{y:.1f}" width="{bar_w}" height="{h:.1f}" fill="{STAGE_COLOURS[stage]}">'
                f"<title>{html.escape(month['month'])} {stage}: {month['counts'][stage]:,}</title></rect>"
            )
        svg.append(
            f'<text x="{x + bar_w / 2}" y="{height + 28}" font-size="10" text-anchor="middle">'
            f"{html.escape(month['month'])}</text>"
        )
    svg.append("</svg>")
    key = "".join(f"<span style='background:{STAGE_COLOURS[s]}'></span>{s}" for s in stages)
    churn = {c["month"]: c for c in view["churn"]}
    body = [
        "<h1>Lifecycle stages by month</h1>",
        f"<p>Each month as of its end in the workspace time zone; the last as of {html.escape(view['at'])}.</p>",
        "".join(svg),
        f"<p class='key'>{key}</p><table><tr><th>month</th>",
        "".join(f"<th>{s}</th>" for s in stages) + "<th>churn rate</th></tr>",
    ]
    for month in months:
        rate = churn.get(month["month"], {}).get("rate")
        body.append(
            f"<tr><td>{html.escape(month['month'])}</td>"
            + "".join(f"<td>{month['counts'][s]:,}</td>" for s in stages)
            + f"<td>{_percent(rate)}</td></tr>"
        )
    body.append(
        "</table><h2>Flows</h2><table><tr><th>months</th><th>won back</th><th>slipped</th>"
        "<th>churned → reactivated</th></tr>"
    )
    for flow in view["flows"]:
        body.append(
            f"<tr><td>{html.escape(flow['from_month'])} → {html.escape(flow['to_month'])}</td>"
            f"<td>{flow['won_back']:,}</td><td>{flow['slipped']:,}</td><td>{flow['reactivated_from_churned']:,}</td></tr>"
        )
    body.append(f"</table><p>Churn rate: {html.escape(view['definitions']['churn_rate'])}.</p>")
    return _html_page("dmops lifecycle", body)


def fatigue_table(view: dict[str, Any]) -> str:
    """The fatigue report as plain text, per channel and window."""
    lines = []
    for channel in view["channels"]:
        for window, curve in channel["windows"].items():
            lines += [
                f"{channel['channel']}: messages by marketing messages in the previous {window}",
                f"{'prior':>6} {'messages':>10} {'unsub':>7} {'unsub rate [95% CI]':>28} {'complaint rate [95% CI]':>30}",
            ]
            for p in curve:
                u_low, u_high = p["unsubscribe_ci"]
                q_low, q_high = p["complaint_ci"]
                lines.append(
                    f"{p['label']:>6} {p['messages']:>10,} {p['unsubscribes']:>7,} "
                    f"{_percent(p['unsubscribe_rate']) + ' [' + _percent(u_low) + ', ' + _percent(u_high) + ']':>28} "
                    f"{_percent(p['complaint_rate']) + ' [' + _percent(q_low) + ', ' + _percent(q_high) + ']':>30}"
                )
            lines.append("")
        suggestion = channel["suggestion"]
        if suggestion:
            cap = suggestion["cap"]
            lines.append(
                f"Suggested cap for {channel['channel']}: {{max: {cap['max']}, per: {cap['per']}}} — {suggestion['because']}"
            )
            lines.append(check_text(suggestion["check"]))
        else:
            lines.append(
                f"No cap suggested for {channel['channel']}: no 7-day bucket's unsubscribe rate is credibly above "
                f"{_percent(view['threshold'])}."
            )
        lines.append("")
    if not view["channels"]:
        lines.append("No marketing messages in the ledger yet.")
    lines += [f"Rates: {view['definitions']['rates']}.", f"Suggestion: {view['definitions']['suggestion']}."]
    return "\n".join(lines) + "\n"


def check_text(check: dict[str, int]) -> str:
    """What replaying the history under a suggested cap showed."""
    return (
        f"Checked on the history: applied in planned order, this cap holds back {check['blamed_held']:,} of the "
        f"{check['blamed']:,} messages it blames, and {check['others_held']:,} others."
    )


def fatigue_page(view: dict[str, Any]) -> str:
    """Self-contained HTML: per channel and window, the unsubscribe rate by prior count with its interval."""
    body = ["<h1>Message fatigue</h1>"]
    for channel in view["channels"]:
        body.append(f"<h2>{html.escape(channel['channel'])}</h2>")
        for window, curve in channel["windows"].items():
            scale = max([p["unsubscribe_ci"][1] or 0 for p in curve] + [0.001])
            body.append(
                f"<h3>by marketing messages in the previous {window} (bar: unsubscribe rate; line: 95% CI)</h3>"
                "<table><tr><th>prior</th><th>messages</th><th>unsubscribe rate</th><th></th>"
                "<th>complaint rate</th></tr>"
            )
            for p in curve:
                low, high = p["unsubscribe_ci"]
                body.append(
                    f"<tr><td>{p['label']}</td><td>{p['messages']:,}</td><td>{_percent(p['unsubscribe_rate'])}</td>"
                    f"<td>{_bar(p['unsubscribe_rate'], low, high, scale)}</td><td>{_percent(p['complaint_rate'])}</td></tr>"
                )
            body.append("</table>")
        suggestion = channel["suggestion"]
        body.append(
            f"<p>Suggested cap: {{max: {suggestion['cap']['max']}, per: 7d}} — {html.escape(suggestion['because'])}</p>"
            f"<p>{html.escape(check_text(suggestion['check']))}</p>"
            if suggestion
            else "<p>No cap suggested.</p>"
        )
    body.append(
        f"<p>Rates: {html.escape(view['definitions']['rates'])}.</p>"
        f"<p>Suggestion: {html.escape(view['definitions']['suggestion'])}.</p>"
    )
    return _html_page("dmops fatigue", body)
