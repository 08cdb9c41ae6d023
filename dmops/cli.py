"""The ``dmops`` command line: parse options, call the core, print, exit with SPEC §10 codes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import duckdb
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from dmops import __version__, snapshot
from dmops.campaign import Campaign, find_campaign_file, load_campaign
from dmops.durable import write_atomic
from dmops.errors import DmopsError, ExitCode, Location, OutputError, ProblemsFound, UsageError
from dmops.plan import Check, PlanSummary, explain, iso_z, run_plan
from dmops.scaffold import init_workspace
from dmops.schedule import resolve_at
from dmops.sql import REASONS
from dmops.tabular import row_word
from dmops.timeutil import zone
from dmops.validate import ValidationReport, validate
from dmops.workspace import Workspace, find_workspace, load_workspace

if TYPE_CHECKING:
    from dmops.lint import WorkspaceLint

CampaignArgument = Annotated[str, typer.Argument(help="Campaign id or campaign file.")]
AtOption = Annotated[
    str | None,
    typer.Option("--at", help="The run's instant, ISO 8601; naive means the workspace timezone. Default: now."),
]


@dataclass
class Options:
    """Global options and the command's surroundings, shared by every command through ``ctx.obj``.

    ``now`` and ``interactive`` are the clock and the terminal check: a test passes its own as
    ``CliRunner().invoke(app, args, obj=Options(now=...))`` instead of patching module globals.
    """

    workspace: Path | None = None
    show_pii: bool = False
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    interactive: Callable[[], bool] = field(default=lambda: sys.stderr.isatty())
    root: Path | None = None  # the workspace, once found: error locations are shown relative to it
    interrupted: str = "nothing was written"  # what a Ctrl-C leaves behind, said by the running command


def _nothing_written(out_file: Path | None) -> str:
    """What a Ctrl-C leaves behind in a command that only writes its --out file (atomically)."""
    return "nothing was written" + (f" ({out_file.name} was not created or changed)" if out_file else "")


def _console(stderr: bool = False) -> Console:
    """Rich output; into a pipe or a file (cron, CI) tables keep their natural width instead of wrapping at 80
    columns (COLUMNS, when set, still decides)."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, highlight=False, emoji=False, soft_wrap=True, width=1_000 if piped else None)


