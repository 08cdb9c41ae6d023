"""Jinja templates in the sandbox: compile, list variables, render (SPEC §7). No I/O.

- A missing, empty or null value is *undefined*: ``default(...)`` supplies a
  fallback, ``{% if x %}`` is false, and printing it (or any other use) is an
  error — a message never says "Hi ,".
- HTML parts are autoescaped; text parts and subjects are not.
- A render budget bounds each message: at most :data:`MAX_OUTPUT` characters
  per part and :data:`MAX_SECONDS` per part. Operators, ``~`` concatenation,
  filters and string methods that could build a huge value (``'x' * 10**9``,
  ``(9**999)**999``, ``s|replace('x', s)``, ``'%999999999d' % 1``) are refused
  before they run, and every value they build is measured; a template with
  loops also runs under a wall-clock alarm, so loops that print nothing stop
  too. Whatever the template, a render ends within the budget with exit 65.
"""

from __future__ import annotations

import difflib
import functools
import operator
import re
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2 import Template as JinjaTemplate
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from dmops.campaign import Template
from dmops.errors import ConfigError, DataError
from dmops.pii import mask_text

# Names every template can use besides the contact's columns.
TEMPLATE_BUILTINS = frozenset({"unsubscribe_token", "unsubscribe_url", "campaign", "variant", "contact"})
CONTACT = "contact"  # every column of the contact, by its header: {{ contact["Total Spent"] }}
MAX_OUTPUT = 1_000_000  # characters per rendered part
MAX_SECONDS = 2.0  # per rendered part
MAX_SEQUENCE = 100_000  # longest string or list an operator may build
MAX_EXPONENT = 1_000
# Header values (an email's subject, the List-Unsubscribe URL) never carry control characters: a CR/LF
# from the data ("Al\r\nBcc: …") would start a new header. Both render paths replace them with a space.
HEADER_CONTROL = r"[\x00-\x1f\x7f]"
_HEADER_CONTROL = re.compile(HEADER_CONTROL)
MAX_BITS = 100_000  # largest integer an operator may build (about 30,000 digits)
_WIDTH = re.compile(r"\d{6,}")  # a width or precision of 100,000 or more in a format string


class Undefined(StrictUndefined):
    """StrictUndefined that is false in a test, so ``{% if x %}`` guards a value."""

    def __bool__(self) -> bool:  # type: ignore[override]
        return False


class BudgetExceeded(DataError):
    """A render went over its time or size budget (or did what the sandbox forbids): exit 65."""


def _too_long() -> SecurityError:
    return SecurityError(f"the template builds a value longer than {MAX_OUTPUT:,}")


def bounded(value: Any) -> Any:
    """``value`` if it is within the budget (strings and lists up to MAX_OUTPUT, integers up to MAX_BITS)."""
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_OUTPUT:
        raise _too_long()
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_BITS:
        raise SecurityError("the template builds a number too large to print")
    return value


def _check_format(spec: Any) -> None:
    if isinstance(spec, str) and _WIDTH.search(spec):
        raise SecurityError("the template formats with a huge width or precision")


