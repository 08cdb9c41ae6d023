"""Jinja templates in the sandbox: compile, list variables, render (SPEC §7). No I/O.

- A missing, empty or null value is *undefined*: ``default(...)`` supplies a
  fallback, ``{% if x %}`` is false, and printing it (or any other use) is an
  error — a message never says "Hi ,".
- HTML parts are autoescaped; text parts and subjects are not.
- A render budget bounds each message: at most :data:`MAX_OUTPUT` characters
  per part and :data:`MAX_SECONDS` per part, and operators that could build a
  huge value (``'x' * 10**9``, ``2 ** 10**9``) are refused before they run.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2 import Template as JinjaTemplate
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from dmops.campaign import Template
from dmops.errors import ConfigError, DataError

# Names every template can use besides the contact's columns.
TEMPLATE_BUILTINS = frozenset({"unsubscribe_token", "unsubscribe_url", "campaign", "variant"})
MAX_OUTPUT = 1_000_000  # characters per rendered part
MAX_SECONDS = 2.0  # per rendered part
MAX_SEQUENCE = 100_000  # longest string or list an operator may build
MAX_EXPONENT = 1_000


class Undefined(StrictUndefined):
    """StrictUndefined that is false in a test, so ``{% if x %}`` guards a value."""

    def __bool__(self) -> bool:  # type: ignore[override]
        return False


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        if op == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and len(seq) * count > MAX_SEQUENCE:
                    raise SecurityError(f"the template builds a value longer than {MAX_SEQUENCE:,}")
            return operator.mul(left, right)
        if op == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
                raise SecurityError("the template raises a number to a huge power")
            return operator.pow(left, right)
        if (
            op == "+"
            and isinstance(left, (str, list))
            and isinstance(right, (str, list))
            and len(left) + len(right) > MAX_OUTPUT
        ):
            raise SecurityError(f"the template builds a value longer than {MAX_OUTPUT:,}")
        return operator.add(left, right)


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


def variables(template: Template, html: bool = False) -> dict[str, int | None]:
    """Variables the template reads from its context -> the file line of first use."""
    tree = parse(template, html)
    undeclared = meta.find_undeclared_variables(tree)
    lines: dict[str, int | None] = {}
    for name_node in tree.find_all(nodes.Name):
        if name_node.name in undeclared and name_node.name not in lines:
            lines[name_node.name] = template.line(name_node.lineno)
    for name in sorted(undeclared - set(lines)):
        lines[name] = template.first_line
    return dict(sorted(lines.items(), key=lambda item: (item[1] or 0, item[0])))


@dataclass(frozen=True)
class Compiled:
    """A compiled template part and where its source is, for error messages."""

    source: Template
    template: JinjaTemplate
    name: str
    loops: bool  # a template with loops is rendered chunk by chunk, under the budget

    def render(self, context: Mapping[str, Any], masked_contact: str) -> str:
        """Render for one contact within the budget; DataError (65) naming file, line, variable, contact."""
        try:
            if not self.loops:  # no loop: its output is bounded by the operators the sandbox checks
                text = self.template.render(context)
                if len(text) > MAX_OUTPUT:
                    raise SecurityError(f"the rendered text is longer than {MAX_OUTPUT:,} characters")
                return text
            started = time.monotonic()
            size = 0
            chunks: list[str] = []
            for chunk in self.template.generate(context):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise SecurityError(f"the rendered text is longer than {MAX_OUTPUT:,} characters")
                if time.monotonic() - started > MAX_SECONDS:
                    raise SecurityError(f"rendering took longer than {MAX_SECONDS:g} s")
                chunks.append(chunk)
        except UndefinedError as exc:
            variable = _variable_name(str(exc.message or ""))
            raise DataError(
                f"'{variable}' is missing or empty for contact {masked_contact} and has no default",
                file=self.source.file,
                line=self.source.line(_template_line(exc, self.name)),
                key=self.source.key,
                hint=f"write {{{{ {variable} | default('…') }}}} or guard it with {{% if {variable} %}}",
            ) from None
        except (SecurityError, TemplateError, ArithmeticError, ValueError, TypeError, RecursionError) as exc:
            raise DataError(
                f"the template failed for contact {masked_contact}: {type(exc).__name__}: {_short(exc)}",
                file=self.source.file,
                line=self.source.line(_template_line(exc, self.name)),
                key=self.source.key,
                hint="templates may only format contact values; they cannot run code",
            ) from None
        return "".join(chunks)


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


def context_for(row: Mapping[str, Any], builtins: Mapping[str, Any]) -> dict[str, Any]:
    """The template context: contact values without the missing, empty or blank ones, plus built-ins."""
    context = {
        key: value
        for key, value in row.items()
        if value is not None and not (isinstance(value, str) and not value.strip())
    }
    context.update(builtins)
    return context
