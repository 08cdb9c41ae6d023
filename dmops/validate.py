"""``dmops validate``: check a workspace, its contacts and campaigns without sending anything."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dmops import expressions, render, traits
from dmops.campaign import Campaign, campaign_files, find_campaign_file, load_campaign
from dmops.contacts import ContactsInfo, address_quality, load_contacts
from dmops.db import connect
from dmops.deliver import unset_credentials
from dmops.errors import ConfigError, DmopsError, ExitCode, IOFailure, Location, ProblemsFound
from dmops.suppressions import missing_files
from dmops.workspace import Workspace, load_workspace


@dataclass
class ValidationReport:
    """Everything ``validate`` found: errors fail it, warnings do not."""

    root: Path
    errors: list[DmopsError] = field(default_factory=list)
    warnings: list[DmopsError] = field(default_factory=list)
    campaigns: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # the campaign files checked
    contacts: ContactsInfo | None = None
    quality: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> ExitCode:
        return self.errors[0].exit_code if self.errors else ExitCode.OK

    def add(self, exc: DmopsError) -> None:
        self.errors.extend(exc.problems if isinstance(exc, ProblemsFound) else [exc])


def exposed(ws: Workspace) -> list[DmopsError]:
    """A warning per folder (the state folder, the outbox) that others can read or enter, or that holds a
    file or folder they can: dmops creates them owner-only (SPEC §12), a copy or an archive may not be."""
    import stat

    found: list[DmopsError] = []
    for folder in (ws.state_dir, ws.outbox_dir):
        if not folder.is_dir():
            continue
        paths = [folder, *folder.rglob("*")]
        open_to_others = [p for p in paths if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o077]
        if open_to_others:
            first = open_to_others[0]
            found.append(
                IOFailure(
                    f"{len(open_to_others):,} files or folders here can be read by other users "
                    f"(first: {first.relative_to(ws.root) if first.is_relative_to(ws.root) else first}, "
                    f"mode {stat.S_IMODE(first.lstat().st_mode):o})",
                    file=folder,
                    hint=f"they hold personal data: chmod -R go-rwx {folder.name}",
                )
            )
    return found


def _check_campaign(
    con: duckdb.DuckDBPyConnection, campaign: Campaign, ws: Workspace, columns: list[str], report: ValidationReport
) -> None:
    expression_columns = [*columns, "run_at", "run_date"]
    for key, expression in campaign.where_clauses():
        try:
            expressions.check_expression(con, expression, expression_columns)
        except ConfigError as exc:
            report.errors.append(campaign.locate(exc, key))
    for (_, part), template in campaign.template_parts():
        try:
            unknown = render.unknown_names(template, columns, html=(part == "html"))
        except ConfigError as exc:
            report.errors.append(exc)
            continue
        for found in unknown:
            report.errors.append(
                ConfigError(found.message, file=template.file, line=found.line, key=template.key, hint=found.hint)
            )
    config = campaign.config
    if config.purpose == "marketing" and config.channel not in ws.config.consent:
        report.warnings.append(
            ConfigError(
                f"no consent column is configured for {config.channel}: this marketing campaign has no consent check",
                file=campaign.path,
                line=campaign.line_of("channel"),
                key="channel",
                hint=f"add consent: {{{config.channel}: <column>}} to dmops.yaml",
            )
        )


def validate(root: Path, names: Sequence[str] = ()) -> ValidationReport:
    """Validate the workspace at ``root`` and the named campaigns (all when none are named)."""
    report = ValidationReport(root=root)
    try:
        ws = load_workspace(root)
    except DmopsError as exc:
        report.add(exc)
        return report
    report.errors.extend(missing_files(ws))
    report.warnings.extend(unset_credentials(ws, os.environ))  # deliver refuses then; a CI gate may lack them
    report.warnings.extend(exposed(ws))
    quiet = ws.config.quiet_hours
    if quiet is not None and quiet.start == quiet.end:
        report.warnings.append(
            ConfigError(
                f"quiet_hours starts and ends at {quiet.start}: no quiet hours apply",
                file=ws.file,
                line=ws.line_of("quiet_hours"),
                key="quiet_hours",
                hint='give the window, e.g. {start: "21:00", end: "08:00"}, or remove quiet_hours',
            )
        )
    con = connect()
    columns: list[str] | None = None
    try:
        report.contacts = load_contacts(con, ws, keep_snapshot=True)
        report.quality = address_quality(con)
        columns = [*report.contacts.columns, *traits.add_to_contacts(con, ws, None)]
        expressions.create_source(con)
    except DmopsError as exc:
        report.add(exc)
    paths: list[Path] = []
    if names:
        for name in names:
            try:
                paths.append(find_campaign_file(ws, name))
            except DmopsError as exc:
                report.add(exc)
    else:
        paths = campaign_files(ws)
        if not paths:
            report.warnings.append(ConfigError(f"no campaign files in {ws.config.campaigns_dir}/", file=ws.file))
    seen: dict[str, Path] = {}
    report.files = paths
    for path in paths:
        try:
            campaign = load_campaign(path, ws)
        except DmopsError as exc:
            report.add(exc)
            continue
        if campaign.id in seen:
            report.errors.append(
                ConfigError(
                    f"campaign id '{campaign.id}' is also used by {seen[campaign.id].name}",
                    file=path,
                    line=campaign.line_of("id"),
                    key="id",
                    hint="campaign ids must be unique in a workspace",
                )
            )
        seen.setdefault(campaign.id, path)
        report.campaigns.append(campaign.id)
        if columns is not None:
            _check_campaign(con, campaign, ws, columns, report)
    con.close()
    return report


WORKSPACE_CASE = "workspace"  # dmops.yaml, the contacts and suppressions: what is not in a campaign file


def _shown(exc: DmopsError, root: Path) -> str | None:
    return exc.location.shown_file(root)


def github_annotations(report: ValidationReport) -> str:
    """GitHub Actions workflow commands: one ``::error``/``::warning`` per finding, with its file and line."""
    from dmops.ci import github_command

    lines = [
        github_command(
            severity,
            exc.message + (f" — {exc.hint}" if exc.hint else ""),
            file=_shown(exc, report.root),
            line=exc.location.line,
            title="dmops validate" + (f" ({exc.location.key})" if exc.location.key else ""),
        )
        for severity, found in (("error", report.errors), ("warning", report.warnings))
        for exc in found
    ]
    return "\n".join(lines) + ("\n" if lines else "")


def junit_report(report: ValidationReport) -> str:
    """JUnit XML: one test case for the workspace and one per campaign file; its errors fail it."""
    from dmops.ci import Case, Failure, junit

    cases = {WORKSPACE_CASE: Case("dmops.validate", WORKSPACE_CASE)}
    for path in report.files:
        shown = Location(file=path).shown_file(report.root) or str(path)
        cases[shown] = Case("dmops.validate", shown)
    for severity, found in (("error", report.errors), ("warning", report.warnings)):
        for exc in found:
            case = cases.get(_shown(exc, report.root) or "", cases[WORKSPACE_CASE])
            where = exc.location.render(report.root)
            if severity == "error":
                kind = exc.location.key or type(exc).__name__
                case.failures.append(Failure(exc.message, kind, where + (f"; fix: {exc.hint}" if exc.hint else "")))
            else:
                case.output.append(f"warning: {exc.render(report.root)}")
    return junit("dmops validate", list(cases.values()))