def _check_call(name: str, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse, before it runs, a string operation whose result would be over the budget."""
    if not isinstance(target, str):
        return
    if name in ("center", "ljust", "rjust", "zfill", "indent", "expandtabs"):
        width = args[0] if args else kwargs.get("width", kwargs.get("tabsize", 0))
        lines = target.count("\n") + target.count("\t") + 1
        if isinstance(width, int) and width * lines > MAX_OUTPUT:
            raise _too_long()
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = target.count(args[0]) if args[0] else len(target) + 1
        if len(target) + count * max(0, len(args[1]) - len(args[0])) > MAX_OUTPUT:
            raise _too_long()
    elif name == "format":  # the format filter: "%999999999d"|format(1); str.format is wrapped in wrap_str_format
        _check_format(target)


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that refuses to build a value over the budget: checked before it runs, measured after."""
    passed = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0  # context, eval_ctx or env first

    @functools.wraps(function)  # keeps jinja_pass_arg: Jinja still passes what the filter asks for
    def run(*args: Any, **kwargs: Any) -> Any:
        values = list(args[passed:])
        if values:
            _check_call(name, values[0], tuple(values[1:]), kwargs)
            if name == "join":
                values[0] = items = list(values[0])
                separator = values[1] if len(values) > 1 else kwargs.get("d", "")
                size = sum(len(i) if isinstance(i, str) else 20 for i in items)
                if size + len(items) * len(str(separator)) > MAX_OUTPUT:
                    raise _too_long()
        return bounded(function(*args[:passed], *values, **kwargs))

    return run


class _Codegen(CodeGenerator):
    """Every ``~`` concatenation is measured (``{% set ns.s = ns.s ~ ns.s %}`` in a loop doubles a string)."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded(")
        super().visit_Concat(node, frame)
        self.write(")")


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _Codegen

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.bounded = bounded

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        if op == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and len(seq) * count > MAX_SEQUENCE:
                    raise SecurityError(f"the template builds a value longer than {MAX_SEQUENCE:,}")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_BITS:
                raise SecurityError("the template builds a number too large to print")
            return operator.mul(left, right)
        if op == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
                raise SecurityError("the template raises a number to a huge power")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() * right > MAX_BITS:
                raise SecurityError("the template builds a number too large to print")
            return operator.pow(left, right)
        if op == "%":
            if isinstance(left, str):
                _check_format(left)
            return bounded(operator.mod(left, right))
        if (
            op == "+"
            and isinstance(left, (str, list))
            and isinstance(right, (str, list))
            and len(left) + len(right) > MAX_OUTPUT
        ):
            raise _too_long()
        return operator.add(left, right)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            _check_call(getattr(__obj, "__name__", ""), owner, args, kwargs)
        return bounded(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(template)
            result: str = bounded(wrapped(*args, **kwargs))
            return result

        return checked


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise SecurityError in this thread once ``seconds`` have passed (main thread only, where signals land)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise SecurityError(f"rendering took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@lru_cache(maxsize=2)
def environment(html: bool) -> SandboxedEnvironment:
    """The sandboxed environment: undefined is an error; HTML parts autoescape."""
    return _Sandbox(undefined=Undefined, autoescape=html, keep_trailing_newline=True, auto_reload=False)


def parse(template: Template, html: bool = False) -> nodes.Template:
    """The template's syntax tree, or ConfigError naming its file and line."""
    env = environment(html)
    try:
        tree = env.parse(template.source)
        env.compile(tree)  # also catches unknown filters and tests
        return tree
    except TemplateSyntaxError as exc:
        raise ConfigError(
            f"template syntax error: {exc.message}",
            file=template.file,
            line=template.line(exc.lineno),
            key=template.key,
            hint="fix the Jinja syntax at this line",
        ) from None


def contact_keys(tree: nodes.Node) -> dict[str, int] | None:
    """The headers read as ``contact["…"]`` -> the template line of first use; None when ``contact`` is used
    any other way (``contact[name]``, ``contact.items()``), which no check can follow."""
    keys: dict[str, int] = {}
    indexed: set[int] = set()
    for node in tree.find_all(nodes.Getitem):
        if isinstance(node.node, nodes.Name) and node.node.name == CONTACT:
            if not (isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str)):
                return None
            keys.setdefault(node.arg.value, node.lineno)
            indexed.add(id(node.node))
    uses = [n for n in tree.find_all(nodes.Name) if n.name == CONTACT and n.ctx == "load"]
    if any(id(n) not in indexed for n in uses):
        return None
    return keys


def variables(template: Template, html: bool = False) -> dict[str, int | None]:
    """Variables the template reads from its context -> the file line of first use; a header read as
    ``contact["…"]`` counts as that header."""
    return _variables(parse(template, html), template)


