"""pydantic's ValidationError -> one line naming the YAML key, the constraint and the value.

`training.lr: must be > 0 (got -0.001)`, prefixed with `spec.yaml:12:` when the value came
from a file, or followed by `(from --set ...)` when it came from the command line. With
several errors the first is shown and the rest counted: "(and 2 more errors)".
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from advfusion_cli.errors import UserError, did_you_mean
from advfusion_cli.spec.base import KEY_ERROR_TYPE
from advfusion_cli.spec.keys import describe_section, section_model
from advfusion_cli.spec.methods import METHOD_MODELS
from advfusion_cli.spec.names import METHODS
from advfusion_cli.spec.overrides import Source

Loc = tuple[str | int, ...]

_COMPARISONS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}
_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "dict": "a mapping of keys",
    "model": "a mapping of keys",
    "path": "a path",
}


def spec_error(
    err: ValidationError, sources: dict | None = None, method_name: str = "advfusion"
) -> UserError:
    """One UserError line for a whole ValidationError (first error + count of the rest)."""
    errors = err.errors(include_url=False)
    first = format_error(errors[0], sources or {}, method_name)
    rest = len(errors) - 1
    if rest:
        first += f" (and {rest} more error{'s' if rest > 1 else ''})"
    return UserError(first)


def format_error(error: dict[str, Any], sources: dict, method_name: str) -> str:
    loc = _loc(error)
    path = key_path(loc)
    message = _message(error, loc, method_name)
    source = _source_of(loc, sources)
    if source is None or source.label == "default":
        return f"{path}: {message}"
    if source.file is not None:
        where = f"{source.file}:{source.line}" if source.line else str(source.file)
        return f"{where}: {path}: {message}"
    return f"{path}: {message} (from {source.label})"


def key_path(loc: Loc) -> str:
    """('data', 'languages', 1) -> 'data.languages[1]'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(spec)"


def _loc(error: dict[str, Any]) -> Loc:
    loc = list(error["loc"])
    # The discriminated union puts the method's tag into the location: method.advfusion.x
    if len(loc) >= 2 and loc[0] == "method" and loc[1] in METHOD_MODELS:
        del loc[1]
    if error["type"] == KEY_ERROR_TYPE and error.get("ctx", {}).get("key"):
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", error["ctx"]["key"]):
            loc.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(loc)


def _message(error: dict[str, Any], loc: Loc, method_name: str) -> str:
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    if kind == KEY_ERROR_TYPE:
        return ctx["message"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return _unknown_key(loc, method_name)
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", ctx.get("expected", ""))
        hint = did_you_mean(str(value), choices) if isinstance(value, str) else ""
        return f"must be one of {', '.join(choices)} (got {_show(value)}).{hint}".rstrip(".")
    if kind in _COMPARISONS:
        bound_key, symbol = _COMPARISONS[kind]
        return f"must be {symbol} {_show(ctx[bound_key])} (got {_show(value)})"
    if kind in ("too_short", "string_too_short"):
        return f"must not be empty (got {_show(value)})"
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        return f"needs a method name: one of {', '.join(METHODS)}"
    if kind == "finite_number":
        return f"must be a finite number (got {_show(value)})"
    if kind == "int_from_float":
        return f"must be a whole number (got {_show(value)})"
    type_name = _type_name(kind)
    if type_name:
        return f"must be {type_name} (got {_show(value)})"
    return " ".join(str(error["msg"]).removeprefix("Value error, ").split())


def _type_name(kind: str) -> str | None:
    for prefix, name in _TYPE_NAMES.items():
        if kind.startswith(prefix + "_") or kind == prefix:
            return name
    return None


def _unknown_key(loc: Loc, method_name: str) -> str:
    parent = tuple(part for part in loc[:-1] if isinstance(part, str))
    model = section_model(parent, method_name)
    if model is None:
        return "unknown key"
    allowed = sorted(model.model_fields)
    hint = did_you_mean(str(loc[-1]), allowed)
    return (
        f"unknown key in {describe_section(parent, method_name)}.{hint} "
        f"Allowed: {', '.join(allowed)}."
    )


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, dict):
        text = "a mapping"
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _source_of(loc: Loc, sources: dict) -> Source | None:
    """The layer that set this key, or the nearest enclosing key that has one."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in sources:
            return sources[loc[:end]]
    return None