def _interruption(exc: BaseException) -> bool:
    """Ctrl-C, however it arrives: as KeyboardInterrupt, or as DuckDB's interrupt wrapped in a dmops error."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt | duckdb.InterruptException):
            return True
        if isinstance(seen, RuntimeError) and str(seen) == "Query interrupted":  # DuckDB's word for Ctrl-C
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def exit_code_for(exc: BaseException, options: Options | None) -> int:
    """The one way from an exception to an exit code: say what happened on stderr, return the code (SPEC §10).

    A dmops error prints every problem it holds, file and line first; an interruption prints one line
    saying what the command had and had not written, and exits 130 (128 + SIGINT).
    """
    err = _console(stderr=True)
    if _interruption(exc):
        err.print(f"interrupted: {escape(options.interrupted if options else 'nothing was written')}")
        return 130
    assert isinstance(exc, DmopsError)
    root = options.root if options else None
    for problem in exc.problems if isinstance(exc, ProblemsFound) else [exc]:
        err.print(f"[red]error:[/red] {escape(problem.render(root))}")
    return int(exc.exit_code)


class _Commands(TyperGroup):
    """Every command runs inside :func:`exit_code_for`: no command handles errors itself."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click Context
        try:
            return super().invoke(ctx)
        except (DmopsError, KeyboardInterrupt, duckdb.InterruptException, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and not _interruption(exc):
                raise  # a bug: let it show
            options = ctx.obj if isinstance(ctx.obj, Options) else None
            raise typer.Exit(exit_code_for(exc, options)) from None


app = typer.Typer(
    name="dmops",
    cls=_Commands,
    help="Plan, send and measure direct-message campaigns from a folder of YAML, CSV and Jinja files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)


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
    os.umask(0o077)  # everything dmops creates (outbox, ledger, plan and report files) is owner-only
    ctx.call_on_close(snapshot.release)  # the command's connections are closed by then
    given = ctx.obj if isinstance(ctx.obj, Options) else Options()
    ctx.obj = replace(given, workspace=workspace, show_pii=show_pii)


def _root(ctx: typer.Context) -> Path:
    options: Options = ctx.obj
    options.root = find_workspace(options.workspace, os.environ, Path.cwd())
    return options.root


def _finding(exc: DmopsError, severity: str, root: Path) -> dict[str, Any]:
    return {
        "severity": severity,
        "file": exc.location.shown_file(root),
        "line": exc.location.line,
        "key": exc.location.key,
        "message": exc.message,
        "hint": exc.hint,
        "exit_code": int(exc.exit_code),
    }


def _print_report(report: ValidationReport, fmt: str) -> None:
    if fmt in ("github", "junit"):
        from dmops.validate import github_annotations, junit_report

        sys.stdout.write(github_annotations(report) if fmt == "github" else junit_report(report))
        return
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
                "encoding": report.contacts.encoding,
                "encoding_detected": report.contacts.detected,
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
        info = report.contacts
        encoding = ""
        if info.encoding is not None:
            encoding = f", {info.encoding.upper()}" + (" detected" if info.detected else "")
        out.print(f"contacts: {info.rows:,} rows, {len(info.columns)} columns ({escape(info.path.name)}{encoding})")
        shared = {n: c for n, c in report.quality.items() if n.endswith(SHARED) and c}
        counted = ", ".join(
            f"{name.replace('_', ' ')} {count:,}"
            for name, count in report.quality.items()
            if count and not name.endswith(SHARED)
        )
        if counted:
            out.print(f"  not reachable or not consenting on some channel: {counted}")
        if shared:
            listed = ", ".join(
                f"{name.removesuffix(SHARED).replace('_', ' ')} {count:,}" for name, count in shared.items()
            )
            out.print(f"  sharing an address with a contact of a smaller id (one message per address): {listed}")
    if report.campaigns:
        out.print(f"campaigns: {', '.join(report.campaigns)}")
    if report.errors:
        out.print(f"[red]{len(report.errors)} error(s)[/red], {len(report.warnings)} warning(s)")
    else:
        out.print(f"[green]ok[/green]: workspace is valid ({len(report.warnings)} warning(s))")


SHARED = "_shared_with_another_contact"


@app.command("validate")
def validate_command(
    ctx: typer.Context,
    campaigns: Annotated[
        list[str] | None, typer.Argument(help="Campaign ids or files (default: all in campaigns/).")
    ] = None,
    fmt: Annotated[
        Literal["table", "json", "github", "junit"],
        typer.Option("--format", help="table, json, github (workflow annotations) or junit (JUnit XML)."),
    ] = "table",
) -> None:
    """Check the workspace, contacts, campaigns and templates; exit 0 when all is valid."""
    root = _root(ctx)
    report = validate(root, campaigns or [])
    _print_report(report, fmt)
    raise typer.Exit(int(report.exit_code))


@app.command("init")
def init_command(
    directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")] = Path("."),
    contacts: Annotated[
        Path | None,
        typer.Option("--contacts", help="Write a workspace around this contact export instead of the sample."),
    ] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="With --contacts: the workspace timezone (default: guessed).")
    ] = None,
    phone_region: Annotated[
        str | None, typer.Option("--phone-region", help="With --contacts: region of phones without + (e.g. CN).")
    ] = None,
) -> None:
    """Write a runnable sample workspace into DIRECTORY, or one around your own contacts; never overwrites."""
    from dmops.scaffold import init_from_contacts

    if contacts is not None:
        written = init_from_contacts(directory, contacts, timezone=timezone, phone_region=phone_region)
    else:
        written = init_workspace(directory)
    out = _console()
    out.print(f"wrote {len(written)} files to {escape(str(directory))}:")
    for relative in written:
        out.print(f"  {escape(relative)}")
    out.print(f"next: cd {escape(str(directory))} && dmops validate")


def _open(ctx: typer.Context, campaign_name: str) -> tuple[Workspace, Campaign]:
    ws = _workspace(ctx)
    return ws, load_campaign(find_campaign_file(ws, campaign_name), ws)


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
    campaign: CampaignArgument,
    at: AtOption = None,
    fmt: Annotated[
        Literal["table", "json", "md", "github"],
        typer.Option("--format", help="Output format (md and github with --diff)."),
    ] = "table",
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write one row per audience contact to FILE (.csv or .parquet).")
    ] = None,
    explain_id: Annotated[
        str | None, typer.Option("--explain", metavar="CONTACT_ID", help="Print every check for one contact.")
    ] = None,
    base: Annotated[
        Path | None,
        typer.Option("--diff", metavar="BASE", help="Compare with an earlier --out file: who joins, leaves or moves."),
    ] = None,
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on", help="With --diff: exit 1 past a threshold, e.g. 'send:-5%' or 'joined:suppressed>0'."
        ),
    ] = None,
) -> None:
    """Show who would get CAMPAIGN, who would not and why, and when; writes nothing to the workspace."""
    from dmops import plandiff

    options: Options = ctx.obj
    if base is None and (fail_on or fmt in ("md", "github")):
        raise UsageError("--fail-on and --format md or github go with --diff BASE")
    if base is not None and explain_id is not None:
        raise UsageError("--diff and --explain do not go together: run them one at a time")
    thresholds = [plandiff.threshold(t) for t in fail_on or []]
    ws, loaded = _open(ctx, campaign)
    options.interrupted = _nothing_written(out_file)
    moment = resolve_at(at, options.now(), zone(ws.config.timezone))
    con, summary = run_plan(ws, loaded, moment, out=out_file, reads=[base] if base is not None else [])
    try:
        checks = explain(con, ws, loaded, summary, explain_id, show_pii=options.show_pii) if explain_id else None
        diff = plandiff.compare(con, loaded.id, base) if base is not None else None
    finally:
        con.close()
    if diff is not None:
        failed = plandiff.check(diff, thresholds)
        _print_diff(diff, fmt, loaded.path, ws.root, options.show_pii)
        if failed:
            if fmt in ("table", "json"):
                for found in failed:
                    _console(stderr=True).print(f"threshold crossed: {escape(found)}")
            raise typer.Exit(int(ExitCode.FAILURE))
        return
    if fmt == "json":
        payload = summary.as_json()
        if checks is not None:
            payload["explain"] = [{"step": c.step, "outcome": c.outcome, "detail": c.detail} for c in checks]
        print(json.dumps(payload, ensure_ascii=False))
        return
    _print_plan(summary, loaded, out_file)
    if checks is not None and explain_id is not None:
        _print_explain(explain_id, checks)


