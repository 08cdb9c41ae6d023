"""``dmops lint``: content compliance and deliverability checks on rendered messages, as a CI gate.

Every variant is rendered (with the same sandboxed Jinja as ``send``) for a
sample of real contacts and for two edge contacts built from the data: one
with every optional column blank and one with the longest value of each
column. The rendered subject, text and HTML are checked; each finding has a
rule id, a severity, the campaign, variant and part, the template file and
line where it can be traced, and a hint.

Rules (``error`` fails ``dmops lint`` with exit 1 and stops ``dmops send``):

=========================  ========  ===========================================================
``claim.banned``           error     a banned claim (zh/en lists shipped in ``dmops/data/lint``,
                                     plus ``lint.extra_terms``) in the rendered text, matched
                                     after NFKC normalisation (full-width characters), case
                                     folding, and with spaces, zero-width and joiner characters
                                     removed; ``lint.allow`` phrases are masked first
``email.unsubscribe-link`` error     marketing email: a text or HTML part without the rendered
                                     unsubscribe URL
``email.one-click``        error     marketing email: no https unsubscribe URL, so no RFC 8058
                                     ``List-Unsubscribe``/``List-Unsubscribe-Post`` headers
``email.postal-address``   error     marketing email without ``lint.postal_address`` (when set)
``sms.opt-out``            error     marketing SMS without an opt-out instruction in its language
                                     (Chinese text: 退订; otherwise STOP, unsubscribe or opt out)
``sms.signature``          error     marketing SMS without ``lint.sms_signature`` (when set)
``template.unguarded``     error     a variable with no ``default`` or ``if`` guard fails for a
                                     contact whose value is blank (the column has blanks)
``template.render``        error     the template fails for a sample contact in another way
``template.variable``      error     a name that is no column or built-in (with the column it likely
                                     meant), or a header printed as text (``{{ "Total Spent" }}``)
``template.utm``           error     ``lint.utm: required`` and a link without ``utm_`` parameters
                                     (the unsubscribe URL is exempt)
``sms.ucs2``               warning   an SMS that is UCS-2 only because of a few characters (an
                                     emoji, a curly quote): removing them would make it GSM-7
``sms.segments``           warning   an SMS longer than ``lint.max_sms_segments`` (default 3)
``email.subject-length``   warning   a subject longer than 60 characters
``email.all-caps``         warning   more than half of a subject's letters are capitals (8+ letters)
``email.header-control``   warning   a subject with control characters (CR, LF, tab, NUL), sent as spaces
``content.exclamations``   warning   a run of two or more ``!`` (full-width ones too)
``email.link-count``       warning   more than 10 links in a part
``email.image-only``       warning   HTML with images and under 50 characters of visible text
``email.no-text-part``     warning   HTML email without a text part
=========================  ========  ===========================================================
"""

from __future__ import annotations

import html as htmllib
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import duckdb

from dmops.campaign import Campaign, Template
from dmops.contacts import TEXT_COLUMNS
from dmops.db import quote_ident
from dmops.errors import DmopsError, ExitCode, Location, UsageError
from dmops.message import Renderer, one_click_headers
from dmops.render import BudgetExceeded, Unknown, has_header_control, unknown_names, variables
from dmops.sms import GSM7_BASIC, GSM7_EXTENSION, measure, non_gsm_characters
from dmops.workspace import LintConfig, Workspace

