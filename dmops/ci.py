"""Findings as CI systems show them: GitHub Actions workflow commands and JUnit XML.

``validate --format github|junit``, ``lint --format github|junit`` and ``plan --diff --format github`` print
through here, so that every command's annotations and reports escape and count the same way.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


def _data(text: str) -> str:
    """A workflow command's message: %, CR and LF escaped (GitHub's rules)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    """A workflow command's property value: also , and : escaped."""
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def github_command(
    severity: str, message: str, *, file: str | None = None, line: int | None = None, title: str | None = None
) -> str:
    """One GitHub Actions workflow command (``::error file=…,line=…,title=…::message``), without its newline."""
    properties = []
    if file:
        properties.append(f"file={_property(file)}")
    if line:
        properties.append(f"line={line}")
    if title:
        properties.append(f"title={_property(title)}")
    where = " " + ",".join(properties) if properties else ""
    return f"::{severity}{where}::{_data(message)}"


@dataclass
class Failure:
    message: str  # one line: the finding
    kind: str  # the rule or error kind
    detail: str = ""  # where and how to fix it


@dataclass
class Case:
    """One JUnit test case: a campaign and a rule, or a checked file; it fails with its failures."""

    classname: str
    name: str
    failures: list[Failure] = field(default_factory=list)
    output: list[str] = field(default_factory=list)  # warnings: shown, not failing


def junit(suite: str, cases: list[Case]) -> str:
    """A JUnit XML document (``testsuites`` > ``testsuite`` > ``testcase``, the shape Jenkins, GitLab, GitHub
    test reporters and Azure read), with the counts each element must carry."""
    failures = sum(1 for c in cases if c.failures)
    root = ET.Element("testsuites", name=suite, tests=str(len(cases)), failures=str(failures), errors="0", time="0")
    node = ET.SubElement(
        root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures), errors="0", skipped="0", time="0"
    )
    for case in cases:
        element = ET.SubElement(node, "testcase", classname=case.classname, name=case.name, time="0")
        if case.failures:
            first = case.failures[0]
            failure = ET.SubElement(
                element,
                "failure",
                message=first.message if len(case.failures) == 1 else f"{len(case.failures)} findings: {first.message}",
                type=first.kind,
            )
            failure.text = "\n".join(
                f"{f.kind}: {f.message}" + (f"\n  {f.detail}" if f.detail else "") for f in case.failures
            )
        if case.output:
            ET.SubElement(element, "system-out").text = "\n".join(case.output)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