def _variables(tree: nodes.Template, template: Template) -> dict[str, int | None]:
    undeclared = meta.find_undeclared_variables(tree)
    lines: dict[str, int | None] = {}
    keys = contact_keys(tree) if CONTACT in undeclared else {}
    if keys is not None:
        undeclared = undeclared - {CONTACT}
        for key, lineno in keys.items():
            lines.setdefault(key, template.line(lineno))
    for name_node in tree.find_all(nodes.Name):
        if name_node.name in undeclared and name_node.name not in lines:
            lines[name_node.name] = template.line(name_node.lineno)
    for name in sorted(undeclared - set(lines)):
        lines[name] = template.first_line
    return dict(sorted(lines.items(), key=lambda item: (item[1] or 0, item[0])))


def _squashed(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def reference(column: str) -> str:
    """How a template names ``column``: ``first_name``, or ``contact["First Name"]`` for any other header."""
    return column if column.isidentifier() else f'contact["{column}"]'


def did_you_mean(name: str, columns: Collection[str]) -> str | None:
    """The column ``name`` most likely meant (case, spaces and underscores aside, then by spelling)."""
    squashed = {_squashed(c): c for c in columns}
    if _squashed(name) in squashed:
        return squashed[_squashed(name)]
    close = difflib.get_close_matches(name.casefold(), [c.casefold() for c in columns], n=1, cutoff=0.75)
    if close:
        return next(c for c in columns if c.casefold() == close[0])
    return None


@dataclass(frozen=True)
class Unknown:
    """A name a template reads that is neither a column nor a built-in, or a header printed as text."""

    message: str
    hint: str
    line: int | None


def unknown_names(template: Template, columns: Collection[str], html: bool = False) -> list[Unknown]:
    """What ``validate`` and ``lint`` report about the names a template reads (see :class:`Unknown`)."""
    known = {c.lower() for c in columns} | TEMPLATE_BUILTINS
    found: list[Unknown] = []
    tree = parse(template, html)
    for name, line in _variables(tree, template).items():
        if name.lower() in known:
            continue
        meant = did_you_mean(name, columns)
        hint = (
            f"did you mean {reference(meant)}?"
            if meant
            else "use a column of the contacts file, or a built-in: " + ", ".join(sorted(TEMPLATE_BUILTINS))
        )
        found.append(Unknown(f"template variable '{name}' is not a contact column", hint, line))
    headers = {c.casefold(): c for c in columns}
    for output in tree.find_all(nodes.Output):
        for node in output.nodes:
            if isinstance(node, nodes.Const) and isinstance(node.value, str) and node.value.casefold() in headers:
                column = headers[node.value.casefold()]
                found.append(
                    Unknown(
                        f"'{node.value}' is printed as text, not the contact's {column}",
                        f"write {{{{ {reference(column)} }}}} to print the column",
                        template.line(node.lineno),
                    )
                )
    return found


@dataclass(frozen=True)
class Compiled:
    """A compiled template part and where its source is, for error messages."""

    source: Template
    template: JinjaTemplate
    name: str
    loops: bool  # a template with loops is rendered chunk by chunk, under the budget

    def render(self, context: Mapping[str, Any], masked_contact: str, show_pii: bool = False) -> str:
        """Render for one contact within the budget; DataError (65) naming file, line, variable, contact.

        The error never shows the contact's values (a key read from the data, a value quoted by an
        exception) unless ``show_pii``.
        """
        try:
            if not self.loops:  # no loop: its output is bounded by the operators the sandbox checks
                text = self.template.render(context)
                if len(text) > MAX_OUTPUT:
                    raise SecurityError(f"the rendered text is longer than {MAX_OUTPUT:,} characters")
                return text
            started = time.monotonic()
            size = 0
            chunks: list[str] = []
            with deadline(MAX_SECONDS):  # loops that print nothing are stopped by the alarm
                for chunk in self.template.generate(context):
                    size += len(chunk)
                    if size > MAX_OUTPUT:
                        raise SecurityError(f"the rendered text is longer than {MAX_OUTPUT:,} characters")
                    if time.monotonic() - started > MAX_SECONDS:
                        raise SecurityError(f"rendering took longer than {MAX_SECONDS:g} s")
                    chunks.append(chunk)
        except UndefinedError as exc:
            variable = _variable_name(str(exc.message or ""))
            if not show_pii and variable not in self.source.source:  # a key taken from the data, e.g. d[email]
                raise self._error(
                    DataError,
                    exc,
                    f"a key taken from the contact data ({mask_text(variable)}) is missing for contact "
                    f"{masked_contact}",
                    "look values up by names written in the template; --show-pii shows the key",
                ) from None
            raise self._error(
                DataError,
                exc,
                f"'{variable}' is missing or empty for contact {masked_contact} and has no default",
                f"write {{{{ {variable} | default('…') }}}} or guard it with {{% if {variable} %}}",
            ) from None
        except (
            SecurityError,
            TemplateError,
            ArithmeticError,
            ValueError,
            TypeError,
            RecursionError,
            MemoryError,
        ) as exc:
            raise self._error(
                BudgetExceeded if isinstance(exc, (SecurityError, MemoryError)) else DataError,
                exc,
                f"the template failed for contact {masked_contact}: {type(exc).__name__}: "
                f"{_short(exc) if show_pii else _scrubbed(_short(exc), context)}",
                "templates may only format contact values; they cannot run code",
            ) from None
        return "".join(chunks)

    def _error(self, kind: type[DataError], exc: BaseException, message: str, hint: str) -> DataError:
        """The error for a failed render: the template's file, the line that failed, its key."""
        return kind(
            message,
            file=self.source.file,
            line=self.source.line(_template_line(exc, self.name)),
            key=self.source.key,
            hint=hint,
        )


def _scrubbed(text: str, context: Mapping[str, Any]) -> str:
    """``text`` with every contact value (and the unsubscribe token) in it masked."""
    for key, value in context.items():
        if key in ("campaign", "variant") or value is None or isinstance(value, bool):
            continue
        shown = str(value)
        if len(shown) >= 3 and shown in text:
            text = text.replace(shown, mask_text(shown))
    return text


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:200]