SUBJECT_MAX = 60
MAX_LINKS = 10
SAMPLE = 200
LINT_SECRET = b"dmops-lint" * 4  # tokens in lint renders are never used to send
_REMOVED = re.compile(r"[\s\u200b\u200c\u200d\u2060\ufeff·・*_\-.]+")
_URL = re.compile(r"https?://[^\s\"'<>)]+")
_TAG = re.compile(r"<[^>]*>")
_HREF = re.compile(r"""href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


@dataclass
class Finding:
    """One problem, where it can be traced, and what to do."""

    rule: str
    severity: str
    campaign: str
    variant: str
    part: str
    message: str
    hint: str
    file: str | None = None
    line: int | None = None
    contacts: int = 1  # sample contacts it occurred for

    def key(self) -> tuple[str, str, str, str, str]:
        return (self.rule, self.campaign, self.variant, self.part, self.message)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class LintFailed(DmopsError):
    """``send`` found error-level lint findings and refuses to send."""

    exit_code = ExitCode.FAILURE

    def __init__(self, findings: list[Finding]) -> None:
        shown = "; ".join(f"{f.rule} ({f.variant}/{f.part}): {f.message}" for f in findings[:5])
        more = f"; and {len(findings) - 5} more" if len(findings) > 5 else ""
        super().__init__(
            f"{len(findings)} lint error(s), nothing was sent: {shown}{more}",
            hint="`dmops lint CAMPAIGN` shows each with its file, line and fix; --skip-lint sends anyway",
        )
        self.findings = findings


@dataclass
class LintResult:
    findings: list[Finding] = field(default_factory=list)
    rendered: int = 0  # messages rendered and checked

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


# --- banned claims ------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Text as claims are matched: NFKC (full-width to ASCII), case-folded, spaces and joiners removed."""
    return _REMOVED.sub("", unicodedata.normalize("NFKC", text).casefold())


@cache
def shipped_terms() -> dict[str, tuple[str, ...]]:
    """The shipped term lists: list name (zh, en) -> terms."""
    lists: dict[str, tuple[str, ...]] = {}
    for name in ("zh", "en"):
        body = resources.files("dmops").joinpath(f"data/lint/banned_{name}.txt").read_text(encoding="utf-8")
        lists[name] = tuple(line.strip() for line in body.splitlines() if line.strip() and not line.startswith("#"))
    return lists


def banned_claims(text: str, extra: Iterable[str], allow: Iterable[str]) -> list[tuple[str, str]]:
    """(term, list) for each banned term in ``text`` after masking the allowed phrases."""
    plain = normalise(text)
    for phrase in allow:
        plain = plain.replace(normalise(phrase), "\x00")
    found: list[tuple[str, str]] = []
    lists = {**shipped_terms(), "workspace": tuple(extra)}
    for list_name, terms in lists.items():
        for term in terms:
            key = normalise(term)
            if key and key in plain and all(term != seen for seen, _ in found):
                found.append((term, list_name))
    return found


# --- the other checks on one rendered message -------------------------------------------------


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in text)


def sms_opt_out_present(text: str) -> bool:
    """An opt-out instruction in the message's language: 退订 in Chinese text, else STOP/unsubscribe/opt out."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    if _has_cjk(text):
        return "退订" in folded or "退訂" in folded
    return bool(re.search(r"\bstop\b|unsubscribe|opt[ -]?out", folded))


def ucs2_culprits(text: str, most: int = 3) -> list[str]:
    """The characters that alone make ``text`` UCS-2, when there are at most ``most`` of them and no CJK."""
    culprits = non_gsm_characters(text)
    if not culprits or len(culprits) > most or _has_cjk(text):
        return []
    return culprits


def visible_text(markup: str) -> str:
    return htmllib.unescape(_TAG.sub(" ", markup)).strip()


def links(text: str, html: bool = False) -> list[str]:
    """The links of a part: ``href`` targets in HTML (images are not links), URLs in text."""
    if html:
        return [htmllib.unescape(u) for u in _HREF.findall(text)]
    return _URL.findall(text)


# --- rendering the samples ----------------------------------------------------------------------


def sample_contacts(
    con: duckdb.DuckDBPyConnection, n: int = SAMPLE, used: Iterable[str] | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns, and up to ``n`` real contacts (a stable sample) plus the blank-edge and longest-edge contacts.

    The longest-edge contact takes the longest value of each column in ``used`` (default: every column).
    """
    columns = [
        row[0]
        for row in con.execute("SELECT column_name FROM (DESCRIBE contacts)").fetchall()
        if not row[0].startswith("_dm")
    ]
    select = ", ".join(quote_ident(c) for c in columns)
    rows = con.execute(f"SELECT {select} FROM contacts ORDER BY md5(contact_id) LIMIT $n", {"n": n}).fetchall()
    contacts = [dict(zip(columns, row, strict=True)) for row in rows]
    if not contacts:
        return columns, []
    required = {c.lower() for c in TEXT_COLUMNS}
    blank = {c: (v if c.lower() in required else None) for c, v in contacts[0].items()}
    blank["_dm_edge"] = "blank"
    measured = [c for c in columns if used is None or c in set(used)]
    longest = dict(contacts[0])
    if measured:
        longest_sql = ", ".join(
            f"arg_max({quote_ident(c)}, length(CAST({quote_ident(c)} AS VARCHAR)))" for c in measured
        )
        row = con.execute(f"SELECT {longest_sql} FROM contacts").fetchone() or ()
        longest.update(zip(measured, row, strict=True))
    longest["_dm_edge"] = "longest"
    return columns, [*contacts, blank, longest]


