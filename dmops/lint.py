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
``template.utm``           error     ``lint.utm: required`` and a link without ``utm_`` parameters
                                     (the unsubscribe URL is exempt)
``sms.ucs2``               warning   an SMS that is UCS-2 only because of a few characters (an
                                     emoji, a curly quote): removing them would make it GSM-7
``sms.segments``           warning   an SMS longer than ``lint.max_sms_segments`` (default 3)
``email.subject-length``   warning   a subject longer than 60 characters
``email.all-caps``         warning   more than half of a subject's letters are capitals (8+ letters)
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
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from dmops.campaign import Campaign, Template
from dmops.contacts import TEXT_COLUMNS
from dmops.db import quote_ident
from dmops.errors import DmopsError, ExitCode, Location
from dmops.message import Renderer, one_click_headers
from dmops.render import variables
from dmops.sms import GSM7_BASIC, GSM7_EXTENSION, measure, non_gsm_characters
from dmops.workspace import Workspace

SEVERITY = {
    "claim.banned": "error",
    "email.unsubscribe-link": "error",
    "email.one-click": "error",
    "email.postal-address": "error",
    "sms.opt-out": "error",
    "sms.signature": "error",
    "template.unguarded": "error",
    "template.render": "error",
    "template.utm": "error",
    "sms.ucs2": "warning",
    "sms.segments": "warning",
    "email.subject-length": "warning",
    "email.all-caps": "warning",
    "content.exclamations": "warning",
    "email.link-count": "warning",
    "email.image-only": "warning",
    "email.no-text-part": "warning",
}
# The rules `send` runs before rendering: the error-level ones, except the two about render failures,
# which the send itself stops on more precisely (exit 65, naming the contact and the line).
SEND_GATE = frozenset(r for r, severity in SEVERITY.items() if severity == "error") - {
    "template.render",
    "template.unguarded",
}
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