def _print_diff(diff: Any, fmt: str, campaign_file: Path, root: Path, show_pii: bool) -> None:
    from rich.table import Table

    from dmops import plandiff

    if fmt == "json":
        print(json.dumps(diff.as_json(), ensure_ascii=False))
    elif fmt == "md":
        print(plandiff.markdown(diff, show_pii), end="")
    elif fmt == "github":
        shown = Location(file=campaign_file).shown_file(root) or str(campaign_file)
        print(plandiff.github(diff, shown, show_pii), end="")
    else:
        header, rows = plandiff.table_rows(diff, show_pii)
        out = _console()
        for line in header:
            out.print(escape(line))
        if not rows:
            out.print("No contact changes state.")
            return
        table = Table(box=None, pad_edge=False)
        for name in ("from", "to", "contacts", "e.g."):
            table.add_column(name, justify="right" if name == "contacts" else "left")
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        out.print(table)


@app.command("send")
def send_command(
    ctx: typer.Context,
    campaign: CampaignArgument,
    at: AtOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render every message and report; write nothing.")] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=0, help="Send only the first N eligible contacts by contact id.")
    ] = None,
    skip_lint: Annotated[
        bool, typer.Option("--skip-lint", help="Send even when the error-level lint rules fire (printed loudly).")
    ] = False,
) -> None:
    """Render CAMPAIGN and write its messages to the outbox; a rerun sends nothing twice.

    The error-level rules of `dmops lint` run first: on an error nothing is sent (exit 1).
    """
    from dmops.send import StoppedDuringSend, send

    options: Options = ctx.obj
    ws, loaded = _open(ctx, campaign)
    options.interrupted = (
        "nothing was written"
        if dry_run
        else f"this run's messages were not all written and recorded; `dmops send {campaign}` again "
        "completes the occurrence without sending any message twice"
    )
    if skip_lint:
        _console(stderr=True).print(
            "[bold red]WARNING: --skip-lint: content and compliance checks were NOT run for this send[/]"
        )
    moment = resolve_at(at, options.now(), zone(ws.config.timezone))
    with _progress(options.interactive(), "rendering") as progress:
        try:
            result = send(
                ws,
                loaded,
                moment,
                dry_run=dry_run,
                limit=limit,
                show_pii=options.show_pii,
                progress=progress,
                lint=not skip_lint,
            )
        except StoppedDuringSend as stopped:
            _print_send(stopped.result, ws)
            raise
    _print_send(result, ws)


