"""Reading spec YAML (with the line of every key, for error messages) and writing it back.

PyYAML follows YAML 1.1, where `1e-4` is a string; specs are full of learning rates, so
the loader also reads exponent-only numbers as floats. Duplicate keys, which PyYAML would
silently resolve to the last one, are an error here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from advfusion_cli.errors import UserError

Key = tuple[str | int, ...]


class SpecLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-4` / `5E3` as floats."""


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


class _SpecDumper(yaml.SafeDumper):
    """Lists of scalars in flow style (`languages: [python, ruby]`), the rest in blocks."""


def _represent_list(dumper: yaml.SafeDumper, items: list) -> yaml.Node:
    flow = all(not isinstance(item, dict | list) for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)


_SpecDumper.add_representer(list, _represent_list)


def read_yaml_file(path: Path) -> tuple[dict[str, Any], dict[Key, int]]:
    """(mapping, line of each key path) from a spec file; UserError with file:line on failure."""
    if not path.exists():
        raise UserError(f"spec file not found: {path}")
    if path.is_dir():
        raise UserError(f"spec file is a directory: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    return parse_yaml_text(text, str(path))


def parse_yaml_text(text: str, name: str) -> tuple[dict[str, Any], dict[Key, int]]:
    loader = SpecLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Key, int] = {}
        if node is not None:
            _collect_lines(node, (), lines, name)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = " ".join(str(err.problem or err.context or "invalid YAML").split())
        raise UserError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as err:
        raise UserError(f"{name}: invalid YAML: {' '.join(str(err).split())}") from None
    finally:
        loader.dispose()
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise UserError(
            f"{name}: a spec is a mapping of sections (model, data, method, training, output), "
            f"not a {type(data).__name__}"
        )
    return data, lines


def _collect_lines(node: yaml.Node, prefix: Key, lines: dict[Key, int], name: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key, line = key_node.value, key_node.start_mark.line + 1
            if key == "<<":
                continue
            if key in seen:
                where = ".".join(map(str, (*prefix, key)))
                raise UserError(
                    f"{name}:{line}: duplicate key '{where}' (first on line {seen[key]})"
                )
            seen[key] = line
            lines[(*prefix, key)] = line
            _collect_lines(value_node, (*prefix, key), lines, name)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*prefix, index)] = item.start_mark.line + 1
            _collect_lines(item, (*prefix, index), lines, name)


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_SpecDumper, sort_keys=False, allow_unicode=True, width=100)