class _Linter:
    def __init__(self, ws: Workspace, campaign: Campaign, blanks: set[str]) -> None:
        self.ws = ws
        self.campaign = campaign
        self.config = ws.config.lint
        self.blanks = blanks
        self.renderer = Renderer(ws, campaign, "lint", LINT_SECRET, show_pii=False)  # the send's own rendering
        self.found: dict[tuple[str, str, str, str, str], Finding] = {}

    def add(
        self,
        rule: str,
        variant: str,
        part: str,
        message: str,
        hint: str,
        template: Template | None,
        line: int | None = None,
    ) -> None:
        finding = Finding(
            rule=rule,
            severity=SEVERITY[rule],
            campaign=self.campaign.id,
            variant=variant,
            part=part,
            message=message,
            hint=hint,
            file=str(template.file) if template is not None else str(self.campaign.path),
            line=line if line is not None else (template.first_line if template is not None else None),
        )
        if finding.key() in self.found:
            self.found[finding.key()].contacts += 1
        else:
            self.found[finding.key()] = finding

    def template(self, variant: str, part: str) -> Template | None:
        return self.campaign.templates.get((variant, part))

    def render(self, contact: dict[str, Any], variant: str) -> tuple[dict[str, str], str | None] | None:
        edge = contact.get("_dm_edge")
        values = {k: v for k, v in contact.items() if k != "_dm_edge"}
        try:
            return self.renderer.render(values, variant, shown_as="lint")  # one finding for all contacts
        except DmopsError as exc:
            variable = exc.message.split("'")[1] if "is missing or empty" in exc.message else ""
            part = exc.location.key.rsplit(".", 1)[-1] if exc.location.key else "template"
            template = self.template(variant, part) or self.campaign.unsubscribe_url
            if variable and variable not in self.blanks and edge == "blank":
                return None  # blank only in the edge contact: the data never leaves it blank
            if variable and variable in self.blanks:
                self.add(
                    "template.unguarded",
                    variant,
                    part,
                    f"'{variable}' has blank values in the contacts and this template prints it without a guard",
                    f"write {{{{ {variable} | default('…') }}}} or wrap it in {{% if {variable} %}}",
                    template,
                    exc.location.line,
                )
            else:
                self.add(
                    "template.render",
                    variant,
                    part,
                    exc.message.replace("contact lint", "a sample contact"),
                    exc.hint or "fix the template",
                    template,
                    exc.location.line,
                )
            return None

    def check(self, variant: str, rendered: dict[str, str], url: str | None) -> None:
        config = self.campaign.config
        marketing = config.purpose == "marketing"
        lint = self.config
        for part, text in rendered.items():
            template = self.template(variant, part)
            for term, list_name in banned_claims(text, lint.extra_terms, lint.allow):
                self.add(
                    "claim.banned",
                    variant,
                    part,
                    f"banned claim '{term}' ({list_name} list)",
                    "rephrase without absolute or guarantee claims, or add the phrase to lint.allow if it is "
                    "not a claim",
                    template,
                    _line_of(template, term) if template else None,
                )
            if part != "html" and re.search(r"[!！]{2,}", text):
                self.add(
                    "content.exclamations",
                    variant,
                    part,
                    "a run of exclamation marks",
                    "one ! is enough; runs of them are a spam signal",
                    template,
                    _line_of(template, "!!") if template else None,
                )
            if lint.utm == "required":
                for link in links(text, html=part == "html"):
                    if url is not None and link.rstrip(".,;") == url:
                        continue
                    if "utm_" not in link:
                        self.add(
                            "template.utm",
                            variant,
                            part,
                            f"link without utm_ parameters: {link[:80]}",
                            "add utm_source, utm_medium and utm_campaign to every link",
                            template,
                            _line_of(template, link.split("?")[0]) if template else None,
                        )
        if config.channel == "email":
            self._email(variant, rendered, url, marketing)
        elif config.channel == "sms":
            self._sms(variant, rendered.get("text", ""), marketing)

    def _email(self, variant: str, rendered: dict[str, str], url: str | None, marketing: bool) -> None:
        subject = rendered.get("subject", "")
        subject_template = self.template(variant, "subject")
        if len(subject) > SUBJECT_MAX:
            self.add(
                "email.subject-length",
                variant,
                "subject",
                f"the subject is {len(subject)} characters (over {SUBJECT_MAX})",
                "mail apps cut long subjects; put the point in the first 40 characters",
                subject_template,
            )
        letters = [ch for ch in subject if ch.isalpha() and ch.lower() != ch.upper()]
        if len(letters) >= 8 and sum(ch.isupper() for ch in letters) / len(letters) > 0.5:
            self.add(
                "email.all-caps",
                variant,
                "subject",
                "most of the subject is in capitals",
                "write the subject in sentence case",
                subject_template,
            )
        if "html" in rendered and "text" not in rendered:
            self.add(
                "email.no-text-part",
                variant,
                "html",
                "HTML email without a text part",
                "add a text part: some clients and filters read only text",
                self.template(variant, "html"),
            )
        if "html" in rendered:
            markup = rendered["html"]
            if "<img" in markup.lower() and len(visible_text(markup)) < 50:
                self.add(
                    "email.image-only",
                    variant,
                    "html",
                    "the HTML is mostly images",
                    "add real text next to the images; image-only mail is filtered as spam",
                    self.template(variant, "html"),
                )
        for part in ("text", "html"):
            if part in rendered and len(links(rendered[part], html=part == "html")) > MAX_LINKS:
                self.add(
                    "email.link-count",
                    variant,
                    part,
                    f"{len(links(rendered[part], html=part == 'html'))} links (over {MAX_LINKS})",
                    "fewer links read better and filter better",
                    self.template(variant, part),
                )
        if not marketing:
            return
        try:
            one_click_headers(url or "")
        except ValueError:
            self.add(
                "email.one-click",
                variant,
                "unsubscribe_url",
                "no https unsubscribe URL: the RFC 8058 List-Unsubscribe and List-Unsubscribe-Post headers "
                "cannot be set",
                'set unsubscribe_url: "https://…/u/{{ unsubscribe_token }}"',
                self.campaign.unsubscribe_url,
                self.campaign.line_of("unsubscribe_url"),
            )
        for part in ("text", "html"):
            if part not in rendered or not url:
                continue
            body = htmllib.unescape(rendered[part]) if part == "html" else rendered[part]
            if url not in body:
                self.add(
                    "email.unsubscribe-link",
                    variant,
                    part,
                    f"the {part} part has no unsubscribe link",
                    "add {{ unsubscribe_url }} to every part of a marketing email",
                    self.template(variant, part),
                )
        address = self.config.postal_address
        if address:
            for part in ("text", "html"):
                if part not in rendered:
                    continue
                body = visible_text(rendered[part]) if part == "html" else rendered[part]
                if normalise(address) not in normalise(body):
                    self.add(
                        "email.postal-address",
                        variant,
                        part,
                        "the sender's postal address (lint.postal_address) is missing",
                        f"add the line: {address}",
                        self.template(variant, part),
                    )

    def _sms(self, variant: str, text: str, marketing: bool) -> None:
        template = self.template(variant, "text")
        size = measure(text)
        culprits = ucs2_culprits(text)
        if culprits:
            shown = ", ".join(f"U+{ord(c):04X} {c!r}" for c in culprits)
            self.add(
                "sms.ucs2",
                variant,
                "text",
                f"UCS-2 only because of {shown}: {size.segments} segment(s) instead of {_gsm_segments(text, culprits)}",
                "replace those characters with GSM-7 ones (straight quotes, no emoji) to cut the cost",
                template,
                _line_of(template, culprits[0]) if template else None,
            )
        if size.segments > self.config.max_sms_segments:
            self.add(
                "sms.segments",
                variant,
                "text",
                f"{size.segments} segments (over lint.max_sms_segments {self.config.max_sms_segments})",
                "shorten the text; every segment is billed",
                template,
            )
        if not marketing:
            return
        if not sms_opt_out_present(text):
            self.add(
                "sms.opt-out",
                variant,
                "text",
                "no opt-out instruction",
                "end with 回复TD退订 (Chinese) or 'Reply STOP to opt out' (English)",
                template,
            )
        signature = self.config.sms_signature
        if signature and signature not in text:
            self.add(
                "sms.signature",
                variant,
                "text",
                f"no sender signature {signature}",
                f"start the text with {signature}",
                template,
            )


