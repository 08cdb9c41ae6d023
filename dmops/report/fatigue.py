"""``dmops report fatigue``: what message frequency costs.

Every marketing message in the ledger is bucketed by how many marketing
messages of the same channel the contact had been sent in the 7 and 30 days
before it, by the cap rule of SPEC §6 (``t - 7 days < t_m < t``: a weekly
message exactly 7 days later is not "within 7 days"); per channel and bucket,
the share of those messages followed by an unsubscribe or a complaint event
for that message, with Wilson 95% intervals.

A suggested cap is checked before it is shown: the channel's history is
replayed in planned order under it, as ``plan`` would have applied it, and
the report says how many of the messages it blames it would really have held
back (and how many others).
"""

from __future__ import annotations

from typing import Any

from dmops.db import Queries
from dmops.report.stats import wilson
from dmops.sql import query

WINDOWS = {"7d": (7, 10), "30d": (30, 30)}  # window -> (days, the bucket that collects "this many or more")
FATIGUE_DEFINITION = (
    "for each marketing message at planned time t: prior = marketing messages of the same channel to the same "
    "contact planned in (t - window, t), the cap rule |t_m - t| < window; rate = messages followed by an unsubscribe (complaint) event for that "
    "message / messages; 95% Wilson interval"
)


def fatigue_report(con: Queries, threshold: float = 0.005) -> dict[str, Any]:
    """Unsubscribe and complaint rates by prior-message count, per channel and window; a suggested cap."""
    con.execute(query("fatigue"))
    rows = con.execute(query("fatigue_buckets"), {"top_7d": WINDOWS["7d"][1], "top_30d": WINDOWS["30d"][1]}).fetchall()
    curves: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for channel, win, bucket, messages, unsubscribed, complained in rows:
        u_low, u_high = wilson(int(unsubscribed), int(messages))
        q_low, q_high = wilson(int(complained), int(messages))
        top = WINDOWS[win][1]
        curves.setdefault((channel, win), []).append(
            {
                "prior": int(bucket),
                "label": f"{bucket}+" if bucket == top else str(bucket),
                "messages": int(messages),
                "unsubscribes": int(unsubscribed),
                "unsubscribe_rate": unsubscribed / messages,
                "unsubscribe_ci": [u_low, u_high],
                "complaints": int(complained),
                "complaint_rate": complained / messages,
                "complaint_ci": [q_low, q_high],
            }
        )
    channels = []
    for channel in sorted({c for c, _ in curves}):
        entry: dict[str, Any] = {"channel": channel, "windows": {}}
        for win in WINDOWS:
            entry["windows"][win] = curves.get((channel, win), [])
        entry["suggestion"] = _suggest(entry["windows"]["7d"], threshold)
        if entry["suggestion"] is not None:
            entry["suggestion"]["check"] = replay(con, channel, entry["suggestion"]["cap"]["max"])
        channels.append(entry)
    return {
        "threshold": threshold,
        "channels": channels,
        "definitions": {
            "rates": FATIGUE_DEFINITION,
            "suggestion": (
                "the smallest k >= 1 such that messages sent when the contact already had k messages of the channel "
                "in the previous 7 days have an unsubscribe rate whose Wilson 95% lower bound is above the threshold; "
                "suggested cap: at most k messages per 7 days; check: the channel's marketing messages replayed in "
                "planned order, each held back when k already kept messages lie within 7 days before it"
            ),
        },
    }


def _suggest(curve: list[dict[str, Any]], threshold: float) -> dict[str, Any] | None:
    for point in curve:
        low = point["unsubscribe_ci"][0]
        if point["prior"] >= 1 and low is not None and low > threshold:
            return {
                "cap": {"max": point["prior"], "per": "7d"},
                "because": (
                    f"messages sent after {point['label']} in the previous 7 days: unsubscribe rate "
                    f"{point['unsubscribe_rate']:.2%} (95% CI {low:.2%}–{point['unsubscribe_ci'][1]:.2%}) "
                    f"over {point['messages']:,} messages, above the threshold {threshold:.2%}"
                ),
            }
    return None


def replay(con: Queries, channel: str, most: int) -> dict[str, int]:
    """The channel's marketing history (``_dm_fatigue``) under ``{max: most, per: 7d}``, in planned order per
    contact: a message is held back when ``most`` kept messages lie within 7 days before it (what ``plan`` sees
    when it runs).

    ``blamed``: messages with at least ``most`` messages before them in the window (the suggestion's evidence);
    ``blamed_held``: those the cap holds back; ``others_held``: messages it holds back that were not blamed.
    The replay is sequential by nature (one held-back message frees room for the next), so it walks the
    history ordered by the engine, one contact at a time (on Spark, the channel's history comes to the driver).
    """
    window = WINDOWS["7d"][0] * 86_400_000_000
    cursor = con.execute(
        "SELECT contact_id, epoch_us(planned_at), prior_7d >= $most FROM _dm_fatigue WHERE channel = $channel"
        " ORDER BY contact_id, planned_at",
        {"channel": channel, "most": most},
    )
    counts = {"blamed": 0, "blamed_held": 0, "others_held": 0}
    contact: object = None
    kept: list[int] = []
    while rows := cursor.fetchmany(100_000):
        for who, at, blamed in rows:
            if who != contact:
                contact, kept = who, []
            recent = [t for t in kept if at - t < window]
            kept = recent
            held = len(recent) >= most
            if not held:
                kept.append(at)
            counts["blamed"] += bool(blamed)
            counts["blamed_held"] += bool(blamed and held)
            counts["others_held"] += bool(held and not blamed)
    return counts
