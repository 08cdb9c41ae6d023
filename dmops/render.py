"""Jinja templates in the sandbox: compile, list variables, render (SPEC §7). No I/O."""

from __future__ import annotations

from functools import lru_cache

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from dmops.campaign import Template
from dmops.errors import ConfigError

# Names every template can use besides the contact's columns.
TEMPLATE_BUILTINS = frozenset({"unsubscribe_token", "unsubscribe_url", "campaign", "variant"})


@lru_cache(maxsize=2)
def environment(html: bool) -> SandboxedEnvironment:
    """The sandboxed environment: undefined is an error; HTML parts autoescape."""
    return SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=html,
        keep_trailing_newline=True,
        auto_reload=False,
    )


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
