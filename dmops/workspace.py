"""Find, read and validate the workspace file ``dmops.yaml`` (SPEC §2)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import phonenumbers
from pydantic import AfterValidator, BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator

from dmops.errors import ConfigError, DmopsError, MissingInputError, ProblemsFound
from dmops.schema import Strict, by_shape, hinted, validate_doc
from dmops.timeutil import parse_clock, parse_duration, timezone_problem
from dmops.yamlio import YamlDoc, dotted, load_yaml

WORKSPACE_FILE = "dmops.yaml"
ENV_VAR = "DMOPS_WORKSPACE"

Channel = Literal["email", "sms", "dm"]
CHANNELS: tuple[Channel, ...] = ("email", "sms", "dm")


def _duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, AfterValidator(_duration)]  # text such as 30m, 12h, 7d or 2w, checked when read


class Cap(Strict):
    """A marketing frequency cap: at most ``max`` messages within ``per`` (SPEC §6)."""

    max: int = Field(ge=1)
    per: Duration
    channel: Channel | None = None

    @property
    def window(self) -> timedelta:
        return parse_duration(self.per)


class QuietHours(Strict):
    """Recipient-local ``[start, end)`` in which marketing is not delivered."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value


class Lifecycle(Strict):
    """The windows that define lifecycle stages (see :mod:`dmops.traits`)."""

    new_within: Duration = "30d"
    active_within: Duration = "90d"
    churned_after: Duration = "180d"

    @model_validator(mode="after")
    def _ordered(self) -> Lifecycle:
        if not self.new_window <= self.active_window < self.churned_window:
            raise hinted(
                "the lifecycle windows must satisfy new_within <= active_within < churned_after",
                "e.g. new_within: 30d, active_within: 90d, churned_after: 180d",
            )
        return self

    @property
    def new_window(self) -> timedelta:
        return parse_duration(self.new_within)

    @property
    def active_window(self) -> timedelta:
        return parse_duration(self.active_within)

    @property
    def churned_window(self) -> timedelta:
        return parse_duration(self.churned_after)


class LintConfig(Strict):
    """What ``dmops lint`` checks beyond its defaults (see :mod:`dmops.lint`)."""

    extra_terms: list[str] = []  # more banned claims, matched like the shipped lists
    allow: list[str] = []  # phrases that are fine even though they contain a banned term (e.g. 第一次)
    utm: Literal["required", "optional"] = "optional"  # required: every link carries utm_ parameters
    postal_address: str | None = None  # the sender identity line marketing email must carry
    sms_signature: str | None = None  # e.g. 【好物商城】: marketing SMS must carry it
    max_sms_segments: int = Field(default=3, ge=1)


DEFAULT_TRUE_VALUES = ("true", "t", "1", "yes", "y")  # what a consent value means as yes, unless true_values say


class Consent(Strict):
    """A consent column with its own yes-values (``{column: Accepts Email Marketing, true_values: [yes, 是]}``)."""

    column: str
    true_values: list[str] = Field(min_length=1)


CONTACT_SUFFIXES = (".csv", ".parquet", ".xlsx")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _mapped_name(name: str) -> str:
    if not _NAME.match(name):
        raise hinted(
            f"'{name}' is not a name templates and expressions can use",
            "the key is the dmops name (letters, digits, _); the value is the file's header",
        )
    return name


class ContactsSource(Strict):
    """A contacts file as another tool exported it: where it is, how it is encoded, what its columns mean."""

    path: str
    encoding: str = "auto"  # auto: UTF-8 (a BOM tolerated), UTF-16 by its BOM, else GB18030
    sheet: str | None = None  # .xlsx only; the first sheet when absent
    columns: dict[Annotated[str, AfterValidator(_mapped_name)], str] = {}  # dmops name -> header: contact_id: 客户ID

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _contacts_path(value)

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        if value.lower() == "auto":
            return "auto"
        try:
            return codecs.lookup(value).name
        except LookupError:
            raise hinted(f"unknown encoding '{value}'", "use auto, utf-8, gb18030, utf-16 or big5") from None

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header in value.items():
            if not header.strip():
                raise hinted(f"columns.{name} names no header", "give the file's column, e.g. contact_id: 客户ID")
        headers = [h.strip().lower() for h in value.values()]
        twice = sorted({h for h in headers if headers.count(h) > 1})
        if twice:
            raise hinted(f"the header '{twice[0]}' is mapped twice", "map each of the file's columns to one name")
        return {name: header.strip() for name, header in value.items()}

    @model_validator(mode="after")
    def _sheet(self) -> ContactsSource:
        if self.sheet is not None and not self.path.lower().endswith(".xlsx"):
            raise hinted("sheet applies to .xlsx files only", "remove sheet, or point path at the .xlsx")
        return self


