"""Audience expressions: one boolean over contact columns, nothing else (SPEC §4)."""

from __future__ import annotations

import pytest

from dmops.db import connect, lock_down
from dmops.errors import ConfigError
from dmops.expressions import SOURCE, check_expression, create_source

COLUMNS = ["contact_id", "tier", "orders", "last_order_at", "run_at", "run_date"]


@pytest.fixture
def con():
    con = connect()
    con.execute("CREATE TEMP TABLE contacts (contact_id VARCHAR, tier VARCHAR, orders BIGINT, last_order_at DATE)")
    con.execute("INSERT INTO contacts VALUES ('1', 'gold', 3, DATE '2026-01-01'), ('2', 'silver', 0, NULL)")
    create_source(con, "2026-12-01 10:00:00", "2026-12-01")
    lock_down(con)
    return con


def message(con, expression: str) -> str:
    with pytest.raises(ConfigError) as caught:
        check_expression(con, expression, COLUMNS)
    return caught.value.message


@pytest.mark.parametrize(
    "expression",
    [
        "tier IN ('gold', 'silver') AND last_order_at < DATE '2026-09-01'",
        "orders > 2 OR tier = 'gold'",
        "last_order_at < run_date - INTERVAL 90 DAY",
        "lower(TIER) LIKE 'g%'",
    ],
)
def test_valid_expressions_pass_and_select_rows(con, expression: str) -> None:
    check_expression(con, expression, COLUMNS)
    con.execute(f"SELECT count(*) FROM {SOURCE} WHERE ({expression})").fetchall()


def test_unknown_column_is_named_with_a_suggestion(con) -> None:
    with pytest.raises(ConfigError) as caught:
        check_expression(con, "tierr = 'gold'", COLUMNS)
    assert caught.value.message == "unknown column 'tierr' in expression"
    assert caught.value.hint == "did you mean 'tier'?"


def test_subqueries_are_refused(con) -> None:
    assert "subqueries" in message(con, "contact_id IN (SELECT contact_id FROM contacts)")
    assert "subqueries" in message(con, "EXISTS (SELECT * FROM read_csv('/etc/passwd'))")


@pytest.mark.parametrize(
    "expression",
    [
        "true) UNION SELECT 1 FROM contacts WHERE (true",
        "true); DROP TABLE contacts; SELECT (1",
        "true) ORDER BY (1",
        "true) LIMIT (1",
    ],
)
def test_anything_but_one_expression_is_refused(con, expression: str) -> None:
    message(con, expression)
    assert con.execute("SELECT count(*) FROM contacts").fetchall() == [(2,)]


def test_non_boolean_is_refused(con) -> None:
    assert "not a true/false condition" in message(con, "orders + 1")


def test_type_mismatch_is_reported(con) -> None:
    assert "does not fit" in message(con, "orders > DATE '2026-01-01'")


def test_empty_and_unparseable(con) -> None:
    assert "empty" in message(con, "  ")
    assert "not a valid expression" in message(con, "tier = = 'x'")


def test_file_access_is_disabled_after_lock_down(con) -> None:
    with pytest.raises(Exception, match=r"(?i)disabled|permission"):
        con.execute("SELECT * FROM read_csv('/etc/hostname')").fetchall()