def blank_columns(con: duckdb.DuckDBPyConnection, columns: list[str]) -> set[str]:
    """Columns with at least one missing or blank value in the data."""
    if not columns:
        return set()
    checks = ", ".join(
        f"count(*) FILTER (WHERE {quote_ident(c)} IS NULL OR trim(CAST({quote_ident(c)} AS VARCHAR)) = '')"
        for c in columns
    )
    row = con.execute(f"SELECT {checks} FROM contacts").fetchone()
    return {c for c, n in zip(columns, row or (), strict=True) if n}


def _line_of(template: Template, needle: str) -> int | None:
    """The file line of the first source line that holds ``needle`` (normalised), else the template's first."""
    target = normalise(needle)
    for number, line in enumerate(template.source.splitlines(), start=1):
        if target and target in normalise(line):
            return template.line(number)
    return template.first_line


# --- the rules: one small function per rule id, registered with its severity ---------------------


@dataclass(frozen=True)
class Message:
    """One rendered variant for one sample contact: what every rule looks at."""

    campaign: Campaign
    config: LintConfig
    variant: str
    parts: dict[str, str]  # subject, text, html: as rendered
    url: str | None  # the rendered unsubscribe URL

    def bodies(self) -> Iterator[tuple[str, str, bool]]:
        """(part, text, is_html) for the text and HTML parts present."""
        for part in ("text", "html"):
            if part in self.parts:
                yield part, self.parts[part], part == "html"


@dataclass(frozen=True)
class Hit:
    """What a rule found in one part; the linter adds the campaign, template file and line."""

    part: str
    message: str
    hint: str
    needle: str | None = None  # report the template line holding this text (default: the template's first line)
    key: str | None = None  # report the campaign file's line of this key, with the unsubscribe_url template


Check = Callable[[Message], Iterable[Hit]]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Literal["error", "warning"]
    check: Check | None  # None: found while rendering (template.render, template.unguarded)
    channel: str | None = None  # only messages of this channel
    marketing: bool = False  # only marketing messages


RULES: dict[str, Rule] = {}


def rule(
    rule_id: str, severity: Literal["error", "warning"], *, channel: str | None = None, marketing: bool = False
) -> Callable[[Check], Check]:
    """Register ``check`` as rule ``rule_id``."""

    def register(check: Check) -> Check:
        if rule_id in RULES:
            raise ValueError(f"lint rule {rule_id} is registered twice")
        RULES[rule_id] = Rule(rule_id, severity, check, channel, marketing)
        return check

    return register


RULES["template.render"] = Rule("template.render", "error", None)
RULES["template.variable"] = Rule("template.variable", "error", None)
RULES["template.unguarded"] = Rule("template.unguarded", "error", None)


