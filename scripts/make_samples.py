"""Generate the sample workspace's data in samples/ (seeded: the same bytes every run).

    python scripts/make_samples.py [--out samples] [--contacts 5000] [--seed 20261201]

Writes contacts.csv, contacts.parquet (the same contacts, typed), optouts.csv
and events.csv. The contacts are realistic on purpose: Chinese and Latin
names, several time zones (some missing or invalid), consent columns written
the many ways exports write them, a few invalid or duplicate-looking
addresses, phones with and without +86.
"""

from __future__ import annotations

import argparse
import csv
import random
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb

SURNAMES = [
    "王",
    "李",
    "张",
    "刘",
    "陈",
    "杨",
    "黄",
    "赵",
    "吴",
    "周",
    "徐",
    "孙",
    "马",
    "朱",
    "胡",
    "郭",
    "何",
    "高",
    "林",
    "罗",
]
GIVEN = [
    "伟",
    "芳",
    "娜",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀英",
    "霞",
    "平",
    "刚",
    "桂英",
    "晓明",
    "思远",
    "雨桐",
    "子涵",
    "浩然",
]
PINYIN = [
    "wang",
    "li",
    "zhang",
    "liu",
    "chen",
    "yang",
    "huang",
    "zhao",
    "wu",
    "zhou",
    "xu",
    "sun",
    "ma",
    "zhu",
    "hu",
    "guo",
    "he",
    "gao",
    "lin",
    "luo",
]
LATIN_FIRST = [
    "Emma",
    "Olivia",
    "Liam",
    "Noah",
    "Ava",
    "Mia",
    "Lucas",
    "Sophia",
    "James",
    "Amelia",
    "Ethan",
    "Chloe",
    "Daniel",
    "Grace",
    "Ryan",
    "Zoe",
]
LATIN_LAST = [
    "Smith",
    "Brown",
    "Wilson",
    "Taylor",
    "Martin",
    "Lee",
    "Walker",
    "Hall",
    "Young",
    "King",
    "Wright",
    "Green",
    "Baker",
    "Adams",
]
DOMAINS = ["example.com", "example.net", "example.org", "mail.example.cn"]
ZONES = [
    ("Asia/Shanghai", 55),
    ("Asia/Hong_Kong", 6),
    ("Asia/Singapore", 5),
    ("Asia/Tokyo", 3),
    ("Europe/London", 5),
    ("America/New_York", 5),
    ("America/Los_Angeles", 4),
    ("Australia/Sydney", 3),
    ("", 8),  # missing: the workspace zone applies
    ("EST", 2),  # an abbreviation: counts as missing
    ("CST", 2),
    ("Mars/Olympus", 1),  # not a zone at all
]
CONSENT_YES = ["yes", "true", "1", "Y", "TRUE", "t"]
CONSENT_NO = ["no", "false", "0", "", "N"]
# Allocated Chinese mobile prefixes (a random 1xx would often be an unallocated, invalid number).
MOBILE_PREFIXES = [
    str(p)
    for p in (*range(130, 140), 150, 151, 152, 155, 156, 157, 158, 159, 166, 176, 177, 178, *range(180, 190), 198, 199)
]
TIERS = [("gold", 15), ("silver", 30), ("bronze", 55)]
CITIES = ["上海", "北京", "深圳", "杭州", "广州", "成都", "Hong Kong", "Singapore", "London", "New York"]
TODAY = date(2026, 11, 22)

CONTACT_COLUMNS = {
    "contact_id": "VARCHAR",
    "first_name": "VARCHAR",
    "last_name": "VARCHAR",
    "email": "VARCHAR",
    "phone": "VARCHAR",
    "dm_handle": "VARCHAR",
    "timezone": "VARCHAR",
    "locale": "VARCHAR",
    "email_opt_in": "VARCHAR",
    "sms_opt_in": "VARCHAR",
    "tier": "VARCHAR",
    "city": "VARCHAR",
    "signup_at": "DATE",
    "last_order_at": "DATE",
    "orders": "BIGINT",
    "lifetime_value": "DOUBLE",
}


