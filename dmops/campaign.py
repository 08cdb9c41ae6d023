"""Load and validate a campaign file into a frozen object (SPEC §4)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dmops.errors import ConfigError, DmopsError, MissingInputError, ProblemsFound
from dmops.schema import Strict, hinted, validate_doc
from dmops.timeutil import parse_clock, parse_duration
from dmops.workspace import Cap, Channel, Duration, Workspace, resolve_inside
from dmops.yamlio import KeyPath, YamlDoc, dotted, load_yaml

CAMPAIGN_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
VARIANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}\Z")
RESERVED_IDS = frozenset({"retention", "lifecycle", "fatigue"})
TEMPLATE_PARTS = ("subject", "text", "html")
# Goals on these rates are maxima; on the others, minima (SPEC §9).
MAX_GOALS = frozenset({"bounce_rate", "unsubscribe_rate", "complaint_rate"})
MIN_GOALS = frozenset({"open_rate", "click_rate", "ctor", "conversion_rate"})
GOALS = MAX_GOALS | MIN_GOALS | {"revenue_per_recipient"}


class Cell(Strict):
    """An explicit cell: contacts for which ``where`` is true."""

    where: str


class Audience(Strict):
    where: str | None = None


class Sender(Strict):
    from_: str = Field(alias="from")
    reply_to: str | None = None


class Conversion(Strict):
    window: Duration = "7d"


class Variant(Strict):
    id: str
    weight: float | None = Field(default=None, gt=0)
    where: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if value == "holdout" or not VARIANT_ID.match(value):
            raise hinted(
                f"'{value}' is not a valid variant id",
                "use lower-case letters, digits, - and _ (up to 32), not 'holdout'",
            )
        return value


class CampaignConfig(Strict):
    """The schema of a campaign file."""

    id: str
    name: str
    channel: Channel
    purpose: Literal["marketing", "transactional"] = "marketing"
    audience: Audience = Audience()
    send_at: str | None = None
    send_time: str | None = None
    local_time: bool = False
    recurrence: Literal["once", "daily", "weekly", "monthly"] = "once"
    caps: list[Cap] = []
    sender: Sender | None = None
    unsubscribe_url: str | None = None
    variants: list[Variant] = Field(min_length=1)
    holdout: Any = 0.0
    conversion: Conversion = Conversion()
    goals: dict[str, float] = {}

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not CAMPAIGN_ID.match(value):
            raise hinted(
                f"'{value}' is not a valid campaign id",
                "use lower-case letters, digits, - and _, starting with a letter or digit, up to 64",
            )
        if value in RESERVED_IDS:
            raise hinted(f"'{value}' is reserved for a report view", "choose another id")
        return value

    @field_validator("send_at")
    @classmethod
    def _send_at(cls, value: str | None) -> str | None:
        if value is not None:
            parse_send_at(value)
        return value

    @field_validator("send_time")
    @classmethod
    def _send_time(cls, value: str | None) -> str | None:
        if value is not None:
            parse_clock(value)
        return value

    @field_validator("holdout", mode="before")
    @classmethod
    def _holdout(cls, value: Any) -> float | Cell:
        if isinstance(value, bool) or value is None:
            raise hinted('expected a fraction such as 0.1, or {where: "<expression>"}')
        if isinstance(value, (int, float)):
            if not 0 <= value < 1:
                raise hinted(f"holdout {value} is not a fraction in [0, 1)", "write e.g. 0.1 for 10%")
            return float(value)
        if isinstance(value, dict):
            return Cell.model_validate(value)
        raise hinted('expected a fraction such as 0.1, or {where: "<expression>"}')

    @field_validator("goals")
    @classmethod
    def _goals(cls, value: dict[str, float]) -> dict[str, float]:
        for metric, target in value.items():
            if metric not in GOALS:
                raise hinted(f"unknown goal metric '{metric}'", f"use one of {', '.join(sorted(GOALS))}")
            if metric != "revenue_per_recipient" and not 0 <= target <= 1:
                raise hinted(f"goal {metric}: {target} is not a fraction", "rates are fractions: 0.2 means 20%")
            if target < 0:
                raise hinted(f"goal {metric}: {target} is negative")
        return value

    @model_validator(mode="after")
    def _send_when(self) -> CampaignConfig:
        if self.send_at is not None and self.send_time is not None:
            raise hinted("give send_at or send_time, not both")
        return self


def parse_send_at(value: str) -> datetime:
    """``2026-12-01 10:00`` (naive, local) or an ISO 8601 datetime with offset."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise hinted(
            f"'{value}' is not a date and time", 'write "YYYY-MM-DD HH:MM", quoted, optionally with an offset'
        ) from None


