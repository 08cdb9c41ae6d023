"""`dmops plan` through the CLI: JSON pinned by SPEC §6, --out files, --explain, writes nothing."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO
from tests.planning import message, seed, write
from tests.test_plan import CAMPAIGN, CONTACTS, OPTOUTS, WS


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write(
        tmp_path / "ws",
        {"dmops.yaml": WS, "contacts.csv": CONTACTS, "optouts.csv": OPTOUTS, "campaigns/promo.yaml": CAMPAIGN},
    )


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_json_is_exactly_the_spec_shape(cli, root: Path) -> None:
    result = cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "campaign": "promo",
        "occurrence": "once",
        "at": "2026-11-30T04:00:00Z",
        "audience": 9,
        "to_send": 5,
        "excluded": {
            "invalid_address": 1,
            "no_consent": 1,
            "suppressed": 2,
            "duplicate_address": 0,
            "already_sent": 0,
            "frequency_cap": 0,
            "holdout": 0,
            "no_variant": 0,
        },
        "variants": {"a": 5},
    }
    assert list(json.loads(result.stdout)) == [
        "campaign",
        "occurrence",
        "at",
        "audience",
        "to_send",
        "excluded",
        "variants",
    ]


def test_out_csv_has_the_pinned_columns_sorted_and_no_personal_data(cli, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan.csv"
    result = cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", out)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == ["contact_id", "decision", "reason", "variant", "send_after"]
    assert rows[1:4] == [
        ["c01", "send", "", "a", "2026-12-01T02:00:00Z"],
        ["c02", "excluded", "invalid_address", "", "2026-12-01T02:00:00Z"],
        ["c03", "excluded", "no_consent", "", "2026-12-01T02:00:00Z"],
    ]
    assert [r[0] for r in rows[1:]] == sorted(r[0] for r in rows[1:])
    assert "example.com" not in text and "138" not in text
    assert "c01,send,,a,2026-12-01T02:00:00Z" in text  # empty fields are empty, not ""


def test_out_parquet_has_the_same_rows(cli, root: Path, tmp_path: Path) -> None:
    cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", tmp_path / "p.csv")
    result = cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", tmp_path / "p.parquet")
    assert result.exit_code == 0, result.output
    con = duckdb.connect()
    from_parquet = con.execute("SELECT * FROM read_parquet($p)", {"p": str(tmp_path / "p.parquet")}).fetchall()
    from_csv = con.execute("SELECT * FROM read_csv($p, all_varchar = true)", {"p": str(tmp_path / "p.csv")}).fetchall()
    assert from_parquet == [tuple(v or "" for v in r) for r in from_csv]  # empty fields are '', never null
    assert any(r[2] == "" for r in from_parquet) and any(r[3] == "" for r in from_parquet)


@pytest.mark.parametrize("name", ["plan.csv", "plan.parquet"])
def test_out_in_a_folder_whose_name_has_a_quote(cli, root: Path, tmp_path: Path, name: str) -> None:
    folder = tmp_path / "it's here"
    folder.mkdir()
    result = cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", folder / name)
    assert result.exit_code == 0, result.output
    assert [p.name for p in folder.iterdir()] == [name]


def test_out_errors_name_the_file_and_leave_nothing(cli, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    missing = cli("-w", root, "plan", "promo", "--out", out / "nowhere" / "plan.csv")
    assert (missing.exit_code, missing.stderr.strip()) == (
        73,
        f"error: {out / 'nowhere' / 'plan.csv'}: folder '{out / 'nowhere'}' does not exist",
    )
    (out / "taken.csv").mkdir()  # a folder where the file should go: the rename fails
    taken = cli("-w", root, "plan", "promo", "--out", out / "taken.csv")
    assert (taken.exit_code, taken.stderr.strip()) == (
        73,
        f"error: {out / 'taken.csv'}: cannot write the plan file (IsADirectoryError)",
    )
    assert [p.name for p in out.iterdir()] == ["taken.csv"]  # no staging file left behind


def test_same_inputs_give_byte_identical_out_files(cli, root: Path, tmp_path: Path) -> None:
    for name in ("a.csv", "b.csv"):
        assert cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", tmp_path / name).exit_code == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_plan_writes_nothing_to_the_workspace(cli, root: Path) -> None:
    seed(root, message("c01", "2026-12-01T02:00:00"))
    before = files_under(root)
    assert cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00").exit_code == 0
    assert files_under(root) == before


def test_no_ledger_is_not_created_by_plan(cli, root: Path) -> None:
    assert cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00").exit_code == 0
    assert not (root / ".dmops").exists()


def test_table_output_shows_the_funnel(cli, root: Path) -> None:
    result = cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00")
    assert result.exit_code == 0, result.output
    assert "audience                      9  100.0%  ████████████████████████" in result.output
    assert "  − suppressed                2   22.2%  █████" in result.output
    assert "  − duplicate_address         0    0.0%" in result.output
    assert "to send                       5   55.6%  █████████████" in result.output
    assert "send times (UTC): 2026-12-01T02:00:00Z … 2026-12-01T02:00:00Z" in result.output
    assert "nothing was sent; to send: dmops send promo" in result.output


def test_malformed_at_is_exit_2(cli, root: Path) -> None:
    result = cli("-w", root, "plan", "promo", "--at", "next tuesday")
    assert (result.exit_code, result.stderr.strip()) == (
        2,
        "error: --at 'next tuesday' is not an ISO 8601 date and time (e.g. --at 2026-12-01T10:00 or 2026-12-01T02:00Z)",
    )


def test_out_must_be_csv_or_parquet(cli, root: Path, tmp_path: Path) -> None:
    assert cli("-w", root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", tmp_path / "x.xlsx").exit_code == 2


def test_unknown_campaign_is_66(cli, root: Path) -> None:
    result = cli("-w", root, "plan", "nope")
    assert (result.exit_code, result.stderr.strip()) == (
        66,
        "error: no campaign with id 'nope' in campaigns/ "
        "(give a campaign id or the path to a campaign file; `dmops validate` lists them)",
    )


def test_a_campaign_file_that_cannot_be_read_is_named_not_lost(cli, root: Path) -> None:
    write(root, {"campaigns/broken.yaml": "id: broken\nname: N\n"})  # N is a YAML 1.1 boolean: refused
    named = cli("-w", root, "plan", "broken")
    assert named.exit_code == 78 and "campaigns/broken.yaml:2, key 'name': ambiguous value N" in named.stderr
    other = cli("-w", root, "plan", "nope")
    assert (other.exit_code, other.stderr.strip()) == (
        66,
        "error: no campaign with id 'nope' in campaigns/ "
        "(1 campaign file(s) could not be read (broken.yaml); `dmops validate` shows why)",
    )


def test_sample_workspace_plan(cli, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    for name in ("campaigns", "samples"):
        shutil.copytree(REPO / name, root / name)
    shutil.copy(REPO / "dmops.yaml", root / "dmops.yaml")
    assert cli("-w", root, "events", "import", "samples/events.csv").exit_code == 0  # the order history
    result = cli("-w", root, "plan", "winback-2026-12", "--at", "2026-11-30T09:00", "--format", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["audience"] > 50  # gold and silver members whose last order was 90-180 days ago
    assert payload["audience"] == payload["to_send"] + sum(payload["excluded"].values())
    for reason in ("invalid_address", "no_consent", "suppressed", "holdout"):
        assert payload["excluded"][reason] > 0, reason


def test_a_plan_file_that_fails_before_it_exists_leaves_nothing(root: Path, tmp_path: Path, monkeypatch) -> None:
    # The query itself fails (here: one that names no table), before DuckDB creates the staging file.
    import dmops.plan as planning
    from dmops.errors import OutputError

    monkeypatch.setattr(
        planning, "query", lambda name: "SELECT $empty AS reason, $formula_starts AS f FROM no_such_table"
    )
    con = duckdb.connect()
    with pytest.raises(OutputError, match=r"cannot write the plan file \(CatalogException\)"):
        planning.write_out(con, tmp_path / "plan.csv")
    assert [p.name for p in tmp_path.iterdir() if p.name != "ws"] == []


@pytest.mark.parametrize("interruption", [KeyboardInterrupt(), duckdb.InterruptException("INTERRUPT Error")])
def test_an_interrupted_plan_file_stays_an_interruption(tmp_path: Path, interruption: BaseException) -> None:
    """Ctrl-C while the plan file is written is reported as an interruption, not as an output error."""
    import dmops.plan as planning

    class Interrupted:  # the connection of one function's unit test: COPY is where the Ctrl-C lands
        def execute(self, sql: str, params: object = None) -> None:
            (tmp_path / planning.staging_path(tmp_path / "plan.csv").name).write_text("partial", encoding="utf-8")
            raise interruption

    with pytest.raises(type(interruption)):
        planning.write_out(Interrupted(), tmp_path / "plan.csv")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []  # neither the plan file nor the staging file