def _contacts_path(value: str) -> str:
    if not value.lower().endswith(CONTACT_SUFFIXES):
        raise hinted(
            f"'{value}' is not a .csv, .parquet or .xlsx file", "point contacts at a CSV, Parquet or Excel file"
        )
    return value


_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_LITERAL_SECRETS = ("password", "secret", "username", "user", "api_key", "token", "auth_token")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class Rate(Strict):
    """How fast a transport may hand messages over (SPEC §11)."""

    per_second: float | None = Field(default=None, gt=0)
    per_hour: int | None = Field(default=None, ge=1)
    per_day: int | None = Field(default=None, ge=1)


def _no_literal_secrets(data: object) -> object:
    if isinstance(data, dict):
        for key in _LITERAL_SECRETS:
            if key in data:
                raise hinted(
                    f"'{key}' would put a credential in dmops.yaml",
                    f"name the environment variable that holds it instead: {key.split('_')[0]}_env: SMTP_PASSWORD",
                )
    return data


def _env_name(value: str | None) -> str | None:
    if value is not None and not ENV_NAME.match(value):
        raise hinted(f"'{value}' is not an environment variable name", "e.g. SMTP_PASSWORD")
    return value


class _Transport(Strict):
    """What every transport has: a rate, how long a message may wait, and no literal credential."""

    rate: Rate = Rate()
    max_age: Duration = "3d"
    ca_file: str | None = None  # a private relay's or gateway's certificate authority (PEM), workspace-relative
    timeout: float = Field(default=30.0, gt=0, le=600)  # seconds for a connection and for each reply

    _secrets = model_validator(mode="before")(_no_literal_secrets)


class Dkim(Strict):
    """DKIM signing of every message (rsa-sha256): the private key (PEM) from an environment variable."""

    domain: str = Field(min_length=1)
    selector: str = Field(min_length=1)
    key_env: Annotated[str, AfterValidator(_env_name)]


