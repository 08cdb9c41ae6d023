"""dmops.yaml: discovery, strict schema, errors naming file, line and key (SPEC §2)."""

from pathlib import Path

import pytest

from dmops.errors import ConfigError, DmopsError, MissingInputError, ProblemsFound
from dmops.workspace import find_workspace, load_workspace


def problems(root: Path) -> list[DmopsError]:
    with pytest.raises(DmopsError) as caught:
        load_workspace(root)
    exc = caught.value
    return exc.problems if isinstance(exc, ProblemsFound) else [exc]


def one(root: Path) -> DmopsError:
    found = problems(root)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_basic_workspace_loads(workspace) -> None:
    ws = load_workspace(workspace())
    assert ws.config.timezone == "Asia/Shanghai"
    assert ws.contacts_path == ws.root / "contacts.csv"
    assert ws.state_dir == ws.root / ".dmops"


def test_found_by_flag_then_env_then_walking_up(workspace, tmp_path: Path) -> None:
    root = workspace()
    deep = root / "campaigns" / "sub"
    deep.mkdir(parents=True)
    assert find_workspace(None, {}, deep) == root.resolve()
    assert find_workspace(None, {"DMOPS_WORKSPACE": str(root)}, Path("/")) == root.resolve()
    assert find_workspace(root, {"DMOPS_WORKSPACE": "/nonexistent"}, Path("/")) == root.resolve()


def test_missing_workspace_is_exit_66(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError) as caught:
        find_workspace(None, {}, tmp_path)
    assert caught.value.exit_code == 66
    with pytest.raises(MissingInputError):
        find_workspace(tmp_path / "nope", {}, tmp_path)


def test_unknown_key_is_named_with_its_line_and_a_suggestion(workspace) -> None:
    root = workspace(
        {"dmops.yaml": "version: 1\ntimezone: UTC\ncontacts: c.csv\nquiet_hour: {start: '21:00', end: '08:00'}\n"}
    )
    exc = one(root)
    assert isinstance(exc, ConfigError) and exc.exit_code == 78
    assert (exc.location.line, exc.location.key) == (4, "quiet_hour")
    assert exc.message == "unknown key 'quiet_hour'"
    assert exc.hint == "did you mean 'quiet_hours'?"


def test_wrong_type_names_the_key(workspace) -> None:
    root = workspace({"dmops.yaml": "version: 1\ntimezone: UTC\ncontacts: c.csv\ncaps:\n  - {max: many, per: 1d}\n"})
    exc = one(root)
    assert (exc.location.line, exc.location.key) == (5, "caps[0].max")
    assert exc.message == "expected a whole number, got text"


def test_abbreviated_timezone_is_rejected_with_a_city_hint(workspace) -> None:
    root = workspace({"dmops.yaml": "version: 1\ntimezone: EST\ncontacts: c.csv\n"})
    exc = one(root)
    assert (exc.location.line, exc.location.key) == (2, "timezone")
    assert "abbreviation" in exc.message
    assert "America/New_York" in (exc.hint or "")


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Etc/GMT+8", "PRC", "cst"])
def test_other_non_city_zones_are_rejected(workspace, zone: str) -> None:
    root = workspace({"dmops.yaml": f"version: 1\ntimezone: {zone}\ncontacts: c.csv\n"})
    assert one(root).location.key == "timezone"


def test_missing_required_key(workspace) -> None:
    exc = one(workspace({"dmops.yaml": "version: 1\ntimezone: UTC\n"}))
    assert exc.message == "missing required key 'contacts'"


def test_every_bad_key_is_reported_at_once(workspace) -> None:
    root = workspace(
        {
            "dmops.yaml": (
                "version: 2\ntimezone: UTC\ncontacts: c.csv\n"
                "caps:\n  - {max: 1, per: 1 day}\n"
                "quiet_hours: {start: '21:00', end: '8'}\n"
                "phone_region: XX\n"
            )
        }
    )
    keys = {p.location.key for p in problems(root)}
    assert keys == {"version", "caps[0].per", "quiet_hours.end", "phone_region"}


def test_path_escaping_the_workspace_is_refused(workspace) -> None:
    root = workspace({"dmops.yaml": "version: 1\ntimezone: UTC\ncontacts: ../elsewhere/contacts.csv\n"})
    exc = one(root)
    assert (exc.location.line, exc.location.key) == (3, "contacts")
    assert "outside the workspace" in exc.message


def test_contacts_must_be_csv_parquet_or_xlsx(workspace) -> None:
    exc = one(workspace({"dmops.yaml": "version: 1\ntimezone: UTC\ncontacts: contacts.xls\n"}))
    assert exc.location.key == "contacts"
    assert exc.message == "'contacts.xls' is not a .csv, .parquet or .xlsx file"
    exc = one(workspace({"dmops.yaml": "version: 1\ntimezone: UTC\ncontacts: {path: contacts.numbers}\n"}))
    assert exc.location.key == "contacts.path"


def test_a_sheet_is_for_xlsx_and_mapped_names_are_identifiers(workspace) -> None:
    exc = one(workspace({"dmops.yaml": "version: 1\ntimezone: UTC\ncontacts: {path: c.csv, sheet: People}\n"}))
    assert (exc.location.key, exc.message) == ("contacts", "sheet applies to .xlsx files only")
    config = "version: 1\ntimezone: UTC\ncontacts:\n  path: c.csv\n  columns: {first name: 姓名}\n"
    exc = one(workspace({"dmops.yaml": config}))
    assert exc.location.key == "contacts.columns.first name" and exc.location.line == 5
    assert exc.message == "'first name' is not a name templates and expressions can use"
    config = "version: 1\ntimezone: UTC\ncontacts:\n  path: c.csv\n  columns: {first_name: 姓名, name: 姓名}\n"
    exc = one(workspace({"dmops.yaml": config}))
    assert exc.message == "the header '姓名' is mapped twice"


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        ("", ("duckdb", None)),
        ("engine: duckdb\n", ("duckdb", None)),
        ("engine: spark\n", ("spark", "local[*]")),
        (
            "engine: {kind: spark, master: 'spark://10.0.0.5:7077', conf: {spark.executor.memory: 8g}}\n",
            ("spark", "spark://10.0.0.5:7077"),
        ),
    ],
)
def test_the_engine_is_duckdb_unless_spark_is_named(workspace, engine: str, expected: tuple[str, str | None]) -> None:
    config = load_workspace(workspace({"dmops.yaml": "version: 1\ntimezone: UTC\ncontacts: c.csv\n" + engine})).config
    spark = config.spark
    assert ("spark" if spark else config.engine, spark.master if spark else None) == expected
    if spark is not None and "conf" in engine:
        assert spark.conf == {"spark.executor.memory": "8g"}


@pytest.mark.parametrize(
    ("engine", "key", "message"),
    [
        ("postgres", "engine", "must be one of 'duckdb' or 'spark'"),
        ("{kind: spark, mastr: x}", "engine.mastr", "unknown key 'mastr'"),
        ("{kind: duckdb}", "engine.kind", "must be one of 'spark'"),
    ],
)
def test_an_unknown_engine_is_refused_with_its_key(workspace, engine: str, key: str, message: str) -> None:
    exc = one(workspace({"dmops.yaml": f"version: 1\ntimezone: UTC\ncontacts: c.csv\nengine: {engine}\n"}))
    assert isinstance(exc, ConfigError) and exc.exit_code == 78
    assert (exc.location.line, exc.location.key, exc.message) == (4, key, message)
