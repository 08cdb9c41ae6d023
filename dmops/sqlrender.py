r"""The fast rendering path: a campaign's templates as one DuckDB query that writes outbox lines.

A template made only of text, ``{{ … }}`` outputs and ``{% if %}`` blocks
(the shape of nearly every campaign message) is compiled to a SQL string
expression; anything else (loops, ``set``, macros, blocks, a built-in used in
an expression) raises :class:`Unsupported` and the send renders with Jinja.
The result is byte for byte what :mod:`dmops.render` produces, because every
value-dependent piece is still evaluated by the same sandboxed Jinja:

- each ``{{ expression }}`` and each ``if`` test is a *site*; a site is
  rendered by Jinja once per distinct combination of the contact values it
  reads (first names repeat, so that is thousands of renders, not millions)
  and joined back to the contacts in DuckDB;
- a bare text column, optionally with ``default('…')``, is done in SQL
  directly (its output is the value itself, HTML-escaped the way MarkupSafe
  escapes it), as are ``unsubscribe_token`` (HMAC-SHA256 in SQL) and
  ``unsubscribe_url``;
- a site that fails for a value (a missing value printed without a default, a
  budget exceeded) yields NULL, the message becomes NULL, and the caller
  renders that one contact with Jinja to raise the exact error.

The JSON line is assembled in SQL with DuckDB's ``to_json`` for strings, which
escapes as Python's ``json.dumps(ensure_ascii=False)`` does except for nine
control characters it writes with upper-case hex (``\u001F``); a value whose
encoding holds ``\u00`` takes an explicit escape chain instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import duckdb
from jinja2 import Template as JinjaTemplate
from jinja2 import meta, nodes

from dmops.campaign import Campaign
from dmops.db import quote_ident, quote_literal
from dmops.outbox import message_id_sql
from dmops.render import CONTACT, HEADER_CONTROL, MAX_OUTPUT, contact_keys, context_for, environment, parse
from dmops.sms import GSM7_BASIC, GSM7_EXTENSION, measure

# Built-ins that differ per contact; every other built-in is a constant of the run.
PER_CONTACT = frozenset({"unsubscribe_token", "unsubscribe_url"})
TOKEN = "_dm_tok"
URL = "_dm_url"
SEND = "_dm_send"  # the planned messages of this run, one row per contact


class Unsupported(Exception):
    """The template needs the Jinja renderer."""


@cache
def python_whitespace() -> str:
    """The characters ``str.strip()`` removes (all are at or below U+3000)."""
    return "".join(ch for ch in map(chr, range(0x3001)) if ch.isspace())


def _whitespace_codes() -> str:
    return ", ".join(str(ord(ch)) for ch in python_whitespace())


def is_missing(column: str) -> str:
    """SQL: the text value is missing the way :func:`dmops.render.context_for` sees it (NULL or blank).

    Only a value that is empty or starts with whitespace is trimmed (trimming a set of characters is slow).
    """
    first = f"unicode({column})"
    return (
        f"({column} IS NULL OR (({first} = -1 OR {first} IN ({_whitespace_codes()})) "
        f"AND trim({column}, {quote_literal(python_whitespace())}) = ''))"
    )


def python_strip(column: str) -> str:
    """SQL: ``str.strip()`` of a text column (trimming only values with whitespace at an end)."""
    codes = _whitespace_codes()
    return (
        f"CASE WHEN unicode({column}) IN ({codes}) OR unicode(right({column}, 1)) IN ({codes}) "
        f"THEN trim({column}, {quote_literal(python_whitespace())}) ELSE {column} END"
    )


def html_escape(expr: str) -> str:
    """SQL: MarkupSafe's escape of a text value."""
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&#34;"), ("'", "&#39;")):
        expr = f"replace({expr}, {quote_literal(char)}, {quote_literal(entity)})"
    return expr


def json_string(expr: str) -> str:
    """SQL: ``expr`` as a JSON string, byte-identical to ``json.dumps(value, ensure_ascii=False)``; NULL stays NULL."""
    manual = f"replace(replace({expr}, '\\', '\\\\'), '\"', '\\\"')"
    short = {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}
    for code in range(32):
        escaped = short.get(code, f"\\u{code:04x}")
        manual = f"replace({manual}, chr({code}), {quote_literal(escaped)})"
    encoded = f"CAST(to_json({expr}) AS VARCHAR)"
    # Only a value with a control character (or the text "\u00" itself) has "\u00" in its encoding.
    return f"CASE WHEN contains({encoded}, '\\u00') THEN '\"' || {manual} || '\"' ELSE {encoded} END"


