"""The sample data is made by a seeded generator; the committed files are its output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb

from tests.conftest import REPO


def test_generator_reproduces_the_committed_samples(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_samples.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in ("contacts.csv", "optouts.csv", "events.csv"):
        assert (tmp_path / name).read_bytes() == (REPO / "samples" / name).read_bytes(), name
    con = duckdb.connect()
    assert con.execute(
        "SELECT count(*) FROM (SELECT * FROM read_parquet($a) EXCEPT ALL SELECT * FROM read_parquet($b))",
        {"a": str(tmp_path / "contacts.parquet"), "b": str(REPO / "samples" / "contacts.parquet")},
    ).fetchall() == [(0,)]


def test_samples_are_realistic_enough_to_exercise_every_check() -> None:
    con = duckdb.connect()
    row = con.execute(
        """
        SELECT count(*),
               count(*) FILTER (WHERE regexp_matches(first_name, '[\\x{4e00}-\\x{9fff}]')),
               count(*) FILTER (WHERE regexp_matches(first_name, '^[A-Za-z]')),
               count(*) FILTER (WHERE first_name IS NULL),
               count(DISTINCT timezone),
               count(*) FILTER (WHERE timezone IN ('EST', 'CST', 'Mars/Olympus') OR timezone IS NULL),
               count(*) FILTER (WHERE email IS NULL OR NOT contains(email, '@') OR contains(email, '@@')),
               count(*) FILTER (WHERE email <> trim(email)),
               count(*) FILTER (WHERE NOT starts_with(phone, '+'))
        FROM read_csv($p, all_varchar = true)
        """,
        {"p": str(REPO / "samples" / "contacts.csv")},
    ).fetchone()
    total, chinese, latin, blank_first, zones, bad_zones, bad_email, padded_email, local_phones = row
    assert total == 5000
    assert chinese > 1000 and latin > 500 and blank_first > 50
    assert zones >= 8 and bad_zones > 100
    assert bad_email > 50 and padded_email > 50 and local_phones > 1000
