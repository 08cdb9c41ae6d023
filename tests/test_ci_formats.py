"""Findings every CI can show: `validate` and `lint` as GitHub workflow commands and as JUnit XML, checked
against the JSON findings of the same run."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import xmlschema

from dmops.ci import Case, Failure, github_command, junit
from tests.conftest import BASIC_CAMPAIGN, REPO

# junit-10.xsd, the JUnit schema of Jenkins's xUnit plugin, which `make` fetches (scripts/junit_schema.py)
SCHEMA = Path(sys.prefix) / "junit-10.xsd"


@cache
def junit_schema() -> xmlschema.XMLSchema10:
    if not SCHEMA.is_file():
        pytest.fail(f"no JUnit schema at {SCHEMA}: run `make test` (it fetches it when it creates .venv)")
    return xmlschema.XMLSchema10(str(SCHEMA))


def junit_cases(text: str) -> list[ET.Element]:
    """The test cases of a JUnit document, after validating it against the JUnit schema and checking the
    counts and attributes JUnit readers rely on."""
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    junit_schema().validate(text.encode("utf-8"))  # raises XMLSchemaValidationError with the path
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    failed = [c for c in cases if c.find("failure") is not None]
    for element in (root, suite):
        assert element.get("tests") == str(len(cases)) and element.get("failures") == str(len(failed))
        assert element.get("errors") == "0" and element.get("name")
    for case in cases:
        assert case.get("classname") and case.get("name") and {e.tag for e in case} <= {"failure", "system-out"}
        failures = case.findall("failure")
        assert len(failures) <= 1 and all(f.get("message") and f.get("type") for f in failures)
    return cases


def test_lint_junit_has_a_case_per_campaign_and_rule_and_fails_the_rules_with_errors(cli) -> None:
    root = REPO / "examples" / "lint-bad"
    result = cli("-w", root, "lint", "--format", "junit")
    assert result.exit_code == 1
    cases = junit_cases(result.stdout)
    findings = json.loads(cli("-w", root, "lint", "--format", "json").stdout)["findings"]
    errors = Counter((f["campaign"], f["rule"]) for f in findings if f["severity"] == "error")
    failed = Counter()
    for case in cases:
        failure = case.find("failure")
        if failure is not None:
            campaign = case.get("classname", "").removeprefix("dmops.lint.")
            failed[campaign, case.get("name")] = (failure.text or "").count(f"{case.get('name')}: ")
    assert failed == errors  # every error finding, under its campaign and rule, and nothing else fails
    names = {(c.get("classname"), c.get("name")) for c in cases}
    assert len(names) == len(cases)  # one case per campaign and rule
    assert ("dmops.lint.bad-sms", "sms.opt-out") in names and ("dmops.lint.bad-email", "sms.opt-out") not in names
    warnings = [f for f in findings if f["severity"] == "warning"]
    outputs = "".join(c.findtext("system-out") or "" for c in cases)
    assert warnings and all(w["message"] in outputs for w in warnings)


def test_validate_junit_and_github_name_the_file_and_line(cli, workspace) -> None:
    root = workspace({"campaigns/hello.yaml": BASIC_CAMPAIGN.replace("tier = 'gold'", "tierr = 'gold'")})
    result = cli("--workspace", root, "validate", "--format", "junit")
    assert result.exit_code == 78
    cases = {c.get("name"): c for c in junit_cases(result.stdout)}
    assert set(cases) == {"workspace", "campaigns/hello.yaml"}
    failure = cases["campaigns/hello.yaml"].find("failure")
    assert failure is not None and failure.get("type") == "audience.where"
    assert failure.get("message") == "unknown column 'tierr' in expression"
    assert "campaigns/hello.yaml:7" in (failure.text or "") and "did you mean 'tier'?" in (failure.text or "")
    assert cases["workspace"].find("failure") is None
    github = cli("--workspace", root, "validate", "--format", "github")
    assert github.exit_code == 78
    assert github.stdout == (
        "::error file=campaigns/hello.yaml,line=7,title=dmops validate (audience.where)::"
        "unknown column 'tierr' in expression — did you mean 'tier'?\n"
    )
    clean = cli("--workspace", workspace(), "validate", "--format", "junit")
    assert clean.exit_code == 0 and all(c.find("failure") is None for c in junit_cases(clean.stdout))


def test_workflow_commands_escape_what_github_reads_as_syntax() -> None:
    assert github_command("error", "50% off\nnow", file="a,b:c.yaml", line=3, title="x: y") == (
        "::error file=a%2Cb%3Ac.yaml,line=3,title=x%3A y::50%25 off%0Anow"
    )
    assert github_command("notice", "plain") == "::notice::plain"


def test_the_ci_examples_and_hooks_use_options_dmops_has(cli) -> None:
    """examples/ci and .pre-commit-hooks.yaml are valid YAML, and every dmops command in them uses a command
    and options that exist."""
    import re

    import yaml

    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert [(h["id"], h["entry"], h["args"]) for h in hooks] == [
        ("dmops-validate", "dmops", ["validate"]),
        ("dmops-lint", "dmops", ["lint"]),
    ]
    commands = []
    for path in sorted((REPO / "examples" / "ci").glob("*.yml")):
        text = path.read_text(encoding="utf-8")
        assert yaml.safe_load(text)
        commands += re.findall(r"\bdmops((?: --workspace \S+)? (?:validate|lint|send|plan)\b[^\n|>]*)", text)
    assert len(commands) >= 10
    for command in commands:
        words = command.split()
        if words[0] == "--workspace":
            words = words[2:]
        helped = cli(words[0], "--help")
        assert helped.exit_code == 0
        for option in (w for w in words if w.startswith("--")):
            assert option in helped.stdout, (command, option)


def test_the_junit_schema_rejects_what_ci_readers_reject() -> None:
    """The schema check can fail: a test case without a name, a renamed case or failure element, a suite
    time that is not a number."""
    good = junit("dmops lint", [Case("dmops.lint.a", "rule", [Failure("bad", "rule", "campaigns/a.yaml:3")])])
    assert junit_schema().is_valid(good.encode("utf-8"))
    for broken in (
        good.replace(' name="rule"', ""),
        good.replace("<testcase ", "<case ").replace("</testcase>", "</case>"),
        good.replace(
            '<testsuite name="dmops lint" tests="1" failures="1" errors="0" skipped="0" time="0"',
            '<testsuite name="dmops lint" tests="1" failures="1" errors="0" skipped="0" time="soon"',
        ),
        good.replace("<failure ", "<finding ").replace("</failure>", "</finding>"),
    ):
        assert broken != good
        assert not junit_schema().is_valid(broken.encode("utf-8"))
