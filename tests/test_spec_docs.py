"""docs/specs.md documents every key of the schema and its generated part is current."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from advfusion_cli.spec.methods import METHOD_MODELS
from advfusion_cli.spec.presets import PRESETS
from advfusion_cli.spec.reference import SECTIONS, spliced

DOC = Path(__file__).resolve().parents[1] / "docs" / "specs.md"


def key_paths(prefix: str, model: type[BaseModel]) -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            paths.extend(key_paths(f"{prefix}{name}.", inner))
        else:
            paths.append(f"{prefix}{name}")
    return paths


def test_generated_reference_is_up_to_date():
    text = DOC.read_text()
    assert spliced(text) == text, "run: python -m advfusion_cli.spec.reference docs/specs.md"


def test_doc_mentions_every_key_and_preset():
    text = DOC.read_text()
    keys = [path for section, model in SECTIONS for path in key_paths(f"{section}.", model)]
    keys += [path for model in METHOD_MODELS.values() for path in key_paths("method.", model)]
    assert len(keys) > 50
    missing = [key for key in keys if f"`{key}`" not in text]
    assert missing == []
    for name in PRESETS:
        assert f"`{name}`" in text
