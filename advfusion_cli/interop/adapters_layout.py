"""The AdapterHub `adapters` library's saved layout <-> the engine's adapters and fusions.

An `adapters` bottleneck adapter is `adapter_config.json` ({"config": {BnConfig fields},
"hidden_size", "model_type", "name", "version": "adapters.<v>"}) plus `adapter.safetensors`
or `pytorch_adapter.bin` holding

    <prefix>layers.<i>.<location>.adapters.<name>.adapter_down.0.<param>
    <prefix>layers.<i>.<location>.adapters.<name>.adapter_up.<param>
    <prefix>shared_parameters.<name>.phm_rule                      (Compacter's shared rule)

with <location> `attention_adapters` (after attention: advfusion's "attn") or
`output_adapters` (after the MLP: "mlp"). Dense projections store `weight`/`bias` as
nn.Linear does, exactly as the engine's task adapter; PHM projections store `W_left`
(n, in/n, r), `W_right` (n, r, out/n) and `b`, the engine's `*_s`, `*_t` and `*_bias`.
A fusion is `adapter_fusion_config.json` + `model_adapter_fusion.safetensors` /
`pytorch_model_adapter_fusion.bin` with `<prefix>layers.<i>.<location>.adapter_fusion_layer.
<a,b,c>.{query,key,value}.<param>`, the engine's fusion names one to one.

Which configurations have an engine equivalent (anything else is refused naming the key):
  seq_bn (Pfeiffer: after the MLP, reads f + h)          -> task adapter
  double_seq_bn + phm_layer (Compacter: Houlsby, reads f) -> Compacter
  double_seq_bn, dense (Houlsby)                          -> Compacter with phm_dim 1 and rank
      b whose rule is [[[1]]] and whose second factor is the identity: W = s t = s exactly
An unfactorised PHM weight W_i (factorized_phm_W false) becomes s_i = W_i, t_i = I the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advfusion_cli.engine.modules import AdapterConfig, FusionConfig
from advfusion_cli.errors import UserError

CONFIG_NAME = "adapter_config.json"
WEIGHTS_SAFE = "adapter.safetensors"
WEIGHTS_BIN = "pytorch_adapter.bin"
FUSION_CONFIG_NAME = "adapter_fusion_config.json"
FUSION_WEIGHTS_SAFE = "model_adapter_fusion.safetensors"
FUSION_WEIGHTS_BIN = "pytorch_model_adapter_fusion.bin"
SETUP_NAME = "adapter_setup.json"
INTERFACE_NAME = "adapter_interface.json"
LIBRARY_VERSION = "1.2.0"  # the `adapters` release whose layout export writes (read by 1.x)

LOCATIONS = {"attention_adapters": "attn", "output_adapters": "mlp"}
PLACE_LOCATION = {place: location for location, place in LOCATIONS.items()}

# The library's activation names <-> the engine's (transformers' "gelu" is the erf GELU).
ACTIVATION_IN = {
    "relu": "relu",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "swish": "silu",
    "silu": "silu",
    "tanh": "tanh",
}
ACTIVATION_OUT = {
    "relu": "relu",
    "gelu": "gelu",
    "gelu_tanh": "gelu_new",
    "silu": "swish",
    "tanh": "tanh",
}

# BnConfig settings the engine has no equivalent for, with the value it computes.
_FIXED = {
    "is_parallel": False,
    "ln_before": False,
    "ln_after": False,
    "use_gating": False,
    "scaling": 1.0,
    "original_ln_after": True,
    "residual_before_ln": True,
    "inv_adapter": None,
    "leave_out": [],
    "shared_W_phm": False,
}
# What export writes: the library's own SeqBnConfig / CompacterConfig fields.
_BN_DEFAULTS: dict[str, Any] = {
    "adapter_residual_before_ln": False,
    "cross_adapter": False,
    "dropout": 0.0,
    "factorized_phm_W": True,
    "factorized_phm_rule": False,
    "hypercomplex_nonlinearity": "glorot-uniform",
    "init_weights": "bert",
    "init_weights_seed": None,
    "inv_adapter": None,
    "inv_adapter_reduction_factor": None,
    "is_parallel": False,
    "learn_phm": True,
    "leave_out": [],
    "ln_after": False,
    "ln_before": False,
    "original_ln_after": True,
    "phm_bias": True,
    "phm_c_init": "normal",
    "phm_init_range": 0.0001,
    "residual_before_ln": True,
    "scaling": 1.0,
    "shared_W_phm": False,
    "stochastic_depth": 0.0,
    "use_gating": False,
}
_FUSION_FIXED = {"key": True, "query": True, "residual_before": False}

_ADAPTER_KEY = re.compile(
    r"^(?:.*\.)?layers\.(?P<layer>\d+)\.(?P<location>attention_adapters|output_adapters)"
    r"\.adapters\.(?P<name>.+)\.(?P<part>adapter_down\.0|adapter_up)\.(?P<param>[A-Za-z_]+)$"
)
_SHARED_KEY = re.compile(r"^(?:.*\.)?shared_parameters\.(?P<name>.+)\.(?P<param>[A-Za-z_]+)$")
_FUSION_KEY = re.compile(
    r"^(?:.*\.)?layers\.(?P<layer>\d+)\.(?P<location>attention_adapters|output_adapters)"
    r"\.adapter_fusion_layer\.(?P<name>.+)\.(?P<param>(?:query|key|value)\.(?:weight|bias))$"
)


def is_adapters_config(data: dict) -> bool:
    """An `adapters` adapter_config.json: a "config" mapping and hidden_size, no peft_type."""
    version = data.get("version")
    return "peft_type" not in data and (
        (isinstance(version, str) and version.startswith("adapters."))
        or (isinstance(data.get("config"), dict) and "hidden_size" in data)
    )


@dataclass
class ImportedAdapter:
    """One `adapters` adapter in engine terms: its config and `layers.<i>.<place>.<param>` tensors."""

    name: str
    config: AdapterConfig
    tensors: dict[str, Tensor]
    hidden_size: int
    num_layers: int
    model_type: str | None
    library_config: str  # seq_bn, double_seq_bn, compacter
    notes: list[str] = field(default_factory=list)


def _refuse(source: Path, key: str, value: Any, why: str) -> UserError:
    return UserError(f"{source}: {key} {value!r} cannot be imported: {why}.")


def _engine_reduction(source: Path, hidden: int, bottleneck: int, given: Any) -> int:
    """An integer reduction factor r with hidden // r == bottleneck (the engine's rule): the
    library's own when it is a whole number that gives this bottleneck, else the nearest."""
    candidates = []
    if (
        isinstance(given, (int, float))
        and not isinstance(given, bool)
        and float(given).is_integer()
    ):
        candidates.append(int(given))
    candidates.append(hidden // bottleneck)
    candidates += range(max(1, hidden // (bottleneck + 1)), hidden // bottleneck + 2)
    for r in candidates:
        if r >= 1 and hidden // r == bottleneck:
            return r
    raise _refuse(
        source, "reduction_factor", given, f"no integer factor gives bottleneck {bottleneck}"
    )


def _placement(source: Path, cfg: dict) -> str:
    """seq_bn (after the MLP, reads f + h) or double_seq_bn (after both, reads f)."""
    mh, out = bool(cfg.get("mh_adapter")), bool(cfg.get("output_adapter"))
    before = cfg.get("original_ln_before")
    if out and not mh:
        if before is not True:
            raise _refuse(
                source,
                "original_ln_before",
                before,
                "an adapter after the MLP alone reads f + h in advfusion (seq_bn: true)",
            )
        if cfg.get("phm_layer"):
            raise _refuse(
                source,
                "phm_layer",
                True,
                "a PHM adapter after the MLP alone (Compacter++) has no advfusion equivalent; "
                "advfusion's Compacter sits after attention and MLP (Compacter / double_seq_bn)",
            )
        return "seq_bn"
    if out and mh:
        if before is not False:
            raise _refuse(
                source,
                "original_ln_before",
                before,
                "adapters after attention and MLP read f alone in advfusion (double_seq_bn: false)",
            )
        return "compacter" if cfg.get("phm_layer") else "double_seq_bn"
    raise _refuse(
        source,
        "mh_adapter/output_adapter",
        f"{mh}/{out}",
        "advfusion places adapters after the MLP (seq_bn) or after attention and MLP (double_seq_bn)",
    )


def check_bn_config(source: Path, data: dict) -> tuple[dict, str]:
    """The BnConfig mapping and its placement; refuses what the engine cannot compute."""
    architecture = (
        data.get("config", {}).get("architecture") if isinstance(data.get("config"), dict) else None
    )
    if architecture not in (None, "bottleneck"):
        raise UserError(
            f"{source}: unknown adapter architecture '{architecture}': advfusion imports "
            "bottleneck adapters (seq_bn, double_seq_bn, Compacter) from `adapters` and LoRA "
            "from peft folders."
        )
    cfg = data.get("config")
    if not isinstance(cfg, dict) or "mh_adapter" not in cfg:
        raise UserError(f"{source}: 'config' is missing or is not a bottleneck adapter config.")
    for key, expected in _FIXED.items():
        value = cfg.get(key, expected)
        if key == "scaling" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        if value != expected:
            raise _refuse(source, key, value, f"advfusion's adapters compute it as {expected!r}")
    return cfg, _placement(source, cfg)


def _activation(source: Path, cfg: dict) -> str:
    name = str(cfg.get("non_linearity", "")).lower()
    if name not in ACTIVATION_IN:
        raise _refuse(
            source,
            "non_linearity",
            cfg.get("non_linearity"),
            f"advfusion's adapters use {', '.join(sorted(ACTIVATION_IN))}",
        )
    return ACTIVATION_IN[name]


def _reduction_value(source: Path, cfg: dict) -> Any:
    value = cfg.get("reduction_factor")
    if isinstance(value, dict):
        distinct = set(value.values())
        if len(distinct) != 1:
            raise _refuse(
                source,
                "reduction_factor",
                value,
                "advfusion uses one bottleneck size for every layer",
            )
        value = distinct.pop()
    return value


def _group(source: Path, name: str, tensors: dict[str, Tensor]) -> tuple[dict, dict]:
    """{(layer, place): {"down.<param>"|"up.<param>": tensor}} and the shared parameters."""
    per_place: dict[tuple[int, str], dict[str, Tensor]] = {}
    shared: dict[str, Tensor] = {}
    for key, tensor in tensors.items():
        match = _ADAPTER_KEY.match(key)
        if match and match["name"] == name:
            part = "down" if match["part"].startswith("adapter_down") else "up"
            place = (int(match["layer"]), LOCATIONS[match["location"]])
            per_place.setdefault(place, {})[f"{part}.{match['param']}"] = tensor
            continue
        match = _SHARED_KEY.match(key)
        if match and match["name"] == name:
            shared[match["param"]] = tensor
            continue
        raise UserError(f"{source}: unexpected tensor '{key}' for adapter '{name}'.")
    if not per_place:
        raise UserError(f"{source} holds no weights of adapter '{name}'.")
    return per_place, shared


def _check_layers(source: Path, per_place: dict, places: tuple[str, ...]) -> int:
    layers = sorted({layer for layer, _ in per_place})
    count = layers[-1] + 1
    expected = {(i, p) for i in range(count) for p in places}
    missing = sorted(expected - set(per_place))
    if missing or set(per_place) - expected:
        where = missing[0] if missing else sorted(set(per_place) - expected)[0]
        raise UserError(
            f"{source}: adapter weights are incomplete or misplaced (layer {where[0]}, "
            f"{PLACE_LOCATION[where[1]]}); every layer needs {', '.join(PLACE_LOCATION[p] for p in places)}."
        )
    return count


def _need(source: Path, found: dict, key: str, where: str) -> Tensor:
    if key not in found:
        raise UserError(f"{source}: missing tensor {key} ({where}).")
    return found[key]


def adapter_from_library(source: Path, data: dict, tensors: dict[str, Tensor]) -> ImportedAdapter:
    """Convert one saved `adapters` bottleneck adapter (config + weights) to engine terms."""
    cfg, placement = check_bn_config(source, data)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise UserError(f"{source}: 'name' is missing.")
    hidden = data.get("hidden_size")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise UserError(f"{source}: 'hidden_size' must be a positive integer, got {hidden!r}.")
    activation = _activation(source, cfg)
    per_place, shared = _group(source, name, tensors)
    places = ("mlp",) if placement == "seq_bn" else ("attn", "mlp")
    num_layers = _check_layers(source, per_place, places)
    notes = []
    if cfg.get("dropout", 0.0):
        notes.append(
            f"dropout {cfg['dropout']} is not applied (advfusion's adapters have no dropout)"
        )
    if placement == "seq_bn":
        converted, bottleneck = _dense_task_adapter(source, per_place)
        config = AdapterConfig.task_adapter(
            reduction_factor=_engine_reduction(
                source, hidden, bottleneck, _reduction_value(source, cfg)
            ),
            activation=activation,
        )
    elif placement == "double_seq_bn":
        converted, bottleneck = _dense_as_phm(source, per_place)
        config = AdapterConfig.compacter(
            reduction_factor=_engine_reduction(
                source, hidden, bottleneck, _reduction_value(source, cfg)
            ),
            activation=activation,
            phm_dim=1,
            phm_rank=bottleneck,
        )
        notes.append(
            "dense Houlsby adapter stored as a Compacter with phm_dim 1 (the same weights)"
        )
    else:
        converted, bottleneck, phm = _phm_adapter(source, cfg, per_place, shared)
        config = AdapterConfig.compacter(
            reduction_factor=_engine_reduction(
                source, hidden, bottleneck, _reduction_value(source, cfg)
            ),
            activation=activation,
            **phm,
        )
    return ImportedAdapter(
        name, config, converted, hidden, num_layers, data.get("model_type"), placement, notes
    )


def _dense_task_adapter(source: Path, per_place: dict) -> tuple[dict[str, Tensor], int]:
    """nn.Linear weights one to one: adapter_down.0 -> down, adapter_up -> up."""
    out: dict[str, Tensor] = {}
    bottleneck = 0
    for (layer, place), found in sorted(per_place.items()):
        where = f"layer {layer} {PLACE_LOCATION[place]}"
        for part in ("down", "up"):
            for param in ("weight", "bias"):
                out[f"layers.{layer}.{place}.{part}.{param}"] = _need(
                    source, found, f"{part}.{param}", where
                )
        bottleneck = out[f"layers.{layer}.{place}.down.weight"].shape[0]
    return out, bottleneck


def _dense_as_phm(source: Path, per_place: dict) -> tuple[dict[str, Tensor], int]:
    """A dense Houlsby adapter as PHM factors with n = 1, rank b: W = 1 * s t with t or s = I."""
    out: dict[str, Tensor] = {}
    bottleneck = 0
    for (layer, place), found in sorted(per_place.items()):
        where = f"layer {layer} {PLACE_LOCATION[place]}"
        down = _need(source, found, "down.weight", where)  # (b, d), y = x W^T
        up = _need(source, found, "up.weight", where)  # (d, b)
        bottleneck = down.shape[0]
        eye = torch.eye(bottleneck, dtype=down.dtype)
        prefix = f"layers.{layer}.{place}."
        out[prefix + "down_s"] = down.t().unsqueeze(0)  # (1, d, b)
        out[prefix + "down_t"] = eye.unsqueeze(0)  # (1, b, b)
        out[prefix + "down_bias"] = _need(source, found, "down.bias", where)
        out[prefix + "up_s"] = eye.unsqueeze(0)  # (1, b, b)
        out[prefix + "up_t"] = up.t().unsqueeze(0)  # (1, b, d)
        out[prefix + "up_bias"] = _need(source, found, "up.bias", where)
    out["phm_rule"] = torch.ones(1, 1, 1, dtype=out[prefix + "down_s"].dtype)
    return out, bottleneck


def _rule(source: Path, found: dict, prefix: str, where: str) -> Tensor:
    """A PHM rule (n, n, n), or its factorised form left (n, n, 1) @ right (n, 1, n)."""
    if f"{prefix}phm_rule" in found:
        return found[f"{prefix}phm_rule"]
    left = _need(source, found, f"{prefix}phm_rule_left", where)
    right = _need(source, found, f"{prefix}phm_rule_right", where)
    return torch.bmm(left.float(), right.float()).to(left.dtype)


def _phm_factors(source: Path, found: dict, part: str, where: str) -> tuple[Tensor, Tensor]:
    """(s, t) of one PHM projection; an unfactorised W (n, p, q) becomes s = W, t = I (q)."""
    if f"{part}.W_left" in found:
        return found[f"{part}.W_left"], _need(source, found, f"{part}.W_right", where)
    weight = _need(source, found, f"{part}.W", where)
    n, _, q = weight.shape
    return weight, torch.eye(q, dtype=weight.dtype).expand(n, q, q).clone()


def _phm_adapter(
    source: Path, cfg: dict, per_place: dict, shared: dict
) -> tuple[dict[str, Tensor], int, dict[str, Any]]:
    out: dict[str, Tensor] = {}
    shared_rule = bool(cfg.get("shared_phm_rule", True))
    bottleneck, rank, n = 0, None, None
    for (layer, place), found in sorted(per_place.items()):
        where = f"layer {layer} {PLACE_LOCATION[place]}"
        prefix = f"layers.{layer}.{place}."
        factors = {}
        for part in ("down", "up"):
            s, t = _phm_factors(source, found, part, where)
            factors[part] = (s, t)
            bias = found.get(f"{part}.b")
            if bias is None:  # phm_bias false: the engine's bias stays at zero
                width = t.shape[0] * t.shape[2]
                bias = torch.zeros(width, dtype=s.dtype)
            out[f"{prefix}{part}_s"], out[f"{prefix}{part}_t"] = s, t
            out[f"{prefix}{part}_bias"] = bias
            if not shared_rule:
                out[f"{prefix}{part}_rule"] = _rule(source, found, f"{part}.", where)
        down_s, down_t = factors["down"]
        up_s, up_t = factors["up"]
        n = down_s.shape[0]
        bottleneck = down_t.shape[0] * down_t.shape[2]
        # Factorised weights share one rank; unfactorised ones got rank q per projection.
        if down_s.shape[2] != up_s.shape[2]:
            widest = max(down_s.shape[2], up_s.shape[2])
            for part in ("down", "up"):
                s, t = out[f"{prefix}{part}_s"], out[f"{prefix}{part}_t"]
                pad = widest - s.shape[2]
                if pad:  # zero columns of s / rows of t add nothing to s t
                    out[f"{prefix}{part}_s"] = torch.cat([s, s.new_zeros(n, s.shape[1], pad)], 2)
                    out[f"{prefix}{part}_t"] = torch.cat([t, t.new_zeros(n, pad, t.shape[2])], 1)
        rank = out[f"{prefix}down_s"].shape[2]
    if shared_rule:
        out["phm_rule"] = _rule(source, shared, "", "shared_parameters")
    phm = {"phm_dim": int(n), "phm_rank": int(rank), "shared_phm_rule": shared_rule}
    return out, bottleneck, phm


# ---- fusion -------------------------------------------------------------------------------


@dataclass
class ImportedFusion:
    """An `adapters` AdapterFusion in engine terms: slot order, config, fusion tensors."""

    names: list[str]
    config: FusionConfig
    tensors: dict[str, Tensor]
    notes: list[str] = field(default_factory=list)


def fusion_from_library(
    source: Path, data: dict, tensors: dict[str, Tensor], places: tuple[str, ...], num_layers: int
) -> ImportedFusion:
    """Convert a saved AdapterFusion over adapters that sit at `places` in every layer."""
    cfg = data.get("config")
    names = data.get("adapter_names")
    if not isinstance(cfg, dict):
        raise UserError(f"{source}: 'config' is missing.")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise UserError(f"{source}: 'adapter_names' must list the fused adapters.")
    for key, expected in _FUSION_FIXED.items():
        if cfg.get(key, expected) != expected:
            raise _refuse(
                source, key, cfg.get(key), f"advfusion's fusion computes it as {expected!r}"
            )
    if cfg.get("query_before_ln") and places == ("mlp",):
        raise _refuse(
            source,
            "query_before_ln",
            True,
            "advfusion's fusion over seq_bn adapters queries with f + h (query_before_ln false)",
        )
    has_value = bool(cfg.get("value", True))
    notes = []
    if cfg.get("dropout_prob"):
        notes.append(
            f"fusion dropout_prob {cfg['dropout_prob']} is not applied (no attention dropout)"
        )
    if not has_value:
        notes.append("static fusion (no value matrix): W_V is the identity")
    config = FusionConfig(
        temperature=bool(cfg.get("temperature", False)),
        regularization_weight=0.01 if cfg.get("regularization", True) and has_value else 0.0,
    )
    fusion_name = data.get("name") if isinstance(data.get("name"), str) else ",".join(names)
    found: dict[tuple[int, str], dict[str, Tensor]] = {}
    for key, tensor in tensors.items():
        match = _FUSION_KEY.match(key)
        if not match or match["name"] != fusion_name:
            raise UserError(f"{source}: unexpected tensor '{key}' for fusion '{fusion_name}'.")
        found.setdefault((int(match["layer"]), LOCATIONS[match["location"]]), {})[
            match["param"]
        ] = tensor
    expected = {(i, p) for i in range(num_layers) for p in places}
    if set(found) != expected:
        odd = sorted(set(found) ^ expected)[0]
        raise UserError(
            f"{source}: fusion weights do not match its adapters (layer {odd[0]}, "
            f"{PLACE_LOCATION[odd[1]]}); they sit at {', '.join(PLACE_LOCATION[p] for p in places)} "
            f"in each of {num_layers} layers."
        )
    out: dict[str, Tensor] = {}
    for (layer, place), params in sorted(found.items()):
        where = f"layer {layer} {PLACE_LOCATION[place]}"
        prefix = f"layers.{layer}.{place}."
        for param in ("query.weight", "query.bias", "key.weight", "key.bias"):
            out[prefix + param] = _need(source, params, param, where)
        if has_value:
            out[prefix + "value.weight"] = _need(source, params, "value.weight", where)
        else:
            weight = params["query.weight"]
            out[prefix + "value.weight"] = torch.eye(weight.shape[1], dtype=weight.dtype)
    return ImportedFusion(list(names), config, out, notes)


# ---- export -------------------------------------------------------------------------------


def _refuse_export(key: str, value: Any, why: str) -> UserError:
    return UserError(f"Cannot export to the `adapters` layout: {key} {value!r} {why}.")


def _header(name: str, hidden: int, base: dict) -> dict[str, Any]:
    return {
        "hidden_size": hidden,
        "model_class": base.get("model_class", ""),
        "model_name": base.get("name_or_path", ""),
        "model_type": base.get("model_type", ""),
        "name": name,
        "version": f"adapters.{LIBRARY_VERSION}",
    }


def adapter_to_library(
    name: str, config: AdapterConfig, tensors: dict[str, Tensor], base: dict, layers_path: str
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(adapter_config.json, weights) of an engine adapter in the library's layout.

    `base` holds hidden_size, model_type, name_or_path and model_class; `layers_path` is the
    decoder-layer list's path in the causal LM (`model.layers`).
    """
    hidden = int(base["hidden_size"])
    bottleneck = config.bottleneck_size(hidden)
    if bottleneck != hidden // config.reduction_factor:
        raise _refuse_export(
            "reduction_factor",
            config.reduction_factor,
            f"gives a bottleneck of {hidden // config.reduction_factor}, which advfusion rounded up "
            f"to {bottleneck} for phm_dim {config.phm_dim}; the library requires it divisible",
        )
    settings = dict(_BN_DEFAULTS)
    settings["non_linearity"] = ACTIVATION_OUT[config.activation]
    settings["reduction_factor"] = config.reduction_factor
    if config.kind == "task-adapter":
        settings |= {
            "mh_adapter": False,
            "output_adapter": True,
            "original_ln_before": True,
            "phm_layer": False,
            "phm_dim": 4,
            "phm_rank": 1,
            "shared_phm_rule": True,
        }
    else:
        settings |= {
            "mh_adapter": True,
            "output_adapter": True,
            "original_ln_before": False,
            "phm_layer": True,
            "phm_dim": config.phm_dim,
            "phm_rank": config.phm_rank,
            "shared_phm_rule": config.shared_phm_rule,
        }
    out: dict[str, Tensor] = {}
    names = {
        "down.weight": "adapter_down.0.weight",
        "down.bias": "adapter_down.0.bias",
        "up.weight": "adapter_up.weight",
        "up.bias": "adapter_up.bias",
        "down_s": "adapter_down.0.W_left",
        "down_t": "adapter_down.0.W_right",
        "down_bias": "adapter_down.0.b",
        "down_rule": "adapter_down.0.phm_rule",
        "up_s": "adapter_up.W_left",
        "up_t": "adapter_up.W_right",
        "up_bias": "adapter_up.b",
        "up_rule": "adapter_up.phm_rule",
    }
    root = layers_path.split(".")[0]
    for key, tensor in tensors.items():
        if key == "phm_rule":
            out[f"{root}.shared_parameters.{name}.phm_rule"] = tensor
            continue
        _, layer, place, param = key.split(".", 3)
        location = PLACE_LOCATION[place]
        out[f"{layers_path}.{layer}.{location}.adapters.{name}.{names[param]}"] = tensor
    return {"config": dict(sorted(settings.items())), **_header(name, hidden, base)}, out


def fusion_to_library(
    names: list[str],
    config: FusionConfig,
    masked: list[str],
    tensors: dict[str, Tensor],
    base: dict,
    layers_path: str,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(adapter_fusion_config.json, weights) of an engine fusion in the library's layout."""
    if config.query_rank is not None:
        raise _refuse_export(
            "query_rank", config.query_rank, "(low-rank query/key) has no equivalent"
        )
    if config.temperature:
        raise _refuse_export(
            "temperature",
            True,
            "cannot be kept: the library restarts its schedule at T = 50 on load, so the fusion "
            "would not compute what advfusion trained",
        )
    if masked:
        raise _refuse_export(
            "masked", masked, "(a fusion saved with a masked slot) has no equivalent"
        )
    fusion_name = ",".join(names)
    out = {}
    for key, tensor in tensors.items():
        _, layer, place, param = key.split(".", 3)
        location = PLACE_LOCATION[place]
        out[f"{layers_path}.{layer}.{location}.adapter_fusion_layer.{fusion_name}.{param}"] = tensor
    settings = {
        "dropout_prob": None,
        "key": True,
        "query": True,
        "query_before_ln": False,
        "regularization": config.regularization_weight > 0,
        "residual_before": False,
        "temperature": False,
        "value": True,
        "value_before_softmax": True,
        "value_initialized": True,
    }
    header = _header(fusion_name, int(base["hidden_size"]), base)
    return {"adapter_names": list(names), "config": settings, **header}, out


def setup_json(names: list[str]) -> dict[str, Any]:
    """adapter_setup.json of Fuse(names), as save_adapter_setup writes it."""
    children = [{"type": "single", "children": [name]} for name in names]
    return {
        "adapter_setup": {"type": "Fuse", "children": children},
        "head_setup": None,
        "version": f"adapters.{LIBRARY_VERSION}",
    }


def interface_json(layout, model_type: str) -> dict[str, Any] | None:
    """adapter_interface.json for a Llama-shaped family the library has no built-in class for
    (Qwen2, Qwen3): the plugin interface that places bottleneck adapters where advfusion does."""
    if model_type in ("llama", "mistral") or layout.layers != "model.layers":
        return None
    if layout.attn_output != "self_attn.o_proj" or layout.mlp_output != "mlp.down_proj":
        return None
    interface = {
        "adapter_methods": ["bottleneck", "lora"],
        "attn_k_proj": "k_proj",
        "attn_o_proj": "o_proj",
        "attn_q_proj": "q_proj",
        "attn_qkv_proj": None,
        "attn_v_proj": "v_proj",
        "base_model": None,
        "layer_cross_attn": None,
        "layer_intermediate_proj": "mlp.up_proj",
        "layer_ln_1": None,
        "layer_ln_2": None,
        "layer_output_proj": "mlp.down_proj",
        "layer_pre_cross_attn": None,
        "layer_pre_ffn": layout.mlp_residual_norm,
        "layer_pre_self_attn": layout.attn_residual_norm,
        "layer_self_attn": "self_attn",
        "model_embeddings": "embed_tokens",
        "model_layers": "layers",
    }
    return {
        "interface": interface,
        "model_type": model_type,
        "version": f"adapters.{LIBRARY_VERSION}",
    }
