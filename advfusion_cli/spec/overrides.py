"""Layers of settings and how they merge: defaults < preset < spec file < --set < flags.

A layer is a nested dict shaped like the spec. Merging is a deep update with two rules
that keep the result coherent:
- choosing a different method at a higher level drops the lower levels' method keys that
  the new method does not have (e.g. `--kind lora` over a spec written for AdvFusion);
- setting one key of an either/or pair (epochs | max_steps, eval_every_epochs |
  eval_every_steps, ...) clears its partner from the lower levels.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from advfusion_cli.errors import UserError
from advfusion_cli.spec.keys import lookup_field, value_kind
from advfusion_cli.spec.methods import METHOD_MODELS
from advfusion_cli.spec.schema import EXCLUSIVE_TRAINING_KEYS, normalize_method_block
from advfusion_cli.spec.yaml_io import SpecLoader

Key = tuple[str, ...]
_MISSING = object()

EXCLUSIVE_KEYS: tuple[tuple[Key, Key], ...] = (
    *((("training", a), ("training", b)) for a, b in EXCLUSIVE_TRAINING_KEYS),
    (("method", "phase1_epochs"), ("method", "phase1_steps")),
    (("method", "phase2_epochs"), ("method", "phase2_steps")),
)


@dataclass(frozen=True)
class Source:
    """Where a value came from, for error messages: `spec.yaml:12` or `--set a.b=1`."""

    label: str
    file: Path | None = None
    line: int | None = None


@dataclass(frozen=True)
class Layer:
    values: dict[str, Any]
    source: Source
    lines: dict[tuple[str | int, ...], int] | None = None  # file layers: line of each key


def parse_set(item: str) -> tuple[Key, str]:
    """`a.b=value` -> (("a", "b"), "value")."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set '{item}': expected KEY=VALUE, e.g. --set training.lr=1e-4")
    return tuple(part.strip() for part in key.strip().split(".")), raw.strip()


def read_value(raw: str, path: Key, method_name: str, origin: str) -> Any:
    """Parse a command-line value for the field at `path` (YAML scalar, list or text)."""
    field = lookup_field(path, method_name, origin)
    kind, nullable = value_kind(field)
    if nullable and raw.lower() in ("null", "~", "none", ""):
        return None
    if kind == "text":
        return raw
    if kind == "list" and not raw.startswith("["):
        return [item.strip() for item in raw.split(",") if item.strip()]
    try:
        return yaml.load(raw, Loader=SpecLoader)
    except RecursionError:
        raise UserError(f"{origin} {'.'.join(path)}: value nested too deeply") from None
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or "not valid YAML"
        raise UserError(f"{origin} {'.'.join(path)}={raw}: {problem}") from None


def coerce_flag(value: Any, path: Key, method_name: str) -> Any:
    """A typed flag value as the spec expects it (enums by value, 'a,b' for lists)."""
    if isinstance(value, enum.Enum):
        value = value.value
    field = lookup_field(path, method_name, "option")
    kind, _ = value_kind(field)
    if kind == "list" and isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if kind == "list" and isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


def nest(items: list[tuple[Key, Any]]) -> dict[str, Any]:
    """[(("a", "b"), 1)] -> {"a": {"b": 1}}."""
    tree: dict[str, Any] = {}
    for path, value in items:
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def method_name_of(values: dict[str, Any]) -> str | None:
    """The canonical method name a layer chooses, if it chooses one."""
    block = values.get("method")
    if isinstance(block, str):
        return normalize_method_block(block)["name"]
    if isinstance(block, dict) and isinstance(block.get("name"), str):
        return normalize_method_block(block)["name"]
    return None


def leaf_paths(values: dict[str, Any], prefix: Key = ()) -> list[Key]:
    paths: list[Key] = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            paths.extend(leaf_paths(value, (*prefix, key)))
        else:
            paths.append((*prefix, key))
    return paths


def merge_layers(layers: list[Layer]) -> tuple[dict[str, Any], dict[Key, Source]]:
    """Merge layers lowest first; returns the merged values and the source of each leaf."""
    merged: dict[str, Any] = {}
    sources: dict[Key, Source] = {}
    for layer in layers:
        values = copy.deepcopy(layer.values)  # merging must never edit a preset's dicts
        if "method" in values:
            values["method"] = normalize_method_block(values["method"])
            _switch_method(merged, sources, values)
        _clear_partners(merged, sources, values)
        _deep_update(merged, values)
        lines = layer.lines or {}
        for path in leaf_paths(values):
            for stale in [p for p in sources if len(p) > len(path) and p[: len(path)] == path]:
                del sources[stale]
            sources[path] = Source(layer.source.label, layer.source.file, lines.get(path))
        for path, line in lines.items():  # sections and list items keep their own line
            sources[path] = Source(layer.source.label, layer.source.file, line)
    return merged, sources


def _switch_method(merged: dict, sources: dict[Key, Source], values: dict) -> None:
    new_name = method_name_of(values)
    old = merged.get("method")
    if new_name is None or not isinstance(old, dict) or old.get("name") == new_name:
        return
    accepted = METHOD_MODELS[new_name].model_fields
    merged["method"] = {key: value for key, value in old.items() if key in accepted}
    for path in [p for p in sources if p[:1] == ("method",)]:
        if len(path) > 1 and path[1] not in accepted:
            del sources[path]


def _clear_partners(merged: dict, sources: dict[Key, Source], values: dict) -> None:
    for first, second in EXCLUSIVE_KEYS:
        for chosen, partner in ((first, second), (second, first)):
            if _get(values, chosen) not in (None, _MISSING) and _get(values, partner) is _MISSING:
                section = merged.get(partner[0])
                if isinstance(section, dict) and partner[1] in section:
                    section[partner[1]] = None  # None, not absent: absent would mean "default"
                sources.pop(partner, None)


def _get(values: dict, path: Key) -> Any:
    node: Any = values
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _deep_update(target: dict, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            target[key] = dict(target[key])
            _deep_update(target[key], value)
        else:
            target[key] = value