@rule("claim.banned", "error")
def _banned(m: Message) -> Iterator[Hit]:
    for part, text in m.parts.items():
        for term, list_name in banned_claims(text, m.config.extra_terms, m.config.allow):
            yield Hit(
                part,
                f"banned claim '{term}' ({list_name} list)",
                "rephrase without absolute or guarantee claims, or add the phrase to lint.allow if it is not a claim",
                needle=term,
            )


@rule("content.exclamations", "warning")
def _exclamations(m: Message) -> Iterator[Hit]:
    for part, text in m.parts.items():
        if part != "html" and re.search(r"[!！]{2,}", text):
            yield Hit(part, "a run of exclamation marks", "one ! is enough; runs of them are a spam signal", "!!")


@rule("template.utm", "error")
def _utm(m: Message) -> Iterator[Hit]:
    if m.config.utm != "required":
        return
    for part, text in m.parts.items():
        for link in links(text, html=part == "html"):
            if m.url is not None and link.rstrip(".,;") == m.url:
                continue  # the unsubscribe URL is exempt
            if "utm_" not in link:
                yield Hit(
                    part,
                    f"link without utm_ parameters: {link[:80]}",
                    "add utm_source, utm_medium and utm_campaign to every link",
                    needle=link.split("?")[0],
                )


@rule("email.subject-length", "warning", channel="email")
def _subject_length(m: Message) -> Iterator[Hit]:
    subject = m.parts.get("subject", "")
    if len(subject) > SUBJECT_MAX:
        yield Hit(
            "subject",
            f"the subject is {len(subject)} characters (over {SUBJECT_MAX})",
            "mail apps cut long subjects; put the point in the first 40 characters",
        )


@rule("email.header-control", "warning", channel="email")
def _header_control(m: Message) -> Iterator[Hit]:
    if has_header_control(m.parts.get("subject", "")):
        yield Hit(
            "subject",
            "the subject holds control characters (a line break, tab or NUL), here from the contact data",
            "they are sent as spaces; clean the data or build the subject from other columns",
        )


@rule("email.all-caps", "warning", channel="email")
def _all_caps(m: Message) -> Iterator[Hit]:
    letters = [ch for ch in m.parts.get("subject", "") if ch.isalpha() and ch.lower() != ch.upper()]
    if len(letters) >= 8 and sum(ch.isupper() for ch in letters) / len(letters) > 0.5:
        yield Hit("subject", "most of the subject is in capitals", "write the subject in sentence case")


@rule("email.no-text-part", "warning", channel="email")
def _no_text_part(m: Message) -> Iterator[Hit]:
    if "html" in m.parts and "text" not in m.parts:
        yield Hit("html", "HTML email without a text part", "add a text part: some clients and filters read only text")


@rule("email.image-only", "warning", channel="email")
def _image_only(m: Message) -> Iterator[Hit]:
    markup = m.parts.get("html")
    if markup is not None and "<img" in markup.lower() and len(visible_text(markup)) < 50:
        yield Hit(
            "html",
            "the HTML is mostly images",
            "add real text next to the images; image-only mail is filtered as spam",
        )


@rule("email.link-count", "warning", channel="email")
def _link_count(m: Message) -> Iterator[Hit]:
    for part, text, html in m.bodies():
        count = len(links(text, html=html))
        if count > MAX_LINKS:
            yield Hit(part, f"{count} links (over {MAX_LINKS})", "fewer links read better and filter better")


@rule("email.one-click", "error", channel="email", marketing=True)
def _one_click(m: Message) -> Iterator[Hit]:
    try:
        one_click_headers(m.url or "")
    except ValueError:
        yield Hit(
            "unsubscribe_url",
            "no https unsubscribe URL: the RFC 8058 List-Unsubscribe and List-Unsubscribe-Post headers cannot be set",
            'set unsubscribe_url: "https://…/u/{{ unsubscribe_token }}"',
            key="unsubscribe_url",
        )


