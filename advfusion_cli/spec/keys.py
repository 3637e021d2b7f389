"""Walking the job-spec schema by dotted key path (`training.lr`, `method.adapter.phm_dim`).

Used by `--set` and command flags to check a key exists before any value is merged, and by
the error formatter to list a key's siblings. The `method` section's keys depend on which
method is chosen, so every lookup takes the method name.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from advfusion_cli.errors import UserError, did_you_mean
from advfusion_cli.spec.methods import METHOD_MODELS
from advfusion_cli.spec.schema import JobSpec


def section_model(prefix: tuple[str, ...], method_name: str) -> type[BaseModel] | None:
    """The model holding the keys under `prefix` (() = top level), or None for a leaf."""
    model: type[BaseModel] = JobSpec
    for depth, part in enumerate(prefix):
        if depth == 0 and part == "method":
            model = METHOD_MODELS[method_name]
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        inner = _nested_model(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def describe_section(prefix: tuple[str, ...], method_name: str) -> str:
    if prefix == ("method",):
        return f"method '{method_name}'"
    return ".".join(prefix) if prefix else "the spec's top level"


def lookup_field(path: tuple[str, ...], method_name: str, origin: str) -> FieldInfo:
    """The leaf field at `path`; UserError naming the path (with did-you-mean) otherwise.

    `origin` says where the key came from, e.g. "--set" (it starts the message)."""
    if not path or any(not part for part in path):
        raise UserError(f"{origin}: empty key in '{'.'.join(path)}'")
    for depth in range(len(path)):
        prefix, part = path[:depth], path[depth]
        model = section_model(prefix, method_name)
        if model is None:
            parent = ".".join(prefix)
            raise UserError(f"{origin} {'.'.join(path)}: '{parent}' is a value, not a section")
        if part not in model.model_fields:
            allowed = sorted(model.model_fields)
            raise UserError(
                f"{origin} {'.'.join(path)}: unknown key '{part}' in "
                f"{describe_section(prefix, method_name)}.{did_you_mean(part, allowed)} "
                f"Allowed: {', '.join(allowed)}."
            )
    leaf = section_model(path[:-1], method_name).model_fields[path[-1]]
    if section_model(path, method_name) is not None:
        keys = ", ".join(sorted(section_model(path, method_name).model_fields))
        raise UserError(f"{origin} {'.'.join(path)}: is a section; set one of its keys ({keys})")
    return leaf


def _strip(annotation: Any) -> tuple[Any, bool]:
    """(annotation without Annotated/None, whether None is allowed)."""
    nullable = False
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        nullable = len(args) < len(get_args(annotation))
        annotation = args[0] if len(args) == 1 else annotation
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation, nullable


def value_kind(field: FieldInfo) -> tuple[Literal["list", "text", "yaml"], bool]:
    """How a command-line value for this field is read, and whether null is allowed:
    list = comma-separated or a YAML list; text = kept verbatim; yaml = a YAML scalar."""
    annotation, nullable = _strip(field.annotation)
    if get_origin(annotation) in (list, tuple):
        return "list", nullable
    if annotation in (str, Path):
        return "text", nullable
    if get_origin(annotation) is Literal and all(isinstance(a, str) for a in get_args(annotation)):
        return "text", nullable
    return "yaml", nullable
