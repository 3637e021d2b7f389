"""The key reference of docs/specs.md, generated from the schema (types, defaults, the
`paper` preset's values, descriptions) so the docs cannot drift from the code.

    python -m advfusion_cli.spec.reference docs/specs.md   # rewrite the generated part
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from advfusion_cli.spec.methods import METHOD_MODELS, FusionSettings
from advfusion_cli.spec.presets import PAPER
from advfusion_cli.spec.schema import DataSpec, JobSpec, ModelSpec, OutputSpec, TrainingSpec

BEGIN = "<!-- BEGIN GENERATED KEY REFERENCE (python -m advfusion_cli.spec.reference) -->"
END = "<!-- END GENERATED KEY REFERENCE -->"

SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("model", ModelSpec),
    ("data", DataSpec),
    ("training", TrainingSpec),
    ("output", OutputSpec),
)


def type_text(annotation: Any) -> str:
    """A short, readable type: `int`, `float or null`, `one of: relu, gelu`, `list of str`."""
    if get_origin(annotation) is Annotated:
        return type_text(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        text = " or ".join(type_text(arg) for arg in args)
        return f"{text} or null" if len(args) < len(get_args(annotation)) else text
    if get_origin(annotation) is Literal:
        return "one of: " + ", ".join(str(arg) for arg in get_args(annotation))
    if get_origin(annotation) is list:
        return f"list of {type_text(get_args(annotation)[0])}"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def constraint_text(metadata: list[Any]) -> str:
    """`, > 0`, `, >= 1, < 1` from a field's annotated-types bounds."""
    bounds = []
    for item in metadata:
        for attr, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(item, attr, None) is not None:
                bounds.append(f"{symbol} {value_text(getattr(item, attr))}")
        if getattr(item, "min_length", None):
            bounds.append("not empty")
    return "".join(f", {bound}" for bound in bounds)


def value_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(value_text(item) for item in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _default(field) -> Any:
    if field.default is not PydanticUndefined:
        return field.default
    made = field.default_factory()
    return made.model_dump() if isinstance(made, BaseModel) else made


def _rows(prefix: str, model: type[BaseModel], paper: dict[str, Any]) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            rows.extend(_rows(f"{prefix}{name}.", inner, paper.get(name, {})))
            continue
        default = _default(field)
        paper_value = value_text(paper[name]) if name in paper and paper[name] != default else ""
        cells = [
            f"`{prefix}{name}`",
            type_text(field.annotation) + constraint_text(field.metadata),
            f"`{value_text(default)}`",
            f"`{paper_value}`" if paper_value else "",
            (field.description or "").replace("|", "\\|"),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _table(prefix: str, model: type[BaseModel], paper: dict[str, Any]) -> str:
    head = "| key | type | default | paper | description |\n|---|---|---|---|---|\n"
    return head + "\n".join(_rows(prefix, model, paper)) + "\n"


def reference_markdown() -> str:
    """Markdown tables of every key, section by section, methods one table each."""
    parts = [
        "Top level: `preset` (one of: testbed, paper; default `testbed`) and the sections "
        "below. Keys are written `section.key`; the *paper* column shows where the `paper` "
        "preset differs from the default.\n",
    ]
    for section, model in SECTIONS:
        description = JobSpec.model_fields[section].description
        paper = PAPER.values.get(section, {})
        parts.append(f"### `{section}` — {description}\n\n{_table(section + '.', model, paper)}")
    for name, model in METHOD_MODELS.items():
        note = ""
        if issubclass(model, FusionSettings):
            note = (
                " (fusion: the `adapter.*` keys set the fused adapters; null = the kind's default)"
            )
        parts.append(
            f"### `method` with `name: {name}`{note}\n\n"
            f"{_table('method.', model, PAPER.method_layer(name))}"
        )
    return "\n".join(parts)


def spliced(document: str) -> str:
    """`document` with the text between the markers replaced by the current reference."""
    start, end = document.index(BEGIN) + len(BEGIN), document.index(END)
    return document[:start] + "\n" + reference_markdown() + document[end:]


def main(argv: list[str]) -> None:
    path = Path(argv[0] if argv else "docs/specs.md")
    path.write_text(spliced(path.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