@contextmanager
def _progress(interactive: bool, label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A transient progress bar on stderr when it is a terminal: yields the callback to update it, else None."""
    if not interactive:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _print_send(result: Any, ws: Workspace) -> None:
    out = _console()
    summary = result.summary
    head = f"{summary.campaign} {summary.occurrence}:"
    already = summary.excluded["already_sent"]
    if result.recovered:
        out.print(f"{head} recorded {result.recovered:,} messages of an interrupted earlier run")
    if result.dry_run:
        out.print(
            f"{head} dry run: {result.written:,} messages rendered, nothing written "
            f"({already:,} already sent, {summary.excluded['holdout']:,} holdout)"
        )
        out.print(f"to send for real: dmops send {summary.campaign} --at {iso_z(summary.at)}")
        return
    if result.run is None:
        line = f"{head} nothing new to send: {already:,} already sent"
    else:
        where = result.folder.relative_to(ws.root) if result.folder is not None else result.run
        line = f"{head} wrote {result.written:,} messages to {escape(str(where))} ({already:,} already sent"
        line += ")"
    extras = []
    if result.holdouts:
        extras.append(f"{result.holdouts:,} holdout assignments recorded")
    if result.remaining:
        extras.append(f"{result.remaining:,} eligible contacts left for a later run")
    out.print(line + ("; " + "; ".join(extras) if extras else ""))


@app.command("stop")
def stop_command(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option("--reason", help="Why sending is stopped (shown to whoever runs send).")] = "",
) -> None:
    """Emergency stop: no send starts, and a running send halts after its current batch."""
    from dmops.runlock import request_stop

    ws = _workspace(ctx)
    path = request_stop(ws, reason)
    _console().print(f"stopped: {escape(str(path.relative_to(ws.root)))} written; `dmops resume` lifts it")


@app.command("resume")
def resume_command(ctx: typer.Context) -> None:
    """Lift an emergency stop (remove the STOP file)."""
    from dmops.runlock import resume

    ws = _workspace(ctx)
    _console().print("resumed: the STOP file is removed" if resume(ws) else "nothing to resume: there was no STOP file")


outbox_app = typer.Typer(help="Work with the outbox.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")


@outbox_app.command("export")
def outbox_export_command(
    ctx: typer.Context,
    eml: Annotated[Path, typer.Option("--eml", help="Folder to write one .eml file per email message into.")],
    campaign: Annotated[str | None, typer.Argument(help="Only this campaign id (default: all).")] = None,
) -> None:
    """Write outbox email messages as .eml files a mail client opens."""
    from dmops.export import export_eml
    from dmops.forget import check_not_pending

    ws = _workspace(ctx)
    check_not_pending(ws)  # an unfinished erasure: its person's messages may still be in the outbox
    count = export_eml(ws.outbox_dir, eml, campaign)
    _console().print(f"wrote {count:,} .eml files to {escape(str(eml))}")


@app.command("deliver")
def deliver_command(
    ctx: typer.Context,
    campaigns: Annotated[list[str] | None, typer.Argument(help="Campaign ids (default: every campaign).")] = None,
    at: AtOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the configuration and count what is due; connect to nothing.")
    ] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=0, help="Hand over at most N messages.")] = None,
    in_doubt: Annotated[
        Literal["hold", "resend"],
        typer.Option("--in-doubt", help="hold: list messages a server may have taken; resend: send them again."),
    ] = "hold",
    status: Annotated[
        bool, typer.Option("--status", help="Show the delivery states per campaign; send nothing.")
    ] = False,
    fmt: Annotated[Literal["table", "json"], typer.Option("--format", help="Output format.")] = "table",
) -> None:
    """Hand due outbox messages to the transports of dmops.yaml; exit 75 while deferred messages wait."""
    from dmops.deliver import deliver, delivery_status
    from dmops.deliver import dry_run as count_due

    options: Options = ctx.obj
    ws = _workspace(ctx)
    if status:
        _print_delivery_status(delivery_status(ws, campaigns or []), fmt)
        return
    moment = resolve_at(at, options.now(), zone(ws.config.timezone))
    if dry_run:
        _print_dry_run(moment, count_due(ws, moment, campaigns or []), fmt)
        return
    options.interrupted = (
        "messages handed over so far are recorded; `dmops deliver` again goes on where this run stopped"
    )
    if in_doubt == "resend":
        _console(stderr=True).print(
            "[bold red]WARNING: --in-doubt resend: messages a server may already have taken are sent again; "
            "some recipients may get them twice[/]"
        )
    with _delivery_progress(options.interactive()) as progress:
        result = deliver(
            ws, moment, campaigns or [], limit=limit, resend_in_doubt=in_doubt == "resend", progress=progress
        )
    _print_delivery(result, fmt)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@contextmanager
def _delivery_progress(interactive: bool) -> Iterator[Callable[[str, str], None] | None]:
    """A progress bar per transport on a terminal (messages handed over, by state), else None."""
    if not interactive:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=_console(stderr=True), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(transport: str, state: str) -> None:
            if transport not in tasks:
                tasks[transport] = bar.add_task(transport, total=None)
            bar.advance(tasks[transport])

        yield update


def _print_delivery(result: Any, fmt: str) -> None:
    transports = [
        {"transport": t.name, "kind": t.kind, "states": dict(sorted(t.states.items())), "stopped": t.stopped}
        for t in result.transports.values()
    ]
    if fmt == "json":
        payload = {
            "at": iso_z(result.at),
            "transports": transports,
            "in_doubt": result.in_doubt,
            "recovered_in_doubt": result.recovered,
            "deferred_waiting": result.waiting,
            "not_handed_over": result.left,
            "stopped": result.stopped,
            "bounces_recorded": result.bounces_recorded,
            "exit_code": result.exit_code,
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    out = _console()
    parts = []
    for t in transports:
        counts = ", ".join(f"{n:,} {state}" for state, n in t["states"].items()) or "nothing due"
        why = f" (stopped: {t['stopped']})" if t["stopped"] else ""
        parts.append(f"{escape(t['transport'])}: {counts}{escape(why)}")
    out.print(f"deliver at {iso_z(result.at)}: " + ("; ".join(parts) if parts else "no transport configured"))
    if result.recovered:
        out.print(f"{result.recovered:,} message(s) were in flight when a run was killed: now in_doubt")
    if result.in_doubt:
        shown = ", ".join(result.in_doubt[:10]) + (" …" if len(result.in_doubt) > 10 else "")
        out.print(
            f"[yellow]{len(result.in_doubt):,} message(s) in doubt[/yellow] (a server may have taken them): "
            f"{escape(shown)}; held — `dmops deliver --in-doubt resend` sends them again"
        )
    if result.stopped is not None:
        out.print("[red]stopped by the STOP file[/red]" + (f": {escape(result.stopped)}" if result.stopped else ""))
    if result.waiting or result.left:
        out.print(
            f"{result.waiting:,} deferred message(s) wait for a retry, {result.left:,} due message(s) not handed over;"
            " run `dmops deliver` again later (exit 75)"
        )


def _print_delivery_status(rows: list[tuple[str, str, int]], fmt: str) -> None:
    if fmt == "json":
        payload: dict[str, dict[str, int]] = {}
        for campaign, state, count in rows:
            payload.setdefault(campaign, {})[state] = count
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    out = _console()
    if not rows:
        out.print("no message has been delivered yet")
    by_campaign: dict[str, list[str]] = {}
    for campaign, state, count in rows:
        by_campaign.setdefault(campaign, []).append(f"{count:,} {state}")
    for campaign, counts in by_campaign.items():
        out.print(f"{escape(campaign)}: {', '.join(counts)}")


def _print_dry_run(moment: datetime, found: list[Any], fmt: str) -> None:
    if fmt == "json":
        payload = {
            "at": iso_z(moment),
            "dry_run": True,
            "transports": [
                {
                    "transport": d.transport,
                    "kind": d.kind,
                    "where": d.where,
                    "channel": d.channel,
                    "due": d.messages,
                    "first_send_after": iso_z(d.first) if d.first else None,
                    "last_send_after": iso_z(d.last) if d.last else None,
                    "seconds": round(d.seconds, 1),
                }
                for d in found
            ],
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    out = _console()
    out.print(f"deliver --dry-run at {iso_z(moment)}: nothing is sent, no connection is opened")
    if not found:
        out.print("no outbox message is due")
    for d in found:
        span = f" ({iso_z(d.first)} … {iso_z(d.last)})" if d.first and d.last else ""
        took = f"about {_duration(d.seconds)}" if d.seconds else "no rate limit"
        out.print(
            f"{escape(d.transport)} ({d.kind}, {escape(d.where)}): {d.messages:,} {d.channel} messages due{span};"
            f" {took}"
        )
    if found:
        out.print("to hand them over, run the same command without --dry-run")


def _duration(seconds: float) -> str:
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    return "".join(parts) + (f"{secs}s" if secs or not any(parts) else "")


contacts_app = typer.Typer(help="Look at contact exports.", no_args_is_help=True)
app.add_typer(contacts_app, name="contacts")


@contacts_app.command("inspect")
def contacts_inspect_command(
    file: Annotated[Path, typer.Argument(help="A contact export: CSV, Parquet or .xlsx.")],
    encoding: Annotated[str, typer.Option("--encoding", help="auto, utf-8, gb18030, …")] = "auto",
    sheet: Annotated[str | None, typer.Option("--sheet", help=".xlsx: the sheet (default: the first).")] = None,
    fmt: Annotated[Literal["table", "json"], typer.Option("--format", help="Output format.")] = "table",
) -> None:
    """Show FILE's columns, encoding and row count, and the contacts mapping to paste into dmops.yaml."""
    from rich.table import Table

    from dmops.inspect import inspect_file

    found = inspect_file(file, encoding=encoding, sheet=sheet)
    shown = str(file)
    if fmt == "json":
        payload = {
            "file": shown,
            "encoding": found.encoding,
            "rows": found.rows,
            "columns": [
                {"header": c.header, "filled": c.filled, "distinct": c.distinct, "emails": c.emails, "phones": c.phones}
                for c in found.columns
            ],
            "mapping": found.mapping,
            "consent": found.consent,
            "yaml": found.yaml(shown),
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    out = _console()
    encoding_text = (
        f", {found.encoding.upper()}" + (" detected" if encoding == "auto" else "") if found.encoding else ""
    )
    out.print(f"{escape(shown)}: {found.rows:,} rows, {len(found.columns)} columns{encoding_text}")
    roles = {header: name for name, header in found.mapping.items()}
    roles.update({c["column"]: f"consent.{channel}" for channel, c in found.consent.items()})
    table = Table(show_edge=False, pad_edge=False, box=None)
    for title in ("column", "filled", "distinct", "emails", "phones", "looks like"):
        table.add_column(title, justify="left" if title in ("column", "looks like") else "right", no_wrap=True)
    for c in found.columns:
        table.add_row(
            escape(c.header),
            f"{c.filled:,}",
            f"{c.distinct:,}",
            f"{c.emails:,}",
            f"{c.phones:,}",
            roles.get(c.header, ""),
        )
    out.print(table)
    out.print("paste into dmops.yaml (and check it):")
    out.print(escape(found.yaml(shown)), end="", highlight=False)


events_app = typer.Typer(help="Import delivery, engagement and conversion events.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command("import")
def events_import_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Events file: CSV, Parquet or JSON lines.")],
    fmt: Annotated[
        Literal["dmops", "sendgrid", "twilio", "aliyun_sms"],
        typer.Option("--format", help="dmops (the columns of SPEC §8), or a provider's own export."),
    ] = "dmops",
) -> None:
    """Validate FILE and add its new events; the same file twice adds nothing."""
    from dmops.events import import_events
    from dmops.receipts import import_receipts

    options: Options = ctx.obj
    ws = _workspace(ctx)
    options.interrupted = f"no events of {file.name} were imported (an import is one transaction)"
    if fmt != "dmops":
        found = import_receipts(ws, file, fmt, now=options.now())
        r = found.result
        ignored = ", ".join(f"{n:,} {why}" for why, n in sorted(found.ignored.items()))
        _console().print(
            f"{escape(file.name)} ({fmt}): {found.rows:,} rows, {r.imported if r else 0:,} imported, "
            f"{r.duplicates if r else 0:,} already there; {r.suppressions if r else 0:,} suppressions added; "
            f"{found.unmatched:,} about messages dmops did not send"
            + (f"; ignored: {escape(ignored)}" if ignored else "")
        )
        return
    result = import_events(ws, file, now=options.now())
    _console().print(
        f"{escape(result.file.name)}: {result.rows:,} rows, {result.imported:,} imported, "
        f"{result.duplicates:,} already there; {result.suppressions:,} suppressions added"
    )
    for kind, count in result.impossible.items():
        _console(stderr=True).print(
            f"[yellow]warning:[/yellow] {escape(result.file.name)}: {count:,} {kind}; imported all the same"
        )


bounces_app = typer.Typer(help="Import bounce and complaint messages.", no_args_is_help=True)
app.add_typer(bounces_app, name="bounces")


@bounces_app.command("import")
def bounces_import_command(
    ctx: typer.Context,
    mailbox: Annotated[Path, typer.Argument(help="An mbox file, a Maildir folder or one .eml file.")],
    fmt: Annotated[Literal["table", "json"], typer.Option("--format", help="Output format.")] = "table",
) -> None:
    """Read delivery status notifications (RFC 3464) and feedback reports (RFC 5965) as bounce and complaint
    events; other mail is counted and ignored; the same mailbox twice adds nothing."""
    from dmops.bounces import import_bounces

    options: Options = ctx.obj
    ws = _workspace(ctx)
    options.interrupted = "no events were imported (an import is one transaction)"
    found = import_bounces(ws, mailbox, now=options.now())
    imported = found.result.imported if found.result else 0
    suppressions = found.result.suppressions if found.result else 0
    if fmt == "json":
        payload = {
            "mailbox": str(mailbox),
            "messages": found.messages,
            "imported": imported,
            "already_there": found.result.duplicates if found.result else 0,
            "suppressions": suppressions,
            "unmatched": found.unmatched,
            "ignored": dict(sorted(found.ignored.items())),
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    ignored = ", ".join(f"{n:,} {why}" for why, n in sorted(found.ignored.items())) or "none"
    _console().print(
        f"{escape(mailbox.name)}: {found.messages:,} messages, {imported:,} events imported, "
        f"{suppressions:,} suppressions added; {found.unmatched:,} reports about mail dmops did not send; "
        f"ignored: {escape(ignored)}"
    )


@app.command("forget")
def forget_command(
    ctx: typer.Context,
    contact_ids: Annotated[list[str] | None, typer.Argument(help="Contact ids of the people to erase.")] = None,
    address: Annotated[
        list[str] | None, typer.Option("--address", help="An email, phone or DM handle to erase (repeatable).")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="A text file of contact ids (one per line), or a CSV with contact_id/address."),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit line).")] = None,
) -> None:
    """Erase people from the outbox, the ledger and the events, and keep them out of every later plan
    (SPEC §12); with no arguments, finish an interrupted erasure."""
    from dmops.forget import forget
    from dmops.timeutil import naive_utc

    options: Options = ctx.obj
    ws = _workspace(ctx)
    options.interrupted = "the erasure is unfinished: run `dmops forget` again to finish it"
    result = forget(ws, contact_ids or [], address or [], file, reason=reason, now=naive_utc(options.now()))

    def n(count: int, word: str) -> str:
        plural = word[:-1] + "ies" if word.endswith("y") else word + ("es" if word.endswith("ss") else "s")
        return f"{count:,} {word if count == 1 else plural}"

    _console().print(
        f"forgot {n(result.ids, 'contact id')} and {n(result.addresses, 'address')}: "
        f"{n(result.outbox_lines, 'outbox line')} removed, {n(result.entries, 'ledger entry')} and "
        f"{n(result.events, 'event')} pseudonymised, {n(result.suppressions, 'suppression')} replaced by "
        f"{n(result.tombstones, 'new tombstone')}, {n(result.journal_lines, 'delivery journal line')} cleared"
    )
    for seen in result.still_in:
        shown = seen.file.relative_to(ws.root) if seen.file.is_relative_to(ws.root) else seen.file
        where = f"{shown}:{seen.line}" if row_word(seen.file) == "line" else f"{shown} row {seen.line}"
        _console(stderr=True).print(
            f"[yellow]warning:[/yellow] {escape(where)} still holds them ({escape(seen.shown)}): "
            f"remove the {row_word(seen.file)} at its source"
        )


@app.command("gc")
def gc_command(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")] = False,
    at: AtOption = None,
) -> None:
    """Delete outbox runs and events older than `retention` in dmops.yaml (SPEC §12)."""
    from dmops.gc import gc

    options: Options = ctx.obj
    ws = _workspace(ctx)
    options.interrupted = "gc stopped: what it deleted is gone, the rest is kept; run it again"
    result = gc(ws, resolve_at(at, options.now(), zone(ws.config.timezone)), dry_run=dry_run)
    retention = ws.config.retention
    verb = "would delete" if dry_run else "deleted"
    parts = []
    if retention.outbox:
        messages = sum(n for _, n in result.runs)
        parts.append(f"{len(result.runs):,} outbox runs ({messages:,} messages) older than {retention.outbox}")
    if retention.events:
        parts.append(f"{result.events:,} events older than {retention.events}")
    _console().print(f"gc {verb} " + " and ".join(parts) + ("; nothing was changed" if dry_run else ""))


@app.command("lint")
def lint_command(
    ctx: typer.Context,
    campaigns: Annotated[list[str] | None, typer.Argument(help="Campaign ids or files (default: all).")] = None,
    fmt: Annotated[
        Literal["table", "json", "github", "junit"],
        typer.Option("--format", help="table, json, github (workflow annotations) or junit (JUnit XML)."),
    ] = "table",
    at: AtOption = None,
    sample: Annotated[int, typer.Option("--sample", min=1, help="Real contacts rendered per variant.")] = 200,
) -> None:
    """Render every variant for sample and edge contacts and check compliance and deliverability; exit 1 on an error."""
    from dmops.campaign import campaign_files
    from dmops.lint import lint_workspace

    options: Options = ctx.obj
    ws = _workspace(ctx)
    options.interrupted = "nothing was written (lint only reads)"
    paths = [find_campaign_file(ws, n) for n in campaigns] if campaigns else campaign_files(ws)
    moment = resolve_at(at, options.now(), zone(ws.config.timezone))
    result = lint_workspace(ws, [load_campaign(p, ws) for p in paths], moment, sample)
    _print_lint(result, fmt)
    if result.errors:
        raise typer.Exit(int(ExitCode.FAILURE))


def _print_lint(result: WorkspaceLint, fmt: str) -> None:
    from dmops.lint import github_annotations, junit_report

    if fmt == "json":
        _emit(json.dumps(result.as_json(), ensure_ascii=False, indent=2), None)
        return
    if fmt == "github":
        sys.stdout.write(github_annotations(result.findings, result.root))
        return
    if fmt == "junit":
        sys.stdout.write(junit_report(result))
        return
    out = _console()
    for f in result.findings:
        colour = "red" if f.severity == "error" else "yellow"
        out.print(
            f"{escape(result.shown_file(f) or f.campaign)}:{f.line or ''}: [{colour}]{f.severity}[/] {f.rule} "
            f"({escape(f.campaign)}/{escape(f.variant)}/{f.part}): {escape(f.message)}"
            + (f" [{f.contacts} sample contacts]" if f.contacts > 1 else "")
        )
        out.print(f"    fix: {escape(f.hint)}")
    out.print(
        f"{len(result.campaigns)} campaign(s), {result.rendered:,} messages rendered: "
        f"{result.errors} error(s), {len(result.findings) - result.errors} warning(s)"
    )


@app.command("report")
def report_command(
    ctx: typer.Context,
    campaigns: Annotated[
        list[str] | None, typer.Argument(help="Campaign ids or files (default: all), or 'retention'.")
    ] = None,
    fmt: Annotated[
        Literal["table", "json", "csv", "md", "html"], typer.Option("--format", help="Output format.")
    ] = "table",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the report to FILE instead of stdout.")] = None,
    occurrence: Annotated[str | None, typer.Option("--occurrence", help="Only this occurrence.")] = None,
    check_goals: Annotated[bool, typer.Option("--check-goals", help="Exit 1 when a goal is missed.")] = False,
    period: Annotated[
        str | None,
        typer.Option("--period", help="month or quarter: every campaign summed per period; retention: month or week."),
    ] = None,
    event: Annotated[str, typer.Option("--event", help="retention: the event that counts.")] = "conversion",
    at: AtOption = None,
    months: Annotated[int, typer.Option("--months", help="lifecycle: how many months, ending with --at's.")] = 12,
    threshold: Annotated[
        float, typer.Option("--threshold", help="fatigue: the unsubscribe rate that suggests a cap.")
    ] = 0.005,
) -> None:
    """Open, click, conversion, revenue per campaign and variant, lift vs holdout, A/B tests and goals.

    Also: 'retention' (cohorts), 'lifecycle' (stages per month, flows, churn) and 'fatigue'
    (unsubscribe and complaint rates by recent message count).
    """
    from dmops.report.run import Request, run_report

    options: Options = ctx.obj
    ws = _workspace(ctx)
    options.interrupted = _nothing_written(out_file)
    moment = resolve_at(at, options.now(), zone(ws.config.timezone))
    request = Request(campaigns or [], fmt, occurrence, period, event, moment, months, threshold)
    output = run_report(ws, request)
    if output.text is None:
        _print_report_table(output.reports)
    else:
        _emit(output.text, out_file)
    if check_goals and output.goals_missed:
        if period is None:
            _console(stderr=True).print(f"{output.goals_missed} goal(s) missed")
        raise typer.Exit(int(ExitCode.FAILURE))


def _print_report_table(reports: list[Any]) -> None:
    from rich.table import Table

    from dmops.report.formats import SHOWN, decisions_text, fmt, lift_text
    from dmops.report.kpis import DEFINITIONS

    out = _console()
    for report in reports:
        table = Table(title=f"{report.campaign} — {report.name}", title_justify="left", box=None, pad_edge=False)
        table.add_column("variant", no_wrap=True)
        short = {
            "recipients": "recip.",
            "delivered": "deliv.",
            "open_rate": "open",
            "click_rate": "click",
            "ctor": "CTOR",
            "conversion_rate": "conv.",
            "revenue_per_recipient": "rev/recip.",
        }
        for key in SHOWN:
            table.add_column(short.get(key, key), justify="right", no_wrap=True)
        table.add_column("conv. lift vs holdout [95% CI]", justify="right")
        for row in report.rows:
            lift = (row.get("lift") or {}).get("conversion_rate")
            table.add_row(escape(row["variant"]), *[fmt(row.get(k), k) for k in SHOWN], escape(lift_text(lift)))
        out.print(table)
        for goal in report.goals:
            state = {True: "[green]met[/green]", False: "[red]missed[/red]", None: "no data"}[goal["met"]]
            out.print(
                f"  goal {goal['metric']}: {fmt(goal['actual'], goal['metric'])} vs {fmt(goal['target'], goal['metric'])} — {state}"
            )
        if report.ab["sample_ratio"].get("mismatch"):
            out.print(f"  [red]sample ratio mismatch[/red] (p = {report.ab['sample_ratio']['p_value']:.2g})")
        decided = decisions_text(report.decisions)
        if decided:
            out.print(f"  {escape(decided)}")
    out.print("formulas:")
    for key, formula in DEFINITIONS.items():
        out.print(f"  {key}: {escape(formula)}")


def _emit(text: str, out_file: Path | None) -> None:
    if out_file is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        write_atomic(out_file, text)
    except OSError as exc:
        raise OutputError(f"cannot write the report: {exc.strerror}", file=out_file) from None
    _console(stderr=True).print(f"wrote {escape(str(out_file))}")


def _workspace(ctx: typer.Context) -> Workspace:
    root = _root(ctx)
    return load_workspace(root)


def main() -> None:
    """Entry point of the ``dmops`` console script."""
    app(prog_name="dmops")


__all__ = ["ExitCode", "Options", "app", "exit_code_for", "main"]