@dataclass
class Site:
    """One ``{{ expression }}`` or ``if`` test, rendered by Jinja per distinct input."""

    alias: str
    template: JinjaTemplate
    columns: tuple[str, ...]
    constants: dict[str, Any]
    test: bool


@dataclass
class Compiler:
    """Compiles template parts of one run to SQL expressions over :data:`SEND`."""

    columns: Mapping[str, str]  # contact column -> DuckDB type
    constants: dict[str, Any]  # run-wide built-ins (campaign, variant)
    html: bool
    per_contact: frozenset[str]  # per-contact built-ins available here
    sites: list[Site] = field(default_factory=list)
    counter: list[int] = field(default_factory=lambda: [0])

    def compile(self, tree: nodes.Template) -> str:
        return self._body(tree.body)

    def _body(self, body: list[nodes.Node]) -> str:
        pieces = [self._node(node) for node in body]
        pieces = [p for p in pieces if p != "''"]
        if not pieces:
            return "''"
        return pieces[0] if len(pieces) == 1 else "(" + " || ".join(pieces) + ")"

    def _node(self, node: nodes.Node) -> str:
        if isinstance(node, nodes.Output):
            return self._body(list(node.nodes))
        if isinstance(node, nodes.TemplateData):
            return quote_literal(node.data)
        if isinstance(node, nodes.If):
            return self._if(node)
        if isinstance(node, nodes.Expr):
            return self._output(node)
        raise Unsupported(type(node).__name__)

    def _if(self, node: nodes.If) -> str:
        assert isinstance(node.test, nodes.Expr)
        test = self._site(node.test, test=True)
        rest = self._body(list(node.else_))
        for branch in reversed(node.elif_):
            assert isinstance(branch.test, nodes.Expr)
            inner = self._site(branch.test, test=True)
            rest = f"(CASE WHEN {inner} IS NULL THEN NULL WHEN {inner} THEN {self._body(list(branch.body))} ELSE {rest} END)"
        return f"(CASE WHEN {test} IS NULL THEN NULL WHEN {test} THEN {self._body(list(node.body))} ELSE {rest} END)"

    def _output(self, expr: nodes.Expr) -> str:
        if isinstance(expr, nodes.Name) and expr.name in PER_CONTACT:
            if expr.name not in self.per_contact:
                raise Unsupported(expr.name)
            column = TOKEN if expr.name == "unsubscribe_token" else URL
            return html_escape(column) if self.html else column
        direct = self._text_column(expr)
        if direct is not None:
            return direct
        return self._site(expr, test=False)

    def _text_column(self, expr: nodes.Expr) -> str | None:
        """SQL for ``{{ column }}`` or ``{{ column | default('…') }}`` over a text column, else None."""
        fallback: str | None = None
        if isinstance(expr, nodes.Filter) and expr.name in ("default", "d") and not expr.kwargs:
            if expr.dyn_args is not None or expr.dyn_kwargs is not None or len(expr.args) > 2:
                return None
            if expr.args:
                first = expr.args[0]
                if not (isinstance(first, nodes.Const) and isinstance(first.value, str)):
                    return None
                fallback = first.value
            else:
                fallback = ""
            if len(expr.args) == 2 and not isinstance(expr.args[1], nodes.Const):
                return None
            expr = expr.node  # type: ignore[assignment]
        name = _column_name(expr)
        if name is None or self.columns.get(name) != "VARCHAR":
            return None
        column = f"{SEND}.{quote_ident(name)}"
        value = html_escape(column) if self.html else column
        if fallback is None:
            return f"(CASE WHEN {is_missing(column)} THEN NULL ELSE {value} END)"
        shown = _escape_constant(fallback) if self.html else fallback
        return f"(CASE WHEN {is_missing(column)} THEN {quote_literal(shown)} ELSE {value} END)"

    def _site(self, expr: nodes.Expr, *, test: bool) -> str:
        env = environment(self.html)
        lineno = expr.lineno or 1
        if test:
            body: nodes.Node = nodes.If(
                expr,
                [nodes.Output([nodes.TemplateData("1", lineno=lineno)], lineno=lineno)],
                [],
                [nodes.Output([nodes.TemplateData("0", lineno=lineno)], lineno=lineno)],
                lineno=lineno,
            )
        else:
            body = nodes.Output([expr], lineno=lineno)
        tree = nodes.Template([body], lineno=1)
        tree.set_environment(env)
        names = _read_names(tree)
        if names is None or names & PER_CONTACT or names - set(self.columns) - set(self.constants):
            raise Unsupported(", ".join(sorted(names or {CONTACT})))
        self.counter[0] += 1
        alias = f"_dm_site{self.counter[0]}"
        name = f"<dmops:site:{alias}>"
        code = env.compile(tree, name=name, filename=name)
        template = env.template_class.from_code(env, code, env.globals, None)
        columns = tuple(sorted(names & set(self.columns)))
        self.sites.append(Site(alias, template, columns, dict(self.constants), test))
        return f"{alias}.out"


