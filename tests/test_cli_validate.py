"""`dmops validate` through the CLI: exit codes, file:line and key in every message, JSON for CI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import BASIC_CAMPAIGN, REPO


def test_sample_workspace_is_valid(cli) -> None:
    result = cli("--workspace", REPO, "validate")
    assert result.exit_code == 0, result.output
    assert "contacts: 5,000 rows" in result.output
    assert "campaigns: flash-sale-1212, newsletter, welcome, winback-2026-12" in result.output
    assert "ok: workspace is valid" in result.output


def test_json_output_for_ci(cli, workspace) -> None:
    root = workspace({"campaigns/hello.yaml": BASIC_CAMPAIGN.replace("tier = 'gold'", "tierr = 'gold'")})
    result = cli("--workspace", root, "validate", "--format", "json")
    assert result.exit_code == 78
    payload = json.loads(result.stdout)
    assert payload["ok"] is False and payload["exit_code"] == 78
    assert payload["errors"] == [
        {
            "severity": "error",
            "file": "campaigns/hello.yaml",
            "line": 7,
            "key": "audience.where",
            "message": "unknown column 'tierr' in expression",
            "hint": "did you mean 'tier'?",
            "exit_code": 78,
        }
    ]


def test_template_syntax_error_names_template_file_and_line(cli, workspace) -> None:
    text = BASIC_CAMPAIGN.replace(
        "text: \"Hello {{ first_name | default('there') }}\"", "text: campaigns/t/hello.txt.j2"
    )
    template = "Hello {{ first_name | default('x') }}\n\n{% if tier %}gold{% endfi %}\n"
    root = workspace({"campaigns/hello.yaml": text, "campaigns/t/hello.txt.j2": template})
    result = cli("--workspace", root, "validate")
    assert result.exit_code == 78
    assert "campaigns/t/hello.txt.j2:3, key 'variants[0].text': template syntax error" in result.output


def test_template_variable_that_is_not_a_column(cli, workspace) -> None:
    text = BASIC_CAMPAIGN.replace(
        "text: \"Hello {{ first_name | default('there') }}\"", "text: campaigns/t/hello.txt.j2"
    )
    template = "Hello {{ first_name | default('x') }},\nyour points: {{ loyalty_points }}\n{{ unsubscribe_url }}\n"
    root = workspace({"campaigns/hello.yaml": text, "campaigns/t/hello.txt.j2": template})
    result = cli("--workspace", root, "validate")
    assert result.exit_code == 78
    assert (
        "campaigns/t/hello.txt.j2:2, key 'variants[0].text': template variable 'loyalty_points' is not a contact column"
        in result.output
    )
    assert "unsubscribe_url" not in result.output.split("not a contact column")[0]


def test_unknown_filter_is_caught_before_sending(cli, workspace) -> None:
    root = workspace(
        {"campaigns/hello.yaml": BASIC_CAMPAIGN.replace("default('there') }}\"\n    text", 'shout }}"\n    text')}
    )
    result = cli("--workspace", root, "validate")
    assert result.exit_code == 78
    assert "No filter named 'shout'" in result.output


def test_duplicate_yaml_key_in_campaign(cli, workspace) -> None:
    root = workspace({"campaigns/hello.yaml": BASIC_CAMPAIGN + "channel: sms\n"})
    result = cli("--workspace", root, "validate")
    assert result.exit_code == 78
    assert "campaigns/hello.yaml:12, key 'channel': duplicate key 'channel' (first given on line 3)" in result.output


def test_bad_contacts_give_65_with_lines(cli, workspace) -> None:
    root = workspace({"contacts.csv": "contact_id,email,tier\n1,a@example.com,gold\n1,b@example.com,gold\n"})
    result = cli("--workspace", root, "validate")
    assert result.exit_code == 65
    assert "contacts.csv:3, key 'contact_id': duplicate contact_id '1' (lines 2 and 3)" in result.output


def test_missing_suppression_file_is_66(cli, workspace) -> None:
    from tests.conftest import BASIC_WORKSPACE

    root = workspace({"dmops.yaml": BASIC_WORKSPACE + "suppressions: [optouts.csv]\n"})
    result = cli("--workspace", root, "validate")
    assert result.exit_code == 66
    assert "dmops.yaml:6, key 'suppressions[0]': suppression file 'optouts.csv' not found" in result.output


def test_missing_workspace_is_66(cli, tmp_path: Path) -> None:
    result = cli("--workspace", tmp_path, "validate")
    assert result.exit_code == 66
    assert "no dmops.yaml" in result.output


def test_warns_about_marketing_without_consent_column(cli, workspace) -> None:
    from tests.conftest import BASIC_WORKSPACE

    root = workspace({"dmops.yaml": BASIC_WORKSPACE.replace("consent: {email: email_opt_in, sms: sms_opt_in}\n", "")})
    result = cli("--workspace", root, "validate")
    assert result.exit_code == 0
    assert "warning: campaigns/hello.yaml:3, key 'channel': no consent column is configured for email" in result.output


def test_errors_never_print_personal_data(cli, workspace) -> None:
    contacts = (
        "contact_id,first_name,email,phone,tier\n"
        "1,Zhangsan,zhang.san@example.com,+8613812345678,gold\n"
        "1,Lisi,li.si@example.com,+8613987654321,gold,EXTRA\n"
    )
    result = cli("--workspace", workspace({"contacts.csv": contacts}), "validate", "--format", "json")
    assert result.exit_code == 65
    for secret in ("Zhangsan", "Lisi", "zhang.san", "li.si", "13812345678", "13987654321"):
        assert secret not in result.output


def test_validate_named_campaign(cli, workspace) -> None:
    root = workspace({"campaigns/broken.yaml": "id: broken\n"})
    assert cli("--workspace", root, "validate", "hello").exit_code == 0
    assert cli("--workspace", root, "validate").exit_code == 78
    assert cli("--workspace", root, "validate", "nope").exit_code == 66


def test_workspace_from_environment(workspace, monkeypatch) -> None:
    from typer.testing import CliRunner

    from dmops.cli import app

    root = workspace()
    result = CliRunner(env={"DMOPS_WORKSPACE": str(root)}).invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