def _variable_name(message: str) -> str:
    # Jinja: "'first_name' is undefined" / "'dict object' has no attribute 'x'"
    parts = message.split("'")
    if "has no attribute" in message and len(parts) >= 4:
        return parts[3]
    return parts[1] if len(parts) >= 2 else message


def _template_line(exc: BaseException, name: str) -> int | None:
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def compile_template(template: Template, html: bool = False) -> Compiled:
    """Compile one template part (syntax errors are ConfigErrors naming file and line)."""
    tree = parse(template, html)
    env = environment(html)
    name = f"<dmops:{template.file}:{template.key}>"
    code = env.compile(template.source, name=name, filename=name)
    compiled = env.template_class.from_code(env, code, env.globals, None)
    return Compiled(
        source=template,
        template=compiled,
        name=name,
        loops=any(tree.find(kind) is not None for kind in (nodes.For, nodes.Macro, nodes.CallBlock)),
    )


def clean_header(value: str | None) -> str | None:
    """A header value with every control character (CR, LF, tab, NUL, …) replaced by a space."""
    return None if value is None else _HEADER_CONTROL.sub(" ", value)


def has_header_control(value: str) -> bool:
    return _HEADER_CONTROL.search(value) is not None


def context_for(row: Mapping[str, Any], builtins: Mapping[str, Any]) -> dict[str, Any]:
    """The template context: contact values without the missing, empty or blank ones, the same values as
    ``contact`` (for headers that are not plain names), plus built-ins."""
    context = {
        key: value
        for key, value in row.items()
        if value is not None and not (isinstance(value, str) and not value.strip())
    }
    contact = dict(context)
    context.update(builtins)
    context[CONTACT] = contact
    return context