def _column_name(expr: nodes.Expr) -> str | None:
    """The column ``{{ name }}`` or ``{{ contact["header"] }}`` reads, else None."""
    if isinstance(expr, nodes.Name):
        return expr.name
    if (
        isinstance(expr, nodes.Getitem)
        and isinstance(expr.node, nodes.Name)
        and expr.node.name == CONTACT
        and isinstance(expr.arg, nodes.Const)
        and isinstance(expr.arg.value, str)
    ):
        return expr.arg.value
    return None


def _read_names(tree: nodes.Template) -> set[str] | None:
    """The context names a tree reads, ``contact["…"]`` counted as its headers; None when ``contact`` is
    used in a way no column list can follow."""
    names = set(meta.find_undeclared_variables(tree))
    if CONTACT in names:
        keys = contact_keys(tree)
        if keys is None:
            return None
        names = (names - {CONTACT}) | set(keys)
    return names


def _escape_constant(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def _render_site(site: Site, values: tuple[Any, ...]) -> str | bool | None:
    context = context_for(dict(zip(site.columns, values, strict=True)), site.constants)
    try:
        text = site.template.render(context)
    except Exception:  # any failure: the Jinja path renders this contact and raises the exact error
        return None
    if len(text) > MAX_OUTPUT:
        return None
    return text == "1" if site.test else text


def build_sites(con: duckdb.DuckDBPyConnection, sites: list[Site]) -> None:
    """Render every site once per distinct input among its variant's contacts; table ``<alias>(columns…, out)``."""
    for site in sites:
        cols = ", ".join(quote_ident(c) for c in site.columns)
        kind = "BOOLEAN" if site.test else "VARCHAR"
        if not site.columns:
            value = _render_site(site, ())
            con.execute(f"CREATE OR REPLACE TEMP TABLE {site.alias} AS SELECT CAST($v AS {kind}) AS out", {"v": value})
            continue
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {site.alias}_keys AS
                SELECT row_number() OVER () AS k, * FROM (SELECT DISTINCT {cols} FROM {SEND} WHERE _dm_variant = $v)""",
            {"v": site.constants["variant"]},
        )
        rows = con.execute(f"SELECT k, {cols} FROM {site.alias}_keys").fetchall()
        keys = [row[0] for row in rows]
        outs = [_render_site(site, tuple(row[1:])) for row in rows]
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {site.alias} AS
                SELECT {", ".join(f"k.{quote_ident(c)}" for c in site.columns)}, o.out
                FROM {site.alias}_keys k
                JOIN (SELECT unnest($k::BIGINT[]) AS k, unnest($o::{kind}[]) AS out) o USING (k)""",
            {"k": keys, "o": outs},
        )
        con.execute(f"DROP TABLE {site.alias}_keys")


def site_joins(sites: list[Site]) -> str:
    """LEFT JOINs of the site tables onto :data:`SEND`."""
    joins = []
    for site in sites:
        if site.columns:
            on = " AND ".join(
                f"{SEND}.{quote_ident(c)} IS NOT DISTINCT FROM {site.alias}.{quote_ident(c)}" for c in site.columns
            )
        else:
            on = "TRUE"
        joins.append(f"LEFT JOIN {site.alias} ON {on}")
    return "\n".join(joins)


def hmac_pads(secret: bytes) -> tuple[bytes, bytes]:
    """The inner and outer HMAC-SHA256 key pads of ``secret``."""
    key = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def token_sql(campaign_id: str) -> str:
    """SQL: :func:`dmops.message.unsubscribe_token` with parameters ``$ipad`` and ``$opad``."""
    message = f"encode({quote_literal(campaign_id)} || chr(31) || {SEND}.contact_id)"
    inner = f"unhex(sha256($ipad::BLOB || {message}))"
    digest = f"unhex(substr(sha256($opad::BLOB || {inner}), 1, 32))"
    return f"rtrim(replace(replace(to_base64({digest}), '+', '-'), '/', '_'), '=')"


def _char_class(chars: Set[str]) -> str:
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in sorted(chars)) + "]"


