"""Make plausible delivery, engagement and conversion events for what a workspace's outbox holds.

    python scripts/simulate_events.py WORKSPACE OUT.jsonl [--seed 7]

For the demo only: a delivery system would report these. Each message gets
`delivered` or a bounce, some opens and clicks, a few unsubscribes and
complaints (more of them the more marketing messages of the channel the
contact had in the 30 days before); recipients and held-out contacts convert at different rates
(variant b a little better), within each campaign's window. Seeded: the same
outbox gives the same file.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

LIFT = {"holdout": 0.030, "a": 0.050, "b": 0.065}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workspace", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    con = duckdb.connect(str(args.workspace / ".dmops" / "ledger.duckdb"), read_only=True)
    # prior: marketing messages of the same channel to the contact in the 30 days before this one
    rows = con.execute(
        """SELECT contact_id, kind, coalesce(variant, 'holdout'), planned_at, message_id, channel,
                  CASE WHEN kind = 'message' AND purpose = 'marketing' THEN
                       count(*) FILTER (WHERE kind = 'message' AND purpose = 'marketing')
                       OVER (PARTITION BY contact_id, channel ORDER BY planned_at
                             RANGE BETWEEN INTERVAL 30 DAYS PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING)
                  ELSE 0 END AS prior
           FROM entries ORDER BY campaign_id, occurrence, contact_id, kind"""
    ).fetchall()
    con.close()
    events = []
    for contact, kind, variant, planned, message_id, channel, prior in rows:
        t: datetime = planned
        if kind == "message":
            if rng.random() < 0.03:
                events.append(
                    {
                        "event": "bounce",
                        "ts": t + timedelta(minutes=1),
                        "message_id": message_id,
                        "bounce_type": "hard" if rng.random() < 0.6 else "soft",
                    }
                )
                continue
            events.append({"event": "delivered", "ts": t + timedelta(minutes=1), "message_id": message_id})
            if channel == "email" and rng.random() < 0.42:
                events.append(
                    {"event": "open", "ts": t + timedelta(hours=rng.uniform(0.1, 30)), "message_id": message_id}
                )
                if rng.random() < 0.3:
                    events.append(
                        {
                            "event": "click",
                            "ts": t + timedelta(hours=rng.uniform(0.2, 31)),
                            "message_id": message_id,
                            "url": "https://shop.example.com/",
                        }
                    )
            # fatigue: every recent message makes the next unsubscribe and complaint likelier
            if rng.random() < 0.002 + 0.006 * prior:
                events.append({"event": "unsubscribe", "ts": t + timedelta(hours=2), "message_id": message_id})
            if rng.random() < 0.0005 + 0.001 * prior:
                events.append({"event": "complaint", "ts": t + timedelta(hours=3), "message_id": message_id})
        if rng.random() < LIFT.get(variant, 0.05):
            events.append(
                {
                    "event": "conversion",
                    "ts": t + timedelta(hours=rng.uniform(1, 47)),
                    "contact_id": contact,
                    "revenue": round(rng.uniform(40, 600), 2),
                }
            )
    with args.out.open("w", encoding="utf-8") as handle:
        for index, event in enumerate(events, start=1):
            event["event_id"] = f"sim-{args.seed}-{index:07d}"
            event["ts"] = event["ts"].strftime("%Y-%m-%dT%H:%M:%SZ")
            handle.write(json.dumps(event) + "\n")
    print(f"wrote {len(events)} events to {args.out}")


if __name__ == "__main__":
    main()