@rule("email.unsubscribe-link", "error", channel="email", marketing=True)
def _unsubscribe_link(m: Message) -> Iterator[Hit]:
    if not m.url:
        return
    for part, text, html in m.bodies():
        if m.url not in (htmllib.unescape(text) if html else text):
            yield Hit(
                part,
                f"the {part} part has no unsubscribe link",
                "add {{ unsubscribe_url }} to every part of a marketing email",
            )


@rule("email.postal-address", "error", channel="email", marketing=True)
def _postal_address(m: Message) -> Iterator[Hit]:
    address = m.config.postal_address
    if not address:
        return
    for part, text, html in m.bodies():
        if normalise(address) not in normalise(visible_text(text) if html else text):
            yield Hit(
                part,
                "the sender's postal address (lint.postal_address) is missing",
                f"add the line: {address}",
            )


@rule("sms.ucs2", "warning", channel="sms")
def _ucs2(m: Message) -> Iterator[Hit]:
    text = m.parts.get("text", "")
    culprits = ucs2_culprits(text)
    if culprits:
        shown = ", ".join(f"U+{ord(c):04X} {c!r}" for c in culprits)
        yield Hit(
            "text",
            f"UCS-2 only because of {shown}: {measure(text).segments} segment(s) instead of "
            f"{_gsm_segments(text, culprits)}",
            "replace those characters with GSM-7 ones (straight quotes, no emoji) to cut the cost",
            needle=culprits[0],
        )


@rule("sms.segments", "warning", channel="sms")
def _segments(m: Message) -> Iterator[Hit]:
    segments = measure(m.parts.get("text", "")).segments
    most = m.config.max_sms_segments
    if segments > most:
        yield Hit(
            "text",
            f"{segments} segments (over lint.max_sms_segments {most})",
            "shorten the text; every segment is billed",
        )


@rule("sms.opt-out", "error", channel="sms", marketing=True)
def _opt_out(m: Message) -> Iterator[Hit]:
    if not sms_opt_out_present(m.parts.get("text", "")):
        yield Hit(
            "text",
            "no opt-out instruction",
            "end with 回复TD退订 (Chinese) or 'Reply STOP to opt out' (English)",
        )


@rule("sms.signature", "error", channel="sms", marketing=True)
def _signature(m: Message) -> Iterator[Hit]:
    signature = m.config.sms_signature
    if signature and signature not in m.parts.get("text", ""):
        yield Hit("text", f"no sender signature {signature}", f"start the text with {signature}")


SEVERITY = {r.id: r.severity for r in RULES.values()}
# The rules `send` runs before rendering: the error-level ones, except the two about render failures,
# which the send itself stops on more precisely (exit 65, naming the contact and the line).
SEND_GATE = frozenset(r.id for r in RULES.values() if r.severity == "error" and r.check is not None)