def sms_columns(text: str) -> tuple[str, str]:
    """SQL: the SMS encoding and segment count of ``text``, as :func:`dmops.sms.measure` gives them.

    Texts that need the exact packing rule (more than one segment and an escape or surrogate pair) call
    the Python function ``_dm_sms_segments``.
    """
    gsm = f"regexp_full_match({text}, {quote_literal(_char_class(GSM7_BASIC | GSM7_EXTENSION) + '*')})"
    ext = (
        f"(length({text}) - length(regexp_replace({text}, {quote_literal(_char_class(set(GSM7_EXTENSION)))}, '', 'g')))"
    )
    astral = f"(length({text}) - length(regexp_replace({text}, '[\\x{{10000}}-\\x{{10ffff}}]', '', 'g')))"
    gsm_segments = (
        f"CASE WHEN length({text}) + {ext} <= 160 THEN 1 "
        f"WHEN {ext} = 0 THEN CAST(ceil(length({text}) / 153) AS BIGINT) ELSE _dm_sms_segments({text}) END"
    )
    ucs_segments = (
        f"CASE WHEN length({text}) + {astral} <= 70 THEN 1 "
        f"WHEN {astral} = 0 THEN CAST(ceil(length({text}) / 67) AS BIGINT) ELSE _dm_sms_segments({text}) END"
    )
    encoding = f"CASE WHEN {gsm} THEN 'gsm7' ELSE 'ucs2' END"
    segments = f"CASE WHEN {gsm} THEN {gsm_segments} ELSE {ucs_segments} END"
    return encoding, segments


def register_functions(con: duckdb.DuckDBPyConnection) -> None:
    """The Python helpers the fast path's SQL calls."""
    # DuckDB loads numpy for a Python function and, should Ctrl-C land in that import, reports numpy
    # as missing; loaded here first, an interruption is an interruption.
    import numpy  # noqa: F401

    with contextlib.suppress(duckdb.CatalogException):  # already registered on this connection
        con.create_function(
            "_dm_sms_segments", lambda text: measure(text).segments, ["VARCHAR"], "BIGINT", side_effects=False
        )


@dataclass
class FastRun:
    """The compiled query of one send run: ``SELECT contact_id, line`` in contact order."""

    campaign: Campaign
    columns: tuple[str, ...]  # contact columns the templates read
    url_sites: list[Site]  # sites of the unsubscribe URL
    sites: list[Site]  # sites of the message parts
    parts: dict[str, dict[str, str]]  # part -> variant -> SQL of the rendered text
    url: dict[str, str]  # variant -> SQL of the unsubscribe URL (before stripping)
    uses_token: bool


def compile_run(campaign: Campaign, columns: Mapping[str, str]) -> FastRun:
    """Compile every variant's parts and the unsubscribe URL, or raise :class:`Unsupported`."""
    config = campaign.config
    variants = [v.id for v in config.variants]
    sites: list[Site] = []
    url_sites: list[Site] = []
    counter = [0]
    read: set[str] = set()
    uses_token = False

    def compile_one(template: Any, variant: str, html: bool, per_contact: frozenset[str], sites: list[Site]) -> str:
        nonlocal uses_token
        tree = parse(template, html)
        constants = {"campaign": campaign.id, "variant": variant}
        compiler = Compiler(columns, constants, html, per_contact, counter=counter)
        sql = compiler.compile(tree)
        sites.extend(compiler.sites)
        names = _read_names(tree) or set()  # every site's columns are among these
        read.update(names & set(columns))
        uses_token = uses_token or "unsubscribe_token" in names
        return sql

    url: dict[str, str] = {}
    if campaign.unsubscribe_url is not None:
        for variant in variants:
            url[variant] = compile_one(
                campaign.unsubscribe_url, variant, False, frozenset({"unsubscribe_token"}), url_sites
            )
    per_contact = frozenset({"unsubscribe_token", "unsubscribe_url"} if url else {"unsubscribe_token"})
    parts: dict[str, dict[str, str]] = {}
    for (variant, part), template in campaign.templates.items():
        parts.setdefault(part, {})[variant] = compile_one(template, variant, part == "html", per_contact, sites)
    return FastRun(campaign, tuple(sorted(read)), url_sites, sites, parts, url, uses_token)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _by_variant(cases: Mapping[str, str], otherwise: str = "NULL") -> str:
    arms = " ".join(f"WHEN {quote_literal(v)} THEN {sql}" for v, sql in cases.items())
    return f"CASE {SEND}._dm_variant {arms} ELSE {otherwise} END"


def _clean_header(expr: str) -> str:
    """render.clean_header in SQL: the same control characters, replaced by a space."""
    return f"regexp_replace({expr}, {quote_literal(HEADER_CONTROL)}, ' ', 'g')"


