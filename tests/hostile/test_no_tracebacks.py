"""Input that used to end in a Python traceback ends in one clean error with its SPEC §10 exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.planning import run_cli as run
from tests.planning import write
from tests.test_send import EMAIL, WS, contacts


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts(5), "campaigns/promo.yaml": EMAIL})


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "promo", "--at", "0001-01-01T00:00:00+14:00"),  # OverflowError
        ("plan", "promo", "--at", "9999-12-31T23:59:59-14:00"),
        ("report", "lifecycle", "--at", "0001-01-01T00:00"),  # OverflowError in month arithmetic
        ("send", "promo", "--at", "1969-12-31T23:59Z", "--dry-run"),
    ],
)
def test_an_instant_out_of_range_is_a_usage_error(root: Path, args: tuple[str, ...]) -> None:
    code, output = run(root, *args)
    assert code == 2
    assert f"error: --at '{args[3]}' is outside the years 1970 to 8999" in output


def test_yaml_nested_500_deep_is_a_config_error(root: Path) -> None:
    (root / "campaigns" / "deep.yaml").write_text("x: " + "[" * 500 + "]" * 500 + "\n", encoding="utf-8")
    code, output = run(root, "validate")
    assert code == 78
    assert "campaigns/deep.yaml:1: YAML nested more than 64 levels deep" in output


def test_a_duration_of_a_million_years_is_a_config_error(root: Path) -> None:
    write(root, {"dmops.yaml": WS + "caps:\n  - {max: 1, per: 999999999999w}\n"})
    code, output = run(root, "validate")
    assert code == 78
    assert "dmops.yaml:7, key 'caps[0].per': '999999999999w' is longer than 3660 days" in output


def test_a_weight_that_overflows_to_infinity_is_a_config_error(root: Path) -> None:
    campaign = EMAIL.replace("  - id: a\n", "  - id: a\n    weight: 1e309\n")  # YAML reads it as inf
    assert campaign != EMAIL
    write(root, {"campaigns/promo.yaml": campaign})
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00")
    assert code == 78
    assert "campaigns/promo.yaml:10, key 'variants[0].weight': Input should be a finite number" in output


def test_yaml_that_is_not_utf8_is_a_config_error(root: Path) -> None:
    (root / "campaigns" / "promo.yaml").write_bytes("id: 促销\n".encode("gb18030"))
    code, output = run(root, "validate")
    assert code == 78
    assert "campaigns/promo.yaml: not valid UTF-8 (byte 4) (save the file as UTF-8)" in output