class _Linter:
    """Renders one campaign's variants and runs every rule that applies on each message."""

    def __init__(self, ws: Workspace, campaign: Campaign, blanks: set[str]) -> None:
        self.campaign = campaign
        self.config = ws.config.lint
        self.blanks = blanks
        self.renderer = Renderer(ws, campaign, "lint", LINT_SECRET, show_pii=False)  # the send's own rendering
        config = campaign.config
        self.rules = [
            r
            for r in RULES.values()
            if r.check is not None
            and r.channel in (None, config.channel)
            and (not r.marketing or config.purpose == "marketing")
        ]
        self.found: dict[tuple[str, str, str, str, str], Finding] = {}
        self.over_budget = False  # the last render went over the render budget

    def add(self, rule_id: str, variant: str, hit: Hit, template: Template | None, line: int | None) -> None:
        finding = Finding(
            rule=rule_id,
            severity=RULES[rule_id].severity,
            campaign=self.campaign.id,
            variant=variant,
            part=hit.part,
            message=hit.message,
            hint=hit.hint,
            file=str(template.file) if template is not None else str(self.campaign.path),
            line=line if line is not None else (template.first_line if template is not None else None),
        )
        if finding.key() in self.found:
            self.found[finding.key()].contacts += 1
        else:
            self.found[finding.key()] = finding

    def render(self, contact: dict[str, Any], variant: str) -> Message | None:
        edge = contact.get("_dm_edge")
        values = {k: v for k, v in contact.items() if k != "_dm_edge"}
        self.over_budget = False
        try:
            parts, url = self.renderer.render(values, variant, shown_as="lint")  # one finding for all contacts
        except DmopsError as exc:
            self.over_budget = isinstance(exc, BudgetExceeded)
            variable = exc.message.split("'")[1] if "is missing or empty" in exc.message else ""
            part = exc.location.key.rsplit(".", 1)[-1] if exc.location.key else "template"
            template = self.campaign.templates.get((variant, part)) or self.campaign.unsubscribe_url
            if variable and variable not in self.blanks and edge == "blank":
                return None  # blank only in the edge contact: the data never leaves it blank
            if variable and variable in self.blanks:
                hit = Hit(
                    part,
                    f"'{variable}' has blank values in the contacts and this template prints it without a guard",
                    f"write {{{{ {variable} | default('…') }}}} or wrap it in {{% if {variable} %}}",
                )
                self.add("template.unguarded", variant, hit, template, exc.location.line)
            else:
                hit = Hit(
                    part,
                    exc.message.replace("contact lint", "a sample contact"),
                    exc.hint or "fix the template",
                )
                self.add("template.render", variant, hit, template, exc.location.line)
            return None
        return Message(self.campaign, self.config, variant, parts, url)

    def check(self, message: Message) -> None:
        for registered in self.rules:
            assert registered.check is not None
            for hit in registered.check(message):
                if hit.key is not None:
                    template, line = self.campaign.unsubscribe_url, self.campaign.line_of(hit.key)
                else:
                    template = self.campaign.templates.get((message.variant, hit.part))
                    line = _line_of(template, hit.needle) if template is not None and hit.needle else None
                self.add(registered.id, message.variant, hit, template, line)


def _gsm_segments(text: str, culprits: list[str]) -> int:
    cleaned = "".join(ch for ch in text if ch not in culprits)
    assert all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in cleaned)
    return measure(cleaned).segments


def unknown_in(
    con: duckdb.DuckDBPyConnection, campaign: Campaign, columns: Sequence[str]
) -> list[tuple[tuple[str, str], Template, Unknown]]:
    """Every name a campaign's templates read that no contact column has (see :func:`render.unknown_names`),
    per (variant, part); ``columns`` are the loaded ones, traits included, beside every header of the file."""
    headers = [r[0] for r in con.execute("SELECT header FROM contact_headers").fetchall()]
    readable = [*headers, *(c for c in columns if c not in headers)]
    found = []
    for (variant, part), template in campaign.template_parts():
        for unknown in unknown_names(template, readable, html=part == "html"):
            for each in [variant] if variant else [v.id for v in campaign.config.variants]:
                found.append(((each, part), template, unknown))
    return found


def lint_campaign(
    con: duckdb.DuckDBPyConnection, ws: Workspace, campaign: Campaign, sample: int = SAMPLE, gate: bool = False
) -> LintResult:
    """Render every variant for the sample and the edge contacts, and check each message."""
    used = {name for (_, part), t in campaign.template_parts() for name in variables(t, html=part == "html")}
    columns, contacts = sample_contacts(con, sample, used)
    linter = _Linter(ws, campaign, blank_columns(con, [c for c in columns if c in used]))
    for (variant, part), template, found in unknown_in(con, campaign, columns):
        linter.add("template.variable", variant, Hit(part, found.message, found.hint), template, found.line)
    result = LintResult()
    for variant in [v.id for v in campaign.config.variants]:
        for contact in contacts:
            message = linter.render(contact, variant)
            if message is None:
                if linter.over_budget:
                    break  # one finding says it; every other sample would wait out the same budget
                continue
            result.rendered += 1
            linter.check(message)
    findings = list(linter.found.values())
    if gate:
        findings = [f for f in findings if f.rule in SEND_GATE]
    result.findings = sorted(findings, key=lambda f: (f.severity != "error", f.campaign, f.variant, f.rule))
    return result