def is_template_path(value: str) -> bool:
    """SPEC §4: one line, no space, no ``{``, and contains ``/`` or ends in ``.j2``."""
    return "\n" not in value and " " not in value and "{" not in value and ("/" in value or value.endswith(".j2"))


@dataclass(frozen=True)
class Template:
    """A template's source and where it came from, so errors can point into it."""

    source: str
    file: Path  # the template file, or the campaign file for inline templates
    first_line: int  # line in ``file`` where the source begins
    key: str  # campaign key that names it, e.g. variants[0].text
    inline: bool

    def line(self, template_line: int | None) -> int | None:
        """A line of the source as a line of ``file``."""
        if template_line is None:
            return self.first_line
        return self.first_line + template_line - 1 if not self.inline else self.first_line


@dataclass(frozen=True)
class Campaign:
    """A validated campaign with its templates loaded."""

    config: CampaignConfig
    path: Path
    doc: YamlDoc
    templates: dict[tuple[str, str], Template]  # (variant id, part) -> template
    unsubscribe_url: Template | None

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def window(self) -> timedelta:
        return parse_duration(self.config.conversion.window)

    def line_of(self, *key: str | int) -> int | None:
        return self.doc.line_of(key)

    def locate(self, exc: DmopsError, key: str) -> ConfigError:
        """``exc`` (raised without a location) as a ConfigError at ``key`` of this campaign file."""
        return ConfigError(exc.message, file=self.path, line=self.doc.line_of(key_path(key)), key=key, hint=exc.hint)

    def where_clauses(self) -> list[tuple[str, str]]:
        """Every boolean expression of the campaign as (key, expression)."""
        out: list[tuple[str, str]] = []
        if self.config.audience.where is not None:
            out.append(("audience.where", self.config.audience.where))
        for index, variant in enumerate(self.config.variants):
            if variant.where is not None:
                out.append((f"variants[{index}].where", variant.where))
        if isinstance(self.config.holdout, Cell):
            out.append(("holdout.where", self.config.holdout.where))
        return out

    def template_parts(self) -> list[tuple[tuple[str, str], Template]]:
        """Every template as ((variant, part), template), the unsubscribe URL last as (("", "unsubscribe_url"), …)."""
        parts = list(self.templates.items())
        if self.unsubscribe_url is not None:
            parts.append((("", "unsubscribe_url"), self.unsubscribe_url))
        return parts

    def texts(self) -> list[str]:
        """The campaign's expressions and template sources: what may name a contact column or trait."""
        return [expression for _, expression in self.where_clauses()] + [t.source for _, t in self.template_parts()]


def key_path(key: str) -> KeyPath:
    """``variants[0].where`` -> ``('variants', 0, 'where')``."""
    parts: list[str | int] = []
    for piece in key.replace("]", "").split("."):
        name, *indexes = piece.split("[")
        parts.append(name)
        parts.extend(int(i) for i in indexes)
    return tuple(parts)


def _rules(config: CampaignConfig, doc: YamlDoc) -> list[DmopsError]:
    """Cross-key rules the schema alone cannot state."""
    problems: list[DmopsError] = []

    def problem(message: str, key: KeyPath, hint: str | None = None) -> None:
        problems.append(ConfigError(message, file=doc.path, line=doc.line_of(key), key=dotted(key), hint=hint))

    if config.channel == "email":
        if config.sender is None:
            problem(
                "an email campaign needs sender.from", ("channel",), 'add sender: {from: "Shop <news@shop.example>"}'
            )
        if config.purpose == "marketing" and not config.unsubscribe_url:
            problem(
                "marketing email needs unsubscribe_url",
                ("purpose",),
                'add unsubscribe_url: "https://…/u/{{ unsubscribe_token }}"',
            )
    if config.unsubscribe_url and not config.unsubscribe_url.strip().startswith(("https://", "{")):
        problem(
            "unsubscribe_url must be an https URL (one-click unsubscribe, RFC 8058)",
            ("unsubscribe_url",),
            "write https://…",
        )
    seen: dict[str, int] = {}
    for index, variant in enumerate(config.variants):
        if variant.id in seen:
            problem(
                f"variant id '{variant.id}' is used twice", ("variants", index, "id"), "give each variant its own id"
            )
        seen[variant.id] = index
        if config.channel != "email":
            for part in ("subject", "html"):
                if getattr(variant, part) is not None:
                    problem(f"{part} is for email only; this is a {config.channel} campaign", ("variants", index, part))
            if variant.text is None:
                problem("missing required key 'text'", ("variants", index), "add the message text")
        else:
            if variant.subject is None:
                problem("an email variant needs a subject", ("variants", index))
            if variant.text is None and variant.html is None:
                problem("an email variant needs text or html", ("variants", index))
    weighted = [v.where is None for v in config.variants]
    if any(weighted) and not all(weighted):
        problem(
            "variants must be all weighted or all given where (explicit cells)",
            ("variants",),
            "give every variant a where, or none",
        )
    if not any(weighted) and any(v.weight is not None for v in config.variants):
        problem("explicit cells (where) take no weight", ("variants",), "remove weight from cells")
    return problems


