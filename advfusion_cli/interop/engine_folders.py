"""Engine-format folders written and read without a model: what host.save_*/load_* exchange.

Import converts into these (so `host.load_adapter` / `load_fusion` and every workflow read the
result as if advfusion had trained it); export reads them back. The JSON is exactly what
`engine/host_io.py` writes, and `host.load_*` re-checks every tensor's name and shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from advfusion_cli.engine.modules import Adapter, AdapterConfig, FusionConfig, FusionLayer
from advfusion_cli.engine.modules.phm import new_phm_rule
from advfusion_cli.engine.serialization import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    FORMAT_VERSION,
    FUSION_CONFIG,
    FUSION_WEIGHTS,
    check_tensors,
    read_config,
    read_tensors,
    write_json,
    write_tensors,
)
from advfusion_cli.errors import UserError


def expected_adapter_shapes(config: AdapterConfig, hidden: int, num_layers: int) -> dict:
    """The engine's tensor names and shapes for one adapter on a base of this size."""
    rule = new_phm_rule(config) if config.kind == "compacter" and config.shared_phm_rule else None
    prototype = Adapter(hidden, config, phm_rule=rule)
    shapes = {"phm_rule": rule.shape} if rule is not None else {}
    for index in range(num_layers):
        for place in config.places:
            for name, param in prototype.named_parameters():
                shapes[f"layers.{index}.{place}.{name}"] = param.shape
    return shapes


def expected_fusion_shapes(
    config: FusionConfig, hidden: int, n_adapters: int, places, num_layers: int
) -> dict:
    prototype = FusionLayer(hidden, n_adapters, config)
    return {
        f"layers.{index}.{place}.{name}": param.shape
        for index in range(num_layers)
        for place in places
        for name, param in prototype.named_parameters()
    }


def check_adapter(
    source: Path, config: AdapterConfig, tensors: dict[str, Tensor], base: dict[str, Any]
) -> None:
    """Every tensor the config needs on this base, with its shape, and nothing else."""
    expected = expected_adapter_shapes(config, int(base["hidden_size"]), int(base["num_layers"]))
    check_tensors(source, tensors, expected)


def check_fusion(
    source: Path,
    config: FusionConfig,
    tensors: dict[str, Tensor],
    n_adapters: int,
    places,
    base: dict[str, Any],
) -> None:
    expected = expected_fusion_shapes(
        config, int(base["hidden_size"]), n_adapters, places, int(base["num_layers"])
    )
    check_tensors(source, tensors, expected)


def write_adapter(
    folder: Path,
    name: str,
    language: str | None,
    config: AdapterConfig,
    tensors: dict[str, Tensor],
    base: dict[str, Any],
    source: Path,
) -> None:
    """adapter.safetensors + adapter_config.json, after checking every name and shape."""
    check_adapter(source, config, tensors, base)
    folder.mkdir(parents=True, exist_ok=True)
    write_tensors(folder / ADAPTER_WEIGHTS, tensors)
    write_json(
        folder / ADAPTER_CONFIG,
        {
            "format_version": FORMAT_VERSION,
            "kind": "adapter",
            "name": name,
            "language": language,
            "adapter": config.to_dict(),
            "places": list(config.places),
            "base": base,
        },
    )


def write_fusion(
    folder: Path,
    names: list[str],
    adapter_kind: str,
    places: tuple[str, ...],
    config: FusionConfig,
    tensors: dict[str, Tensor],
    base: dict[str, Any],
    source: Path,
) -> None:
    check_fusion(source, config, tensors, len(names), places, base)
    folder.mkdir(parents=True, exist_ok=True)
    write_tensors(folder / FUSION_WEIGHTS, tensors)
    write_json(
        folder / FUSION_CONFIG,
        {
            "format_version": FORMAT_VERSION,
            "kind": "fusion",
            "fusion": config.to_dict(),
            "adapters": list(names),
            "adapter_kind": adapter_kind,
            "places": list(places),
            "masked": [],
            "temperature_steps": 0,
            "base": base,
        },
    )


def read_adapter(folder: Path) -> tuple[dict[str, Any], AdapterConfig, dict[str, Tensor]]:
    """(saved config JSON, AdapterConfig, tensors) of an engine adapter folder."""
    saved = read_config(folder, ADAPTER_CONFIG, "adapter")
    try:
        config = AdapterConfig.from_dict(saved.get("adapter"))
    except (UserError, TypeError, ValueError) as exc:
        raise UserError(f"{folder / ADAPTER_CONFIG}: invalid 'adapter': {exc}") from None
    return saved, config, read_tensors(folder / ADAPTER_WEIGHTS)


def read_fusion(folder: Path) -> tuple[dict[str, Any], FusionConfig, dict[str, Tensor]]:
    saved = read_config(folder, FUSION_CONFIG, "fusion")
    try:
        config = FusionConfig.from_dict(saved.get("fusion"))
    except (UserError, TypeError, ValueError) as exc:
        raise UserError(f"{folder / FUSION_CONFIG}: invalid 'fusion': {exc}") from None
    return saved, config, read_tensors(folder / FUSION_WEIGHTS)