class SmtpTransport(_Transport):
    """An SMTP relay: ``smtplib`` over STARTTLS or TLS, AUTH from environment variables."""

    kind: Literal["smtp"]
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username_env: str | None = None
    password_env: str | None = None
    max_connections: int = Field(default=4, ge=1, le=100)
    bounce_domain: str | None = None  # VERP: bounces+<message_id>@bounce_domain
    dkim: Dkim | None = None

    @field_validator("username_env", "password_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return _env_name(value)

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> SmtpTransport:
        if self.security == "none" and self.host not in _LOOPBACK:
            raise hinted(
                f"security: none would send mail unencrypted to {self.host}",
                "use starttls or tls; none is for a relay on this machine (localhost) only",
            )
        if (self.username_env is None) != (self.password_env is None):
            raise hinted("username_env and password_env go together", "give both, or neither for a relay without AUTH")
        return self


class WebhookTransport(_Transport):
    """An HTTP gateway: the outbox message POSTed as JSON, signed per Standard Webhooks (``twilio`` and
    ``aliyun_sms`` speak those providers' request shapes on the same footing)."""

    kind: Literal["webhook", "twilio", "aliyun_sms"]
    url: str
    secret_env: str | None = None  # webhook: the signing secret; twilio: the auth token; aliyun_sms: AccessKey secret
    username_env: str | None = None  # twilio: the account SID; aliyun_sms: the AccessKey id
    concurrency: int = Field(default=4, ge=1, le=100)  # requests in flight at once
    sender: str | None = None  # twilio: the From number, or a Messaging Service SID (MG…)
    status_callback: str | None = None  # twilio: where Twilio posts delivery receipts
    sign_name: str | None = None  # aliyun_sms: the approved signature (签名)
    template_code: str | None = None  # aliyun_sms: the approved template (SMS_…)
    template_param: dict[str, str] = {"content": "text"}  # aliyun_sms: template variable -> outbox field

    @field_validator("secret_env", "username_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return _env_name(value)

    @model_validator(mode="after")
    def _provider_keys(self) -> WebhookTransport:
        needed = {
            "twilio": ("username_env", "secret_env", "sender"),
            "aliyun_sms": ("username_env", "secret_env", "sign_name", "template_code"),
        }.get(self.kind, ())
        missing = [key for key in needed if getattr(self, key) is None]
        if missing:
            raise hinted(
                f"kind {self.kind} needs {', '.join(missing)}",
                {
                    "twilio": "username_env: TWILIO_ACCOUNT_SID, secret_env: TWILIO_AUTH_TOKEN, sender: '+15005550006'",
                    "aliyun_sms": "username_env: ALIYUN_ACCESS_KEY_ID, secret_env: ALIYUN_ACCESS_KEY_SECRET, "
                    "sign_name: 好物商城, template_code: SMS_123456789",
                }[self.kind],
            )
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise hinted(f"'{value}' is not an http(s) URL", "e.g. https://sms-gateway.example/send")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise hinted(
                f"'{value}' would send messages unencrypted", "use https; plain http is for a gateway on localhost only"
            )
        return value


def _transport_kind(value: object) -> str:
    kind = value.get("kind") if isinstance(value, dict) else None
    return "<smtp>" if kind == "smtp" else "<webhook>"


Transport = Annotated[
    Annotated[SmtpTransport, Tag("<smtp>")] | Annotated[WebhookTransport, Tag("<webhook>")],
    Discriminator(_transport_kind),
]


class Retention(Strict):
    """How long dmops keeps outbox runs and events (SPEC §12); ``dmops gc`` deletes what is older.
    Unset: kept for ever."""

    outbox: Duration | None = None
    events: Duration | None = None


class SparkEngine(Strict):
    """``engine: {kind: spark, …}`` (SPEC §13): where the set work runs past one machine."""

    kind: Literal["spark"]
    master: str = "local[*]"  # spark://host:7077, or local[N] on this machine
    conf: dict[str, str | int | float | bool] = {}  # Spark settings, e.g. spark.executor.memory: 8g


def _engine(value: object) -> object:
    return {"kind": "spark"} if value == "spark" else value


class WorkspaceConfig(Strict):
    """The schema of ``dmops.yaml``."""

    version: Literal[1]
    timezone: str
    contacts: Annotated[
        Annotated[str, Tag("<text>")] | Annotated[ContactsSource, Tag("<mapping>")], Discriminator(by_shape)
    ]
    suppressions: list[str] = []
    consent: dict[
        Channel,
        Annotated[Annotated[str, Tag("<text>")] | Annotated[Consent, Tag("<mapping>")], Discriminator(by_shape)],
    ] = {}
    caps: list[Cap] = []
    quiet_hours: QuietHours | None = None
    state_dir: str = ".dmops"
    outbox_dir: str = "outbox"
    campaigns_dir: str = "campaigns"
    phone_region: str | None = None
    lifecycle: Lifecycle = Lifecycle()
    lint: LintConfig = LintConfig()
    transports: dict[str, Transport] = {}  # SPEC §11: what delivers the outbox
    channels: dict[Channel, str] = {}  # channel -> a transport's name
    retention: Retention = Retention()  # SPEC §12: dmops gc
    engine: Annotated[
        Annotated[Literal["duckdb", "spark"], Tag("<text>")] | Annotated[SparkEngine, Tag("<mapping>")],
        Discriminator(by_shape),
        BeforeValidator(_engine),
    ] = "duckdb"  # SPEC §13; "spark" is read as {kind: spark}

    @property
    def spark(self) -> SparkEngine | None:
        """The Spark engine when ``engine:`` names it; None for embedded DuckDB."""
        return self.engine if isinstance(self.engine, SparkEngine) else None

    def consent_column(self, channel: str) -> str | None:
        """The contacts column holding ``channel``'s consent, or None when none is configured."""
        source = self.consent.get(channel)  # type: ignore[call-overload]
        return source.column if isinstance(source, Consent) else source

    def consent_true_values(self, channel: str) -> tuple[str, ...]:
        """The values (compared trimmed and case-folded) that mean yes for ``channel``."""
        source = self.consent.get(channel)  # type: ignore[call-overload]
        if isinstance(source, Consent):
            return tuple(v.strip().casefold() for v in source.true_values)
        return DEFAULT_TRUE_VALUES

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        problem = timezone_problem(value)
        if problem:
            raise hinted(*problem)
        return value

    @field_validator("phone_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and value not in phonenumbers.SUPPORTED_REGIONS:
            raise hinted(f"unknown phone region '{value}'", "use a two-letter ISO 3166 code such as CN or US")
        return value

    @field_validator("contacts")
    @classmethod
    def _contacts(cls, value: str | ContactsSource) -> str | ContactsSource:
        return _contacts_path(value) if isinstance(value, str) else value

    def missing_secrets(self, environ: Mapping[str, str]) -> list[tuple[str, str]]:
        """(``transports.<name>.<key>``, variable) for every credential variable the environment lacks."""
        missing = []
        for name, transport in sorted(self.transports.items()):
            keys = (
                ("username_env", "password_env")
                if isinstance(transport, SmtpTransport)
                else ("username_env", "secret_env")
            )
            found = [(key, getattr(transport, key)) for key in keys]
            if isinstance(transport, SmtpTransport) and transport.dkim is not None:
                found.append(("dkim.key_env", transport.dkim.key_env))
            for key, variable in found:
                if variable is not None and not environ.get(variable):
                    missing.append((f"transports.{name}.{key}", variable))
        return missing

    @property
    def contacts_source(self) -> ContactsSource:
        """The contacts file as a mapping, whichever way dmops.yaml wrote it."""
        source = self.contacts
        return source if isinstance(source, ContactsSource) else ContactsSource(path=source)


def find_workspace(explicit: Path | None, env: Mapping[str, str], cwd: Path) -> Path:
    """The workspace root: ``--workspace``, then ``DMOPS_WORKSPACE``, then up from ``cwd``."""
    for given, source in ((explicit, "--workspace"), (env.get(ENV_VAR) or None, ENV_VAR)):
        if given is not None:
            root = Path(given)
            if root.name == WORKSPACE_FILE and root.is_file():
                root = root.parent
            if not (root / WORKSPACE_FILE).is_file():
                raise MissingInputError(
                    f"no {WORKSPACE_FILE} in {root} (from {source})",
                    file=root / WORKSPACE_FILE,
                    hint="create one with `dmops init DIR`, or point at the folder that has it",
                )
            return root.resolve()
    here = cwd.resolve()
    for folder in (here, *here.parents):
        if (folder / WORKSPACE_FILE).is_file():
            return folder
    raise MissingInputError(
        f"no {WORKSPACE_FILE} found in {here} or any folder above it",
        hint=f"run inside a workspace, pass --workspace DIR or set {ENV_VAR}; `dmops init DIR` makes one",
    )


def resolve_inside(root: Path, relative: str, *, file: Path, line: int | None, key: str) -> Path:
    """``root / relative`` resolved, or ConfigError if it leaves the workspace."""
    candidate = Path(relative)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ConfigError(
            f"path '{relative}' resolves outside the workspace",
            file=file,
            line=line,
            key=key,
            hint="keep data, templates and state inside the workspace folder",
        )
    return resolved


@dataclass(frozen=True)
class Workspace:
    """A validated workspace: its root, its config and its resolved paths."""

    root: Path
    config: WorkspaceConfig
    doc: YamlDoc
    contacts_path: Path
    suppression_paths: tuple[Path, ...]
    state_dir: Path
    outbox_dir: Path
    campaigns_dir: Path

    @property
    def file(self) -> Path:
        return self.root / WORKSPACE_FILE

    def line_of(self, *key: str | int) -> int | None:
        return self.doc.line_of(key)


def load_workspace(root: Path) -> Workspace:
    """Read and validate ``root/dmops.yaml``; raise ConfigError(s) naming file, line and key."""
    path = root / WORKSPACE_FILE
    doc = load_yaml(path)
    config = validate_doc(WorkspaceConfig, doc)
    problems: list[DmopsError] = []

    def inside(relative: str, *key: str | int) -> Path:
        try:
            return resolve_inside(root, relative, file=path, line=doc.line_of(key), key=dotted(key))
        except ConfigError as exc:
            problems.append(exc)
            return root

    contacts = inside(
        config.contacts_source.path,
        *(("contacts", "path") if isinstance(config.contacts, ContactsSource) else ("contacts",)),
    )
    suppressions = tuple(inside(p, "suppressions", i) for i, p in enumerate(config.suppressions))
    state_dir = inside(config.state_dir, "state_dir")
    outbox_dir = inside(config.outbox_dir, "outbox_dir")
    campaigns_dir = inside(config.campaigns_dir, "campaigns_dir")
    for channel, name in config.channels.items():
        transport = config.transports.get(name)
        problem = None
        if transport is None:
            known = ", ".join(sorted(config.transports)) or "none are defined"
            problem = (f"the transport '{name}' is not defined under transports", f"define it, or use one of: {known}")
        elif channel != "email" and transport.kind == "smtp":
            problem = (f"{channel} messages cannot go through the SMTP transport '{name}'", "use a webhook kind")
        if problem:
            problems.append(
                ConfigError(
                    problem[0],
                    file=path,
                    line=doc.line_of(("channels", channel)),
                    key=f"channels.{channel}",
                    hint=problem[1],
                )
            )
    if problems:
        raise problems[0] if len(problems) == 1 else ProblemsFound(problems)
    return Workspace(
        root=root,
        config=config,
        doc=doc,
        contacts_path=contacts,
        suppression_paths=suppressions,
        state_dir=state_dir,
        outbox_dir=outbox_dir,
        campaigns_dir=campaigns_dir,
    )
