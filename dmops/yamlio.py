"""Strict YAML reading: safe, no aliases, no duplicate keys, no YAML 1.1 guesses.

Plain (unquoted) scalars resolve as in YAML 1.2's core schema, restricted to
forms nobody misreads: ``null``/``~``/empty, ``true``/``false``, decimal
integers without sign ``+`` or leading zeros, and plain decimal floats.
Everything YAML 1.1 would silently turn into something else — ``12:30``
(sexagesimal 750), ``NO``/``yes``/``on`` (booleans), ``+8613800138000`` and
``00123`` (integers), ``0x1F`` — is an error asking for quotes, so a value is
never guessed. Every key's line is kept so errors can point at it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dmops.errors import ConfigError, MissingInputError

KeyPath = tuple[str | int, ...]

_NULL = re.compile(r"^(?:~|null|Null|NULL|)\Z")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^-?(?:0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?\Z")
_YAML11_BOOL = re.compile(r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)\Z")
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?\Z")
_NUMBERISH = re.compile(
    r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9_]+|0[xob][0-9a-fA-F_]+|\.(?:inf|Inf|INF|nan|NaN|NAN))\Z"
)
_PLAIN = "tag:dmops,plain"  # an untagged, unquoted scalar: resolved by _Builder.scalar
_STR = "tag:yaml.org,2002:str"
_ALLOWED_TAGS = {_PLAIN, _STR, "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


@dataclass
class YamlDoc:
    """A loaded YAML document with the line of every key and item."""

    path: Path
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, key: KeyPath) -> int | None:
        """The line of ``key``, or of its nearest ancestor that has one."""
        probe = tuple(key)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return self.lines.get((), None)


MAX_DEPTH = 64  # nesting levels; a workspace file needs a handful, and Python's stack ends near 1,000


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses aliases (no billion-laughs expansion) and deep nesting."""

    depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ConfigError(
                "YAML aliases (*name) are not supported",
                line=event.start_mark.line + 1,
                hint="write the value out in full",
            )
        if self.depth >= MAX_DEPTH:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ConfigError(
                f"YAML nested more than {MAX_DEPTH} levels deep",
                line=event.start_mark.line + 1,
                hint="a dmops file needs only a few levels; this is not a workspace file",
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is ScalarNode and implicit[0]:
            return _PLAIN
        resolved: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return resolved


def dotted(key: KeyPath) -> str:
    """``('variants', 0, 'text')`` -> ``variants[0].text``."""
    out = ""
    for part in key:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _always_text(key: KeyPath) -> bool:
    """Values that are text whatever they look like: a consent's ``true_values`` (``[yes, y, 1, 是]``) and the
    file headers of ``contacts.columns``, as an export writes them."""
    return (len(key) >= 2 and key[-2] == "true_values") or (len(key) == 3 and key[:2] == ("contacts", "columns"))


class _Builder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[KeyPath, int] = {}

    def error(self, message: str, node: Node, key: KeyPath, hint: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.path, line=node.start_mark.line + 1, key=dotted(key) or None, hint=hint)

    def build(self, node: Node, key: KeyPath) -> Any:
        self.lines.setdefault(key, node.start_mark.line + 1)
        if node.tag not in _ALLOWED_TAGS:
            raise self.error(
                f"YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed",
                node,
                key,
                "remove the tag; dmops reads plain strings, numbers, booleans, lists and mappings",
            )
        if isinstance(node, MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    raise self.error("a mapping key must be a plain string", key_node, key)
                name = key_node.value
                if name == "<<":
                    raise self.error("YAML merge keys (<<) are not supported", key_node, key)
                if name in result:
                    first = self.lines.get((*key, name))
                    raise self.error(
                        f"duplicate key '{name}' (first given on line {first})",
                        key_node,
                        (*key, name),
                        "keep one of them",
                    )
                self.lines[(*key, name)] = key_node.start_mark.line + 1
                result[name] = self.build(value_node, (*key, name))
            return result
        if isinstance(node, SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[(*key, index)] = item.start_mark.line + 1
                items.append(self.build(item, (*key, index)))
            return items
        assert isinstance(node, ScalarNode)
        return self.scalar(node, key)

    def scalar(self, node: ScalarNode, key: KeyPath) -> Any:
        text = node.value
        if node.tag == _STR or _always_text(key):  # quoted, block or !!str; or a place only text can go
            return text
        if _NULL.match(text):
            return None
        if text in _BOOL:
            return _BOOL[text]
        if _INT.match(text):
            return int(text)
        if _FLOAT.match(text):
            return float(text)
        if _YAML11_BOOL.match(text):
            raise self.error(
                f"ambiguous value {text}: YAML 1.1 reads it as a boolean",
                node,
                key,
                f'write true or false, or quote it as "{text}" if you mean the text',
            )
        if _SEXAGESIMAL.match(text):
            raise self.error(
                f"ambiguous value {text}: YAML 1.1 reads it as a base-60 number",
                node,
                key,
                f'quote it: "{text}"',
            )
        if _NUMBERISH.match(text):
            raise self.error(
                f"ambiguous value {text}: it looks like a number but is not a plain decimal",
                node,
                key,
                f'quote it as "{text}" if it is text (ids, phones), or write a plain decimal number',
            )
        return text


def load_yaml(path: Path, *, missing_code: type[MissingInputError] = MissingInputError) -> YamlDoc:
    """Read ``path`` strictly. Raises ConfigError for malformed YAML and MissingInputError if absent."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise missing_code(f"{path.name} not found", file=path) from None
    except OSError as exc:
        raise missing_code(f"cannot read {path.name}: {exc.strerror}", file=path) from None
    return parse_yaml(raw, path)


def parse_yaml(raw: bytes | str, path: Path) -> YamlDoc:
    """Parse YAML text strictly (see module docs)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not valid UTF-8 (byte {exc.start})", file=path, hint="save the file as UTF-8") from None
    try:
        loader = _NoAliasLoader(raw)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except ConfigError as exc:
        raise ConfigError(exc.message, file=path, line=exc.location.line, key=exc.location.key, hint=exc.hint) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(
            f"YAML syntax error: {exc.problem or exc.context}",
            file=path,
            line=mark.line + 1 if mark else None,
            hint="check indentation and quoting around this line",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=path) from None
    builder = _Builder(path)
    data = builder.build(node, ()) if node is not None else None
    return YamlDoc(path=path, data=data, lines=builder.lines)