def _template(value: str, ws: Workspace, doc: YamlDoc, key: KeyPath) -> Template:
    line = doc.line_of(key) or 1
    if not is_template_path(value):
        return Template(source=value, file=doc.path, first_line=line, key=dotted(key), inline=True)
    path = resolve_inside(ws.root, value, file=doc.path, line=line, key=dotted(key))
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingInputError(
            f"template file '{value}' not found",
            file=doc.path,
            line=line,
            key=dotted(key),
            hint="check the path; it is relative to the workspace root",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"template file '{value}' is not UTF-8", file=path, hint="save it as UTF-8") from None
    except OSError as exc:
        raise MissingInputError(
            f"cannot read template '{value}': {exc.strerror}", file=doc.path, line=line, key=dotted(key)
        ) from None
    return Template(source=source, file=path, first_line=1, key=dotted(key), inline=False)


def load_campaign(path: Path, ws: Workspace) -> Campaign:
    """Read and validate one campaign file with its templates."""
    doc = load_yaml(path)
    config = validate_doc(CampaignConfig, doc)
    problems = _rules(config, doc)
    templates: dict[tuple[str, str], Template] = {}
    unsubscribe: Template | None = None
    for index, variant in enumerate(config.variants):
        for part in TEMPLATE_PARTS:
            value = getattr(variant, part)
            if value is None:
                continue
            try:
                templates[(variant.id, part)] = _template(value, ws, doc, ("variants", index, part))
            except DmopsError as exc:
                problems.append(exc)
    if config.unsubscribe_url is not None:
        unsubscribe = Template(
            source=config.unsubscribe_url,
            file=path,
            first_line=doc.line_of(("unsubscribe_url",)) or 1,
            key="unsubscribe_url",
            inline=True,
        )
    if problems:
        raise problems[0] if len(problems) == 1 else ProblemsFound(problems)
    return Campaign(config=config, path=path, doc=doc, templates=templates, unsubscribe_url=unsubscribe)


def campaign_files(ws: Workspace) -> list[Path]:
    """Campaign files in the workspace's campaigns folder, sorted by name."""
    if not ws.campaigns_dir.is_dir():
        return []
    return sorted(p for p in ws.campaigns_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def find_campaign_file(ws: Workspace, name: str) -> Path:
    """A campaign given as a file path or as an id found in the campaigns folder."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") or "/" in name:
        path = candidate if candidate.is_absolute() else (Path.cwd() / candidate)
        if not path.is_file():
            raise MissingInputError(f"campaign file '{name}' not found", file=path)
        return path.resolve()
    unreadable: list[tuple[Path, DmopsError]] = []
    for path in campaign_files(ws):
        try:
            data = load_yaml(path).data
        except DmopsError as exc:
            unreadable.append((path, exc))
            continue
        if isinstance(data, dict) and data.get("id") == name:
            return path
    for path, problem in unreadable:
        if path.stem == name:  # most likely the campaign asked for: say what is wrong with it
            raise problem
    hint = "give a campaign id or the path to a campaign file; `dmops validate` lists them"
    if unreadable:
        files = ", ".join(path.name for path, _ in unreadable)
        hint = f"{len(unreadable)} campaign file(s) could not be read ({files}); `dmops validate` shows why"
    raise MissingInputError(f"no campaign with id '{name}' in {ws.campaigns_dir.name}/", hint=hint)
