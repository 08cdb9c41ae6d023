"""Campaign files: the same strictness as dmops.yaml, plus templates and cross-key rules (SPEC §4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmops.campaign import Cell, find_campaign_file, is_template_path, load_campaign
from dmops.errors import DmopsError, ProblemsFound
from dmops.workspace import load_workspace
from tests.conftest import BASIC_CAMPAIGN


def load(root: Path, name: str = "campaigns/hello.yaml"):
    return load_campaign(root / name, load_workspace(root))


def problems(root: Path, name: str = "campaigns/hello.yaml") -> list[DmopsError]:
    with pytest.raises(DmopsError) as caught:
        load(root, name)
    exc = caught.value
    return exc.problems if isinstance(exc, ProblemsFound) else [exc]


def test_basic_campaign_loads_with_inline_templates(workspace) -> None:
    campaign = load(workspace())
    assert campaign.id == "hello"
    assert campaign.config.purpose == "marketing"
    subject = campaign.templates[("a", "subject")]
    assert subject.inline and subject.source == "Hi {{ first_name | default('there') }}"
    assert subject.first_line == 10


@pytest.mark.parametrize(
    ("value", "is_path"),
    [
        ("campaigns/templates/a.txt.j2", True),
        ("a.j2", True),
        ("Hello {{ name }}", False),
        ("see https://x.example/a", False),
        ("https://x.example/{{a}}", False),
        ("plain", False),
        ("two\nlines/x.j2", False),
    ],
)
def test_template_path_rule(value: str, is_path: bool) -> None:
    assert is_template_path(value) is is_path


def test_template_file_is_read_relative_to_the_workspace(workspace) -> None:
    text = BASIC_CAMPAIGN.replace(
        "text: \"Hello {{ first_name | default('there') }}\"", "text: campaigns/t/hello.txt.j2"
    )
    root = workspace({"campaigns/hello.yaml": text, "campaigns/t/hello.txt.j2": "Hello {{ tier }}\n"})
    template = load(root).templates[("a", "text")]
    assert not template.inline
    assert template.file == root / "campaigns/t/hello.txt.j2"
    assert template.source == "Hello {{ tier }}\n"


def test_template_path_escaping_the_workspace_is_refused(workspace, tmp_path: Path) -> None:
    text = BASIC_CAMPAIGN.replace("text: \"Hello {{ first_name | default('there') }}\"", "text: ../../etc/passwd.j2")
    [exc] = problems(workspace({"campaigns/hello.yaml": text}))
    assert exc.exit_code == 78
    assert (exc.location.line, exc.location.key) == (11, "variants[0].text")
    assert "outside the workspace" in exc.message


def test_missing_template_file_is_exit_66(workspace) -> None:
    text = BASIC_CAMPAIGN.replace("text: \"Hello {{ first_name | default('there') }}\"", "text: campaigns/nope.txt.j2")
    [exc] = problems(workspace({"campaigns/hello.yaml": text}))
    assert exc.exit_code == 66
    assert exc.location.key == "variants[0].text"


def test_marketing_email_needs_unsubscribe_url(workspace) -> None:
    text = "\n".join(line for line in BASIC_CAMPAIGN.splitlines() if not line.startswith("unsubscribe_url"))
    [exc] = problems(workspace({"campaigns/hello.yaml": text}))
    assert exc.exit_code == 78
    assert exc.message == "marketing email needs unsubscribe_url"


def test_transactional_email_needs_no_unsubscribe_url(workspace) -> None:
    text = "\n".join(line for line in BASIC_CAMPAIGN.splitlines() if not line.startswith("unsubscribe_url"))
    campaign = load(workspace({"campaigns/hello.yaml": text + "\npurpose: transactional\n"}))
    assert campaign.unsubscribe_url is None


def test_unknown_key_wrong_type_and_bad_id_are_all_reported(workspace) -> None:
    text = (
        BASIC_CAMPAIGN.replace("id: hello", "id: Hello World").replace("channel: email", "channel: fax")
        + "holdot: 0.1\n"
    )
    found = problems(workspace({"campaigns/hello.yaml": text}))
    assert {(p.location.key, p.location.line) for p in found} == {("id", 1), ("channel", 3), ("holdot", 12)}
    assert all(p.exit_code == 78 for p in found)


def test_reserved_ids_are_refused(workspace) -> None:
    [exc] = problems(workspace({"campaigns/hello.yaml": BASIC_CAMPAIGN.replace("id: hello", "id: retention")}))
    assert "reserved" in exc.message


def test_sms_takes_no_subject_and_variants_are_all_weighted_or_all_cells(workspace) -> None:
    text = """\
id: sale
name: Sale
channel: sms
variants:
  - id: a
    subject: "Hi"
    text: "Sale! Reply STOP to opt out"
  - id: b
    where: "tier = 'gold'"
    text: "Gold sale! Reply STOP to opt out"
  - id: a
    text: "again"
"""
    messages = {p.message for p in problems(workspace({"campaigns/sale.yaml": text}), "campaigns/sale.yaml")}
    assert messages == {
        "subject is for email only; this is a sms campaign",
        "variants must be all weighted or all given where (explicit cells)",
        "variant id 'a' is used twice",
    }


def test_holdout_is_a_fraction_or_a_cell(workspace) -> None:
    root = workspace({"campaigns/hello.yaml": BASIC_CAMPAIGN + "holdout: {where: \"tier = 'silver'\"}\n"})
    assert load(root).config.holdout == Cell(where="tier = 'silver'")
    [exc] = problems(workspace({"campaigns/hello.yaml": BASIC_CAMPAIGN + "holdout: 1.5\n"}))
    assert exc.location.key == "holdout"


def test_send_at_and_send_time_are_exclusive_and_parsed(workspace) -> None:
    [exc] = problems(
        workspace({"campaigns/hello.yaml": BASIC_CAMPAIGN + 'send_at: "2026-12-01 10:00"\nsend_time: "10:00"\n'})
    )
    assert "not both" in exc.message
    [exc] = problems(workspace({"campaigns/hello.yaml": BASIC_CAMPAIGN + 'send_at: "tomorrow"\n'}))
    assert exc.location.key == "send_at"


def test_goals_are_known_metrics_given_as_fractions(workspace) -> None:
    [exc] = problems(workspace({"campaigns/hello.yaml": BASIC_CAMPAIGN + "goals: {open_rate: 40}\n"}))
    assert "fraction" in exc.message


def test_campaign_found_by_id_or_path(workspace) -> None:
    root = workspace()
    ws = load_workspace(root)
    assert find_campaign_file(ws, "hello") == root / "campaigns/hello.yaml"
    assert find_campaign_file(ws, str(root / "campaigns/hello.yaml")) == (root / "campaigns/hello.yaml").resolve()
    with pytest.raises(DmopsError) as caught:
        find_campaign_file(ws, "nope")
    assert caught.value.exit_code == 66
