"""Save and load a host's adapters and fusions (tensor names, configs, checks).

Tensor names are `layers.<i>.<place>.<parameter>` (e.g. `layers.3.mlp.down.weight`), plus
`phm_rule` for a Compacter's shared rule, so a file reads the same whatever the architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from advfusion_cli.engine.modules import AdapterConfig, FusionConfig, FusionLayer
from advfusion_cli.engine.safetensors_stream import StreamedTensor, write_streamed
from advfusion_cli.engine.serialization import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    FORMAT_VERSION,
    FUSION_CONFIG,
    FUSION_WEIGHTS,
    TENSOR_METADATA,
    atomic_path,
    base_fingerprint,
    check_fingerprint,
    check_tensors,
    read_config,
    read_tensors,
    write_json,
    write_tensors,
)
from advfusion_cli.errors import UserError

if TYPE_CHECKING:
    from advfusion_cli.engine.host import AdapterHost

SHARED_RULE_KEY = "phm_rule"


def adapter_tensors(host: AdapterHost, name: str) -> dict[str, Tensor]:
    tensors: dict[str, Tensor] = {}
    rule = host.shared_rule(name)
    if rule is not None:
        tensors[SHARED_RULE_KEY] = rule
    for index, place, adapter in host.adapters_of(name):
        for param_name, param in adapter.named_parameters():
            tensors[f"layers.{index}.{place}.{param_name}"] = param
    return tensors


def fusion_tensors(host: AdapterHost) -> dict[str, Tensor]:
    tensors: dict[str, Tensor] = {}
    state = host.fusion_state
    for index in range(host.num_layers):
        for place in state.places:
            fusion = host.place(index, place).fusion
            for param_name, param in fusion.named_parameters():
                tensors[f"layers.{index}.{place}.{param_name}"] = param
    return tensors


def _copy_into(targets: dict[str, Tensor], loaded: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for key, target in targets.items():
            target.copy_(loaded[key])  # casts to the host's adapter dtype and device


def _folder_for_write(folder: Path) -> Path:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"Cannot save into '{folder}': it is a file.")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_adapter(host: AdapterHost, name: str, folder: Path) -> Path:
    config = host.adapter_config(name)
    _folder_for_write(folder)
    write_tensors(folder / ADAPTER_WEIGHTS, adapter_tensors(host, name))
    write_json(
        folder / ADAPTER_CONFIG,
        {
            "format_version": FORMAT_VERSION,
            "kind": "adapter",
            "name": name,
            "language": host.adapter_language(name),
            "adapter": config.to_dict(),
            "places": list(config.places),
            "base": base_fingerprint(host.model),
        },
    )
    return folder


def _parsed(path: Path, what: str, parse, data: Any):
    try:
        return parse(data)
    except UserError as exc:
        raise UserError(f"{path}: invalid '{what}': {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: invalid '{what}': {exc}") from exc


def _expected_shapes(tensors: dict[str, Tensor]) -> dict[str, torch.Size]:
    return {key: tensor.shape for key, tensor in tensors.items()}


def load_adapter(host: AdapterHost, folder: Path, name: str | None, strict_base: bool) -> str:
    saved = read_config(folder, ADAPTER_CONFIG, "adapter")
    config_path = folder / ADAPTER_CONFIG
    check_fingerprint(saved.get("base"), base_fingerprint(host.model), config_path, strict_base)
    config = _parsed(config_path, "adapter", AdapterConfig.from_dict, saved.get("adapter"))
    if list(saved.get("places", [])) != list(config.places):
        raise UserError(
            f"{config_path}: places {saved.get('places')} do not match a {config.kind} "
            f"({list(config.places)})."
        )
    name = name or saved.get("name")
    if not isinstance(name, str) or not name:
        raise UserError(f"{config_path} has no adapter 'name'; pass name= to load_adapter.")
    language = saved.get("language")
    weights_path = folder / ADAPTER_WEIGHTS
    loaded = read_tensors(weights_path)  # before creating anything: a bad file changes nothing
    host.add_adapter(name, config, language=language if isinstance(language, str) else None)
    try:
        targets = adapter_tensors(host, name)
        check_tensors(weights_path, loaded, _expected_shapes(targets))
        _copy_into(targets, loaded)
    except BaseException:
        host.remove_adapter(name)
        raise
    return name


def save_fusion(
    host: AdapterHost,
    folder: Path | None,
    streamed: list[StreamedTensor] | None = None,
    write: bool = True,
) -> Path | None:
    state = host.fusion_state
    live = fusion_tensors(host)
    if streamed is not None and {e.name for e in streamed} != set(live):
        raise ValueError("save_fusion: the given tensors are not this host's fusion weights")
    if not write:  # another process writes: only take part in producing each tensor
        write_streamed(None, streamed or [])
        return None
    _folder_for_write(folder)
    first = host.place(0, state.places[0]).fusion
    if streamed is None:
        write_tensors(folder / FUSION_WEIGHTS, live)
    else:
        with atomic_path(folder / FUSION_WEIGHTS) as tmp:
            write_streamed(tmp, streamed, metadata=TENSOR_METADATA)
    write_json(
        folder / FUSION_CONFIG,
        {
            "format_version": FORMAT_VERSION,
            "kind": "fusion",
            "fusion": state.config.to_dict(),
            "adapters": list(state.names),
            "adapter_kind": host.adapter_config(state.names[0]).kind,
            "places": list(state.places),
            "masked": list(state.masked),
            "temperature_steps": first.temperature_steps,
            "base": base_fingerprint(host.model),
        },
    )
    return folder


def _string_list(path: Path, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{path}: '{key}' must be a list of names.")
    return value


def load_fusion(host: AdapterHost, folder: Path, strict_base: bool) -> None:
    saved = read_config(folder, FUSION_CONFIG, "fusion")
    config_path = folder / FUSION_CONFIG
    check_fingerprint(saved.get("base"), base_fingerprint(host.model), config_path, strict_base)
    config = _parsed(config_path, "fusion", FusionConfig.from_dict, saved.get("fusion"))
    names = _string_list(config_path, "adapters", saved.get("adapters"))
    masked = _string_list(config_path, "masked", saved.get("masked", []))
    if not names or any(m not in names for m in masked):
        raise UserError(f"{config_path}: 'masked' must name adapters listed in 'adapters'.")
    missing = [n for n in names if n not in host.adapter_names]
    if missing:
        raise UserError(
            f"{config_path} fuses adapters {', '.join(names)}; load {', '.join(missing)} first "
            "with host.load_adapter."
        )
    kinds = {host.adapter_config(n).kind for n in names}
    if kinds != {saved.get("adapter_kind")}:
        raise UserError(
            f"{config_path} was trained over {saved.get('adapter_kind')} adapters, but the loaded "
            f"adapters are {', '.join(sorted(kinds))}."
        )
    steps = saved.get("temperature_steps", 0)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise UserError(f"{config_path}: 'temperature_steps' must be a non-negative integer.")
    weights_path = folder / FUSION_WEIGHTS
    loaded = read_tensors(weights_path)
    # Check the file against one prototype layer before replacing the current fusion.
    prototype = FusionLayer(host.hidden_size, len(names), config)
    places = host.adapter_config(names[0]).places
    expected = {
        f"layers.{index}.{place}.{key}": param.shape
        for index in range(host.num_layers)
        for place in places
        for key, param in prototype.named_parameters()
    }
    check_tensors(weights_path, loaded, expected)
    host.fuse(names, config)
    _copy_into(fusion_tensors(host), loaded)
    for index in range(host.num_layers):
        for place in places:
            host.place(index, place).fusion.temperature_steps = steps
    for name in masked:
        host.mask(name)
