"""The script a marketer writes before dmops: pandas + Jinja in a loop (a benchmark baseline).

    python benchmarks/pandas_loop.py WORKSPACE OUT.jsonl

Reads the benchmark workspace's contacts and opt-outs, keeps consenting contacts
with a valid-looking email who did not opt out, renders the same subject and
text templates as the benchmark campaign with Jinja for each row, and writes one
JSON line per message. No caps, no ledger, no time zones, no crash safety:
only the work a hand-written loop does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jinja2
import pandas as pd
import yaml


def main() -> None:
    workspace, out = Path(sys.argv[1]), Path(sys.argv[2])
    campaign = yaml.safe_load((workspace / "campaigns" / "bench.yaml").read_text())
    variant = campaign["variants"][0]
    env = jinja2.Environment()
    subject = env.from_string(variant["subject"])
    text = env.from_string(variant["text"])
    contacts = pd.read_csv(workspace / "contacts.csv", dtype=str, keep_default_na=False)
    optouts = pd.read_csv(workspace / "optouts.csv", dtype=str, keep_default_na=False)
    blocked = set(optouts["contact_id"]) | set(optouts["address"].str.lower())
    eligible = contacts[
        (contacts["email_opt_in"] == "yes")
        & contacts["email"].str.contains("@")
        & ~contacts["contact_id"].isin(blocked)
        & ~contacts["email"].str.lower().isin(blocked)
    ]
    with out.open("w", encoding="utf-8") as handle:
        for row in eligible.to_dict("records"):
            context = {**row, "campaign": "bench", "variant": "a", "unsubscribe_url": "https://shop.example.com/u/x"}
            if not context.get("first_name"):
                context.pop("first_name", None)
            message = {
                "contact_id": row["contact_id"],
                "to": row["email"],
                "subject": subject.render(context),
                "text": text.render(context),
            }
            handle.write(json.dumps(message, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