def _bounded(expr: str) -> str:
    return f"CASE WHEN length({expr}) > {MAX_OUTPUT} THEN NULL ELSE {expr} END"


def run_query(
    fast: FastRun,
    *,
    occurrence: str,
    channel: str,
    purpose: str,
    headers: Mapping[str, str],
    domain: str,
) -> str:
    """``SELECT contact_id, line FROM …`` over :data:`SEND` and the site tables, in contact order.

    ``line`` is the message's JSON line without its newline, or NULL where the Jinja path would fail.
    """
    cid = fast.campaign.id
    token = f", {token_sql(cid)} AS {TOKEN}" if fast.uses_token else ""
    mid = message_id_sql(quote_literal(cid), quote_literal(occurrence), "contact_id")
    if fast.url:
        raw = _by_variant(fast.url)
        stage_url = f"""SELECT {SEND}.*, CASE WHEN length(_dm_raw) > {MAX_OUTPUT} THEN NULL
                                    ELSE {python_strip("_dm_raw")} END AS {URL}
                         FROM (SELECT {SEND}.*, {raw} AS _dm_raw FROM _dm_t AS {SEND} {site_joins(fast.url_sites)}) AS {SEND}"""
    else:
        stage_url = f"SELECT {SEND}.* FROM _dm_t AS {SEND}"
    present = list(fast.parts)
    raws = ", ".join(f"{_by_variant(fast.parts[p])} AS _dm_r_{p}" for p in present)
    has = ", ".join(f"{_by_variant({v: 'TRUE' for v in fast.parts[p]}, 'FALSE')} AS _dm_has_{p}" for p in present)
    stage_parts = f"""SELECT {SEND}.*, {raws}, {has} FROM _dm_u AS {SEND} {site_joins(fast.sites)}"""

    def part_json(part: str) -> str:
        if part not in fast.parts:
            return "'null'"
        value = _bounded(f"_dm_r_{part}")
        if part == "subject":
            value = _clean_header(value)
        return f"(CASE WHEN NOT _dm_has_{part} THEN 'null' ELSE {json_string(value)} END)"

    header_sql = "'{}'"
    if channel == "email":
        fixed = "".join(f"{_json(k)}:{_json(v)}," for k, v in headers.items())
        pieces = [
            quote_literal("{" + fixed + '"Message-ID":"<'),
            "_dm_mid",
            quote_literal("@" + _json(domain)[1:-1] + '>"'),
        ]
        if purpose == "marketing":
            if not fast.url:
                raise Unsupported("marketing email without an unsubscribe URL")
            url = _clean_header(URL)
            checked = f"CASE WHEN starts_with({url}, 'https://') AND length({url}) > 8 THEN {url} ELSE NULL END"
            pieces += [
                quote_literal(',"List-Unsubscribe":'),
                json_string(f"'<' || ({checked}) || '>'"),
                quote_literal(',"List-Unsubscribe-Post":"List-Unsubscribe=One-Click"'),
            ]
        pieces.append("'}'")
        header_sql = " || ".join(pieces)
    fields = [
        quote_literal('{"message_id":"'),
        "_dm_mid",
        quote_literal('","campaign_id":' + _json(cid) + ',"occurrence":' + _json(occurrence) + ',"contact_id":'),
        json_string("contact_id"),
        quote_literal(',"channel":' + _json(channel) + ',"variant":'),
        _by_variant({v.id: quote_literal(_json(v.id)) for v in fast.campaign.config.variants}),
        quote_literal(',"to":'),
        json_string("_dm_to"),
        quote_literal(',"send_after":"'),
        "strftime(_dm_planned_at, '%Y-%m-%dT%H:%M:%SZ')",
        quote_literal('","subject":'),
        part_json("subject") if channel == "email" else "'null'",
        quote_literal(',"text":'),
        part_json("text"),
        quote_literal(',"html":'),
        part_json("html") if channel == "email" else "'null'",
        quote_literal(',"headers":'),
        f"({header_sql})",
    ]
    if channel == "sms":
        text = "coalesce(_dm_r_text, '')" if "text" in fast.parts else "''"
        encoding, segments = sms_columns(text)
        fields += [
            quote_literal(',"encoding":"'),
            encoding,
            quote_literal('","segments":'),
            f"CAST({segments} AS VARCHAR)",
        ]
    fields.append("'}'")
    line = " || ".join(fields)
    return f"""WITH _dm_t AS (SELECT {SEND}.*, {mid} AS _dm_mid{token} FROM {SEND}),
                 _dm_u AS ({stage_url}),
                 _dm_p AS ({stage_parts})
            SELECT contact_id, {line} AS line FROM _dm_p AS {SEND} ORDER BY contact_id"""
