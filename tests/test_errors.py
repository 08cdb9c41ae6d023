"""Exit codes are part of the interface (SPEC §10): each is pinned here."""

from dmops.errors import (
    ConfigError,
    DataError,
    DmopsError,
    ExitCode,
    IOFailure,
    MissingInputError,
    OutputError,
    TemporaryFailure,
    UsageError,
)


def test_exit_codes_match_spec_section_10() -> None:
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0,
        "FAILURE": 1,
        "USAGE": 2,
        "DATAERR": 65,
        "NOINPUT": 66,
        "CANTCREAT": 73,
        "IOERR": 74,
        "TEMPFAIL": 75,
        "CONFIG": 78,
    }


def test_each_error_class_carries_its_exit_code() -> None:
    assert DmopsError("x").exit_code == 1
    assert UsageError("x").exit_code == 2
    assert DataError("x").exit_code == 65
    assert MissingInputError("x").exit_code == 66
    assert OutputError("x").exit_code == 73
    assert IOFailure("x").exit_code == 74
    assert TemporaryFailure("x").exit_code == 75
    assert ConfigError("x").exit_code == 78


def test_error_names_file_line_key_and_hint() -> None:
    error = ConfigError("unknown key 'foo'", file="w/dmops.yaml", line=7, key="foo", hint="remove it")
    assert str(error) == "w/dmops.yaml:7, key 'foo': unknown key 'foo' (remove it)"
