"""Strict YAML: no silent guesses, and every error names the file, line and key."""

from pathlib import Path

import pytest

from dmops.errors import ConfigError
from dmops.yamlio import parse_yaml

F = Path("w.yaml")


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, F)
    return caught.value


def test_plain_values_are_read_as_yaml_1_2_core() -> None:
    doc = parse_yaml("a: 1\nb: 2.5\nc: true\nd: null\ne: hello\nf: '12:30'\ng: [x, -3]\n", F)
    assert doc.data == {"a": 1, "b": 2.5, "c": True, "d": None, "e": "hello", "f": "12:30", "g": ["x", -3]}
    assert doc.lines[("g", 1)] == 7


def test_duplicate_key_names_both_lines() -> None:
    exc = error("timezone: UTC\nversion: 1\ntimezone: Asia/Shanghai\n")
    assert exc.location.line == 3
    assert exc.location.key == "timezone"
    assert "first given on line 1" in exc.message


def test_unquoted_clock_time_is_an_error_not_750() -> None:
    exc = error("quiet_hours:\n  start: 12:30\n")
    assert (exc.location.line, exc.location.key) == (2, "quiet_hours.start")
    assert "base-60" in exc.message
    assert exc.hint == 'quote it: "12:30"'


@pytest.mark.parametrize("word", ["NO", "no", "Yes", "on", "OFF", "y", "N"])
def test_yaml_1_1_booleans_are_errors(word: str) -> None:
    exc = error(f"country: {word}\n")
    assert exc.location.key == "country"
    assert "boolean" in exc.message


@pytest.mark.parametrize("value", ["+8613800138000", "00123", "0x1F", "1_000", ".inf", "+1"])
def test_numbers_yaml_1_1_would_guess_are_errors(value: str) -> None:
    exc = error(f"id: {value}\n")
    assert "quote it" in (exc.hint or "")


def test_quoted_values_stay_text() -> None:
    doc = parse_yaml('a: "+8613800138000"\nb: "00123"\nc: "NO"\nd: !!str 12:30\n', F)
    assert doc.data == {"a": "+8613800138000", "b": "00123", "c": "NO", "d": "12:30"}


def test_python_tag_is_refused() -> None:
    exc = error("contacts: !!python/object/apply:os.system ['echo pwned']\n")
    assert exc.location.line == 1
    assert "tag" in exc.message


def test_aliases_are_refused() -> None:
    exc = error("a: &x [1, 2]\nb: *x\n")
    assert exc.location.line == 2
    assert "alias" in exc.message


def test_syntax_error_names_its_line() -> None:
    exc = error("a: 1\nb: [1, 2\nc: 3\n")
    assert exc.location.file == F
    assert exc.location.line is not None and exc.location.line >= 2
    assert "YAML syntax error" in exc.message


def test_not_utf8_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        parse_yaml(b"a: \xff\xfe\n", F)


def test_block_scalar_keeps_template_text() -> None:
    doc = parse_yaml("text: |\n  Hi {{ name }}\n  bye\n", F)
    assert doc.data == {"text": "Hi {{ name }}\nbye\n"}