@dataclass
class WorkspaceLint:
    """``dmops lint`` over several campaigns: each one's result."""

    root: Path
    campaigns: list[str]
    results: list[LintResult]
    rules: dict[str, list[str]] = field(default_factory=dict)  # per campaign, the rules that apply to it

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def rendered(self) -> int:
        return sum(r.rendered for r in self.results)

    def shown_file(self, finding: Finding) -> str | None:
        """The finding's file as the user sees it: relative to the workspace."""
        return Location(file=Path(finding.file)).shown_file(self.root) if finding.file else None

    def as_json(self) -> dict[str, Any]:
        return {
            "campaigns": self.campaigns,
            "rendered": self.rendered,
            "errors": self.errors,
            "warnings": len(self.findings) - self.errors,
            "findings": [{**f.as_json(), "file": self.shown_file(f)} for f in self.findings],
        }


def lint_workspace(ws: Workspace, campaigns: list[Campaign], moment: datetime, sample: int = SAMPLE) -> WorkspaceLint:
    """Lint each campaign against one load of the contacts (with traits when a template uses them)."""
    from dmops import traits
    from dmops.plan import prepare

    if not campaigns:
        raise UsageError("no campaigns to lint")
    con = prepare(ws, campaigns[0], also=campaigns[1:])
    try:
        if any(traits.mentioned(c.texts()) for c in campaigns):
            traits.add_to_contacts(con, ws, moment)
        results = [lint_campaign(con, ws, c, sample) for c in campaigns]
    finally:
        con.close()
    applies = {
        c.id: [
            r.id
            for r in RULES.values()
            if r.channel in (None, c.config.channel) and (not r.marketing or c.config.purpose == "marketing")
        ]
        for c in campaigns
    }
    return WorkspaceLint(ws.root, [c.id for c in campaigns], results, applies)


def github_annotations(findings: list[Finding], root: Path) -> str:
    """GitHub Actions workflow commands: one ``::error``/``::warning`` per finding."""
    from dmops.ci import github_command

    lines = [
        github_command(
            f.severity,
            f"{f.message} — {f.hint}",
            file=Location(file=Path(f.file)).shown_file(root) if f.file else None,
            line=f.line,
            title=f"{f.rule} ({f.campaign}/{f.variant}/{f.part})",
        )
        for f in findings
    ]
    return "\n".join(lines) + ("\n" if lines else "")


def junit_report(result: WorkspaceLint) -> str:
    """JUnit XML: one test case per campaign and rule that applies to it (its channel, marketing or not); a
    rule's errors fail it, its warnings are its output."""
    from dmops.ci import Case, Failure, junit

    cases = {(c, rule): Case(f"dmops.lint.{c}", rule) for c in result.campaigns for rule in result.rules.get(c, RULES)}
    for f in result.findings:
        case = cases.setdefault((f.campaign, f.rule), Case(f"dmops.lint.{f.campaign}", f.rule))
        where = f"{result.shown_file(f) or f.campaign}:{f.line or ''} ({f.variant}/{f.part})"
        if f.severity == "error":
            case.failures.append(Failure(f.message, f.rule, f"{where}; fix: {f.hint}"))
        else:
            case.output.append(f"warning: {where}: {f.message}; fix: {f.hint}")
    return junit("dmops lint", list(cases.values()))