def weighted(rng: random.Random, pairs: list[tuple[str, int]]) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def make_contacts(rng: random.Random, count: int) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for n in range(1, count + 1):
        chinese = rng.random() < 0.7
        if chinese:
            index = rng.randrange(len(SURNAMES))
            first, last = rng.choice(GIVEN), SURNAMES[index]
            local = f"{PINYIN[index]}.{rng.randrange(10, 99999)}"
            locale = "zh-CN"
        else:
            first, last = rng.choice(LATIN_FIRST), rng.choice(LATIN_LAST)
            local = f"{first.lower()}.{last.lower()}{rng.randrange(1, 999)}"
            locale = rng.choice(["en-US", "en-GB", "en-SG"])
        if rng.random() < 0.06:
            first = ""  # blank first names: templates must use default()
        email = f"{local}@{rng.choice(DOMAINS)}"
        roll = rng.random()
        if roll < 0.02:
            email = email.replace("@", "")  # no @
        elif roll < 0.03:
            email = email.replace("@", "@@")
        elif roll < 0.05:
            email = ""
        elif roll < 0.08:
            email = f"  {email.upper()} "  # duplicate-looking: case and spaces
        mobile = f"{rng.choice(MOBILE_PREFIXES)}{rng.randrange(0, 10**8):08d}"
        roll = rng.random()
        if roll < 0.4:
            phone = "+86" + mobile
        elif roll < 0.75:
            phone = mobile  # read in phone_region CN
        elif roll < 0.85:
            phone = f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}"
        elif roll < 0.9:
            phone = f"+1 415 555 {rng.randrange(0, 10000):04d}"
        elif roll < 0.93:
            phone = str(rng.randrange(10000, 99999))  # too short
        else:
            phone = ""
        signup = TODAY - timedelta(days=int(rng.expovariate(1 / 300)) % 1000)
        orders = int(rng.expovariate(1 / 3)) if rng.random() < 0.8 else 0
        last_order = ""
        if orders:
            last_order = (TODAY - timedelta(days=rng.randrange(0, max(1, (TODAY - signup).days + 1)))).isoformat()
        rows.append(
            {
                "contact_id": f"{n:05d}",
                "first_name": first,
                "last_name": last,
                "email": email,
                "phone": phone,
                "dm_handle": f"wx_{local.replace('.', '_')}" if rng.random() < 0.5 else "",
                "timezone": weighted(rng, ZONES)
                if chinese or rng.random() < 0.5
                else rng.choice(["Europe/London", "America/New_York", ""]),
                "locale": locale,
                "email_opt_in": rng.choice(CONSENT_YES) if rng.random() < 0.8 else rng.choice(CONSENT_NO),
                "sms_opt_in": rng.choice(CONSENT_YES) if rng.random() < 0.6 else rng.choice(CONSENT_NO),
                "tier": weighted(rng, TIERS),
                "city": rng.choice(CITIES),
                "signup_at": signup.isoformat(),
                "last_order_at": last_order,
                "orders": str(orders),
                "lifetime_value": f"{orders * rng.uniform(80, 600):.2f}",
            }
        )
    return rows


def make_optouts(rng: random.Random, contacts: list[dict[str, str]]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for contact in rng.sample(contacts, k=len(contacts) // 30):
        when = datetime(2026, 1, 1) + timedelta(minutes=rng.randrange(0, 460 * 24 * 60))
        how = rng.random()
        if how < 0.4 or not contact["email"].strip():
            row = {"contact_id": contact["contact_id"], "address": "", "channel": rng.choice(["", "email", "sms"])}
        elif how < 0.8:
            row = {"contact_id": "", "address": contact["email"].strip().lower(), "channel": "email"}
        else:
            row = {"contact_id": "", "address": contact["phone"] or contact["email"].strip(), "channel": ""}
        row["reason"] = weighted(rng, [("unsubscribe", 80), ("bounce", 10), ("complaint", 5), ("manual", 5)])
        row["ts"] = when.strftime("%Y-%m-%dT%H:%M:%S+08:00")
        rows.append(row)
    return sorted(rows, key=lambda r: r["ts"])


def make_events(rng: random.Random, contacts: list[dict[str, str]]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for contact in contacts:
        if contact["orders"] == "0":
            continue
        signup = date.fromisoformat(contact["signup_at"])
        for _ in range(int(contact["orders"])):
            day = signup + timedelta(days=rng.randrange(0, max(1, (TODAY - signup).days)))
            ts = datetime.combine(day, datetime.min.time()) + timedelta(minutes=rng.randrange(8 * 60, 23 * 60))
            rows.append(
                {
                    "event_id": "",
                    "event": "conversion",
                    "ts": ts.strftime("%Y-%m-%d %H:%M:%S"),
                    "contact_id": contact["contact_id"],
                    "revenue": f"{rng.uniform(30, 900):.2f}",
                }
            )
    rows.sort(key=lambda r: (r["ts"], r["contact_id"]))
    for index, row in enumerate(rows, start=1):
        row["event_id"] = f"ord-{index:06d}"
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "samples")
    parser.add_argument("--contacts", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    contacts = make_contacts(rng, args.contacts)
    write_csv(args.out / "contacts.csv", contacts)
    write_csv(args.out / "optouts.csv", make_optouts(rng, contacts))
    write_csv(args.out / "events.csv", make_events(rng, contacts))
    con = duckdb.connect()
    con.execute(
        "COPY (SELECT * FROM read_csv($src, header = true, auto_detect = false, columns = $columns))"
        " TO '" + str(args.out / "contacts.parquet").replace("'", "''") + "' (FORMAT parquet, COMPRESSION zstd)",
        {"src": str(args.out / "contacts.csv"), "columns": CONTACT_COLUMNS},
    )
    print(f"wrote {len(contacts)} contacts and their opt-outs and events to {args.out}")


if __name__ == "__main__":
    main()