def _gsm_segments(text: str, culprits: list[str]) -> int:
    cleaned = "".join(ch for ch in text if ch not in culprits)
    assert all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in cleaned)
    return measure(cleaned).segments


def lint_campaign(
    con: duckdb.DuckDBPyConnection, ws: Workspace, campaign: Campaign, sample: int = SAMPLE, gate: bool = False
) -> LintResult:
    """Render every variant for the sample and the edge contacts, and check each message."""
    templates = list(campaign.templates.items())
    if campaign.unsubscribe_url is not None:
        templates.append((("", "unsubscribe_url"), campaign.unsubscribe_url))
    used = {name for (_, part), t in templates for name in variables(t, html=part == "html")}
    columns, contacts = sample_contacts(con, sample, used)
    linter = _Linter(ws, campaign, blank_columns(con, [c for c in columns if c in used]))
    result = LintResult()
    for variant in [v.id for v in campaign.config.variants]:
        for contact in contacts:
            done = linter.render(contact, variant)
            if done is None:
                continue
            result.rendered += 1
            linter.check(variant, *done)
    findings = list(linter.found.values())
    if gate:
        findings = [f for f in findings if f.rule in SEND_GATE]
    result.findings = sorted(findings, key=lambda f: (f.severity != "error", f.campaign, f.variant, f.rule))
    return result


def github_annotations(findings: list[Finding], root: Path) -> str:
    """GitHub Actions workflow commands: one ``::error``/``::warning`` per finding."""

    def escape(value: str) -> str:
        return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    lines = []
    for f in findings:
        file = Location(file=Path(f.file)).shown_file(root) or "" if f.file else ""
        where = f"file={escape(file)}" + (f",line={f.line}" if f.line else "")
        title = escape(f"{f.rule} ({f.campaign}/{f.variant}/{f.part})").replace(",", "%2C").replace("::", "%3A%3A")
        lines.append(f"::{f.severity} {where},title={title}::{escape(f.message + ' — ' + f.hint)}")
    return "\n".join(lines) + ("\n" if lines else "")
