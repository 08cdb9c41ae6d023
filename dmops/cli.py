"""The ``dmops`` command line: parse options, call the core, print, exit with SPEC §10 codes."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape

from dmops import __version__
from dmops.campaign import Campaign, find_campaign_file, load_campaign
from dmops.errors import DmopsError, ExitCode, ProblemsFound
from dmops.plan import REASONS, Check, PlanSummary, explain, iso_z, run_plan
from dmops.scaffold import init_workspace
from dmops.schedule import resolve_at
from dmops.timeutil import zone
from dmops.validate import ValidationReport, validate
from dmops.workspace import Workspace, find_workspace, load_workspace

app = typer.Typer(
    name="dmops",
    help="Plan, send and measure direct-message campaigns from a folder of YAML, CSV and Jinja files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)


@dataclass
class Options:
    """Global options, shared by every command."""

    workspace: Path | None
    show_pii: bool


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _fail(exc: DmopsError, root: Path | None = None) -> typer.Exit:
    """Print ``exc`` (every problem of a ProblemsFound) to stderr; the Exit to raise."""
    err = _console(stderr=True)
    problems = exc.problems if isinstance(exc, ProblemsFound) else [exc]
    for problem in problems:
        err.print(f"[red]error:[/red] {escape(problem.render(root))}")
    return typer.Exit(int(exc.exit_code))


def _version(value: bool) -> None:
    if value:
        print(f"dmops {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Workspace folder (default: $DMOPS_WORKSPACE, else the nearest dmops.yaml above the current folder).",
        ),
    ] = None,
    show_pii: Annotated[
        bool, typer.Option("--show-pii", help="Show emails, phones and names unmasked in messages.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """dmops: direct-message campaigns over local files."""
    ctx.obj = Options(workspace=workspace, show_pii=show_pii)


def _root(ctx: typer.Context) -> Path:
    options: Options = ctx.obj
    try:
        return find_workspace(options.workspace, os.environ, Path.cwd())
    except DmopsError as exc:
        raise _fail(exc) from None


def _finding(exc: DmopsError, severity: str, root: Path) -> dict[str, Any]:
    file = exc.location.file
    shown: str | None = None
    if file is not None:
        try:
            shown = str(file.resolve().relative_to(root.resolve()))
        except ValueError:
            shown = str(file)
    return {
        "severity": severity,
        "file": shown,
        "line": exc.location.line,
        "key": exc.location.key,
        "message": exc.message,
        "hint": exc.hint,
        "exit_code": int(exc.exit_code),
    }


def _print_report(report: ValidationReport, fmt: str) -> None:
    if fmt == "json":
        payload = {
            "ok": not report.errors,
            "exit_code": int(report.exit_code),
            "workspace": str(report.root),
            "campaigns": report.campaigns,
            "contacts": None
            if report.contacts is None
            else {
                "file": report.contacts.path.name,
                "rows": report.contacts.rows,
                "columns": report.contacts.columns,
                "quality": report.quality,
            },
            "errors": [_finding(e, "error", report.root) for e in report.errors],
            "warnings": [_finding(w, "warning", report.root) for w in report.warnings],
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    out = _console()
    for error in report.errors:
        out.print(f"[red]error:[/red] {escape(error.render(report.root))}")
    for warning in report.warnings:
        out.print(f"[yellow]warning:[/yellow] {escape(warning.render(report.root))}")
    if report.contacts is not None:
        out.print(
            f"contacts: {report.contacts.rows:,} rows, {len(report.contacts.columns)} columns ({report.contacts.path.name})"
        )
        counted = ", ".join(f"{name.replace('_', ' ')} {count:,}" for name, count in report.quality.items() if count)
        if counted:
            out.print(f"  not reachable or not consenting on some channel: {counted}")
    if report.campaigns:
        out.print(f"campaigns: {', '.join(report.campaigns)}")
    if report.errors:
        out.print(f"[red]{len(report.errors)} error(s)[/red], {len(report.warnings)} warning(s)")
    else:
        out.print(f"[green]ok[/green]: workspace is valid ({len(report.warnings)} warning(s))")


@app.command("validate")
def validate_command(
    ctx: typer.Context,
    campaigns: Annotated[
        list[str] | None, typer.Argument(help="Campaign ids or files (default: all in campaigns/).")
    ] = None,
    fmt: Annotated[Literal["table", "json"], typer.Option("--format", help="Output format.")] = "table",
) -> None:
    """Check the workspace, contacts, campaigns and templates; exit 0 when all is valid."""
    root = _root(ctx)
    report = validate(root, campaigns or [])
    _print_report(report, fmt)
    raise typer.Exit(int(report.exit_code))


@app.command("init")
def init_command(
    directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")] = Path("."),
) -> None:
    """Write a runnable sample workspace into DIRECTORY; never overwrites a file."""
    try:
        written = init_workspace(directory)
    except DmopsError as exc:
        raise _fail(exc) from None
    out = _console()
    out.print(f"wrote {len(written)} files to {escape(str(directory))}:")
    for relative in written:
        out.print(f"  {escape(relative)}")
    out.print(f"next: cd {escape(str(directory))} && dmops validate")


def _open(ctx: typer.Context, campaign_name: str) -> tuple[Workspace, Campaign]:
    root = _root(ctx)
    try:
        ws = load_workspace(root)
        return ws, load_campaign(find_campaign_file(ws, campaign_name), ws)
    except DmopsError as exc:
        raise _fail(exc, root) from None


def _bar(count: int, total: int, width: int = 24) -> str:
    if total <= 0 or count <= 0:
        return ""
    return "█" * max(1, round(width * count / total))


def _print_plan(summary: PlanSummary, campaign: Campaign, out_file: Path | None) -> None:
    from rich.table import Table

    out = _console()
    config = campaign.config
    out.print(
        f"plan {escape(summary.campaign)} ({escape(config.name)}): {config.channel}, {config.purpose}, "
        f"occurrence {summary.occurrence}, at {iso_z(summary.at)}"
    )
    table = Table(show_edge=False, pad_edge=False, box=None)
    table.add_column("", no_wrap=True)
    table.add_column("contacts", justify="right")
    table.add_column("share", justify="right")
    table.add_column("")
    total = summary.audience

    def share(n: int) -> str:
        return f"{100 * n / total:.1f}%" if total else "-"

    table.add_row("audience", f"{total:,}", share(total), _bar(total, total))
    for reason in REASONS:
        n = summary.excluded[reason]
        table.add_row(f"  − {reason}", f"{n:,}", share(n), _bar(n, total))
    table.add_row("to send", f"{summary.to_send:,}", share(summary.to_send), _bar(summary.to_send, total))
    for variant, n in summary.variants.items():
        table.add_row(f"  variant {escape(variant)}", f"{n:,}", share(n), _bar(n, total))
    out.print(table)
    if summary.first_send is not None and summary.last_send is not None:
        out.print(f"send times (UTC): {iso_z(summary.first_send)} … {iso_z(summary.last_send)}")
    for applied in summary.caps:
        out.print(f"cap: {escape(applied.describe())}")
    if out_file is not None:
        out.print(f"wrote one row per audience contact to {escape(str(out_file))}")
    out.print(f"nothing was sent; to send: dmops send {escape(summary.campaign)} --at {iso_z(summary.at)}")


def _print_explain(contact_id: str, checks: list[Check]) -> None:
    out = _console()
    out.print(f"\nexplain contact {escape(contact_id)}:")
    width = max(len(check.step) for check in checks)
    for check in checks:
        out.print(f"  {escape(check.step.ljust(width))}  {escape(check.outcome)}")
        for part in filter(None, check.detail.split("; ")):
            out.print(f"  {' ' * width}    {escape(part)}")


@app.command("plan")
def plan_command(
    ctx: typer.Context,
    campaign: Annotated[str, typer.Argument(help="Campaign id or campaign file.")],
    at: Annotated[
        str | None,
        typer.Option("--at", help="The run's instant, ISO 8601; naive means the workspace timezone. Default: now."),
    ] = None,
    fmt: Annotated[Literal["table", "json"], typer.Option("--format", help="Output format.")] = "table",
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write one row per audience contact to FILE (.csv or .parquet).")
    ] = None,
    explain_id: Annotated[
        str | None, typer.Option("--explain", metavar="CONTACT_ID", help="Print every check for one contact.")
    ] = None,
) -> None:
    """Show who would get CAMPAIGN, who would not and why, and when; writes nothing to the workspace."""
    options: Options = ctx.obj
    ws, loaded = _open(ctx, campaign)
    try:
        moment = resolve_at(at, datetime.now(UTC), zone(ws.config.timezone))
        con, summary = run_plan(ws, loaded, moment, out=out_file)
        try:
            checks = explain(con, ws, loaded, summary, explain_id, show_pii=options.show_pii) if explain_id else None
        finally:
            con.close()
    except DmopsError as exc:
        raise _fail(exc, ws.root) from None
    if fmt == "json":
        payload = summary.as_json()
        if checks is not None:
            payload["explain"] = [{"step": c.step, "outcome": c.outcome, "detail": c.detail} for c in checks]
        print(json.dumps(payload, ensure_ascii=False))
        return
    _print_plan(summary, loaded, out_file)
    if checks is not None and explain_id is not None:
        _print_explain(explain_id, checks)


def main() -> None:
    """Entry point of the ``dmops`` console script."""
    try:
        app(prog_name="dmops")
    except DmopsError as exc:  # a core error that no command caught: still a clean message
        _console(stderr=True).print(f"error: {escape(str(exc))}")
        sys.exit(int(exc.exit_code))


__all__ = ["ExitCode", "app", "main"]
