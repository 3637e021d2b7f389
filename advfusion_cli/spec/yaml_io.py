"""Reading spec YAML (with the line of every key, for error messages) and writing it back.

PyYAML follows YAML 1.1, where `1e-4` is a string; specs are full of learning rates, so
the loader also reads exponent-only numbers as floats. Duplicate keys, which PyYAML would
silently resolve to the last one, are an error here, and so are keys that are not plain
scalars, aliases that contain themselves and nesting deeper than `MAX_DEPTH`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from advfusion_cli.errors import UserError

Key = tuple[str | int, ...]

# No spec nests anywhere near this deep; deeper input is rejected before it can exhaust
# the interpreter's stack (PyYAML's composer and constructor recurse per level).
MAX_DEPTH = 100


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
    check_spec_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    return parse_yaml_text(text, str(path))


def check_spec_file(path: Path) -> None:
    """UserError naming the path when a spec file is missing or is a directory."""
    if not path.exists():
        raise UserError(f"spec file not found: {path}")
    if path.is_dir():
        raise UserError(f"spec file is a directory: {path}")


def parse_yaml_text(text: str, name: str) -> tuple[dict[str, Any], dict[Key, int]]:
    loader = SpecLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Key, int] = {}
        if node is not None:
            _collect_lines(node, (), lines, name)
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise UserError(
            f"{name}: invalid YAML: nested too deeply (more than {MAX_DEPTH} levels)"
        ) from None
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


def _collect_lines(
    node: yaml.Node,
    prefix: Key,
    lines: dict[Key, int],
    name: str,
    open_nodes: set[int] | None = None,
    done: set[int] | None = None,
) -> None:
    """Record the line of every key path; reject duplicate and non-scalar keys, aliases
    that contain themselves and too deep nesting. A node reached again through an alias
    is not walked twice (so `[*a, *a, ...]` chains cannot blow up exponentially)."""
    open_nodes = set() if open_nodes is None else open_nodes
    done = set() if done is None else done
    line = node.start_mark.line + 1
    if id(node) in open_nodes:
        where = _dotted(prefix) or "(top level)"
        raise UserError(f"{name}:{line}: {where}: recursive alias (an anchor used inside itself)")
    if not isinstance(node, yaml.MappingNode | yaml.SequenceNode) or id(node) in done:
        return
    if len(prefix) >= MAX_DEPTH:
        raise UserError(f"{name}:{line}: invalid YAML: nested more than {MAX_DEPTH} levels deep")
    open_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                where = _dotted(prefix)
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                raise UserError(
                    f"{name}:{line}: {where + ': ' if where else ''}a key must be a plain name, "
                    f"not a {kind}"
                )
            key = key_node.value
            if key == "<<":  # a merge: check what it merges, record no lines for it
                _collect_lines(value_node, prefix, {}, name, open_nodes, done)
                continue
            if key in seen:
                where = ".".join(map(str, (*prefix, key)))
                raise UserError(
                    f"{name}:{line}: duplicate key '{where}' (first on line {seen[key]})"
                )
            seen[key] = line
            lines[(*prefix, key)] = line
            _collect_lines(value_node, (*prefix, key), lines, name, open_nodes, done)
    else:
        for index, item in enumerate(node.value):
            lines[(*prefix, index)] = item.start_mark.line + 1
            _collect_lines(item, (*prefix, index), lines, name, open_nodes, done)
    open_nodes.discard(id(node))
    done.add(id(node))


def _dotted(path: Key) -> str:
    """("data", "languages", 1) -> "data.languages[1]"."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_SpecDumper, sort_keys=False, allow_unicode=True, width=100)
