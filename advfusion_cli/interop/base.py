"""The base model an import or export is for: its fingerprint and layout, from its config alone."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from advfusion_cli.engine.architectures import ArchitectureLayout, layout_for_model_type
from advfusion_cli.engine.serialization import base_fingerprint
from advfusion_cli.errors import UserError


@dataclass(frozen=True)
class BaseInfo:
    name: str  # as the user named it (hub id or folder)
    fingerprint: dict[str, Any]  # model_type, hidden_size, num_layers, name_or_path
    layout: ArchitectureLayout
    model_class: str  # e.g. LlamaForCausalLM, for the `adapters` config's model_class

    def describe(self) -> str:
        fp = self.fingerprint
        return f"{self.name} ({fp['model_type']}, hidden {fp['hidden_size']}, {fp['num_layers']} layers)"


def read_base(name: str, revision: str | None = None) -> BaseInfo:
    """Read the base's config (no weights) and check advfusion supports its architecture."""
    from transformers import AutoConfig

    from advfusion_cli.workflows.models import model_source

    try:
        config = AutoConfig.from_pretrained(model_source(name), revision=revision)
    except (OSError, ValueError, KeyError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise UserError(f"Cannot read the base model '{name}': {reason}") from None
    layout = layout_for_model_type(config.model_type)  # "Unsupported architecture ..." otherwise
    architectures = getattr(config, "architectures", None) or []
    return BaseInfo(
        name, base_fingerprint(SimpleNamespace(config=config)), layout, (architectures or [""])[0]
    )


def check_against_base(
    source: str, base: BaseInfo, model_type: str | None, hidden: int, num_layers: int
) -> None:
    """Refuse weights made for another architecture, hidden size or depth, naming both."""
    fp = base.fingerprint
    if model_type and model_type != fp["model_type"]:
        raise UserError(
            f"{source} was saved for a {model_type} model, but the base {base.describe()} is "
            f"{fp['model_type']}."
        )
    if hidden != fp["hidden_size"]:
        raise UserError(
            f"{source} has hidden size {hidden}, but the base {base.describe()} has "
            f"{fp['hidden_size']}."
        )
    if num_layers != fp["num_layers"]:
        raise UserError(
            f"{source} has weights for {num_layers} layers, but the base {base.describe()} has "
            f"{fp['num_layers']}."
        )
