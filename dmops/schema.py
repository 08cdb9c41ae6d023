"""Validate a strict YAML document against a pydantic model, one error per bad key."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from dmops.errors import ConfigError, ProblemsFound
from dmops.yamlio import KeyPath, YamlDoc, dotted

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every dmops schema: unknown keys are errors, nothing is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


_TYPE_NAMES = {
    "string_type": "text",
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _data_path(data: Any, loc: tuple[Any, ...]) -> KeyPath:
    """Keep the parts of a pydantic ``loc`` that index into the data; a missing key ends it."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(part, str) and part.startswith("<"):
            continue  # a union's tag (see by_shape()), not a key of the data
        if isinstance(current, dict) and isinstance(part, str):
            path.append(part)
            if part not in current:
                break
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
        else:
            break
    return tuple(path)


def _type_of(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _fields_at(model: type[BaseModel], path: KeyPath) -> list[str]:
    """Field names of the (sub)model at ``path``, for 'did you mean' hints."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = field.annotation
        args = getattr(current, "__args__", ())
        for arg in (current, *args):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
                break
            for inner in getattr(arg, "__args__", ()):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    current = inner
                    break
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def validate_doc(model: type[M], doc: YamlDoc, context: dict[str, Any] | None = None) -> M:
    """Build ``model`` from ``doc`` or raise the list of problems as ConfigErrors."""
    errors = validation_errors(model, doc, context)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ProblemsFound(list(errors))
    return model.model_validate(doc.data, context=context)


def validation_errors(model: type[BaseModel], doc: YamlDoc, context: dict[str, Any] | None = None) -> list[ConfigError]:
    """Every schema problem of ``doc`` as a ConfigError naming file, line and key."""
    if not isinstance(doc.data, dict):
        return [ConfigError("the file must be a YAML mapping of keys to values", file=doc.path, line=1)]
    try:
        model.model_validate(doc.data, context=context)
    except ValidationError as exc:
        return [_to_config_error(model, doc, err) for err in exc.errors(include_url=False)]
    return []


def _to_config_error(model: type[BaseModel], doc: YamlDoc, err: Any) -> ConfigError:
    loc = tuple(err["loc"])
    path = _data_path(doc.data, loc)
    key = dotted(path) or None
    line = doc.line_of(path)
    kind = err["type"]
    given = err.get("input")
    name = str(path[-1]) if path else ""
    hint: str | None = None
    if kind == "extra_forbidden":
        allowed = _fields_at(model, path[:-1])
        close = difflib.get_close_matches(name, allowed, n=1)
        message = f"unknown key '{name}'"
        hint = f"did you mean '{close[0]}'?" if close else (f"allowed keys: {', '.join(allowed)}" if allowed else None)
    elif kind == "missing":
        message = f"missing required key '{name}'"
        hint = "add it"
    elif kind in _TYPE_NAMES:
        message = f"expected {_TYPE_NAMES[kind]}, got {_type_of(given)}"
    elif kind in ("literal_error", "enum"):
        expected = err.get("ctx", {}).get("expected", "")
        message = f"must be one of {expected}"
    elif kind == "value_error":
        message = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        if isinstance(err.get("ctx", {}).get("error"), _Hinted):
            hinted = err["ctx"]["error"]
            message, hint = hinted.message, hinted.hint
    else:
        message = err["msg"]
    return ConfigError(message, file=doc.path, line=line, key=key, hint=hint)


class _Hinted(ValueError):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def hinted(message: str, hint: str | None = None) -> ValueError:
    """A ValueError for a validator that carries a hint into the ConfigError."""
    return _Hinted(message, hint)


def by_shape(value: Any) -> str:
    """The tag of a value for a text-or-mapping union: errors then come from the one branch that applies."""
    return "<mapping>" if isinstance(value, dict) else "<text>"
