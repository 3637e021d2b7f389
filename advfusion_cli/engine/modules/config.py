"""Adapter (Pfeiffer bottleneck, Compacter) and AdapterFusion settings as validated frozen dataclasses."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from advfusion_cli.errors import UserError, did_you_mean, unknown_name_error

ADAPTER_KINDS = ("task-adapter", "compacter")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu", "tanh")
MASK_MODES = ("zero", "remove")

# Where each kind sits in a decoder layer and what it reads (reference §1).
_PLACES = {"task-adapter": ("mlp",), "compacter": ("attn", "mlp")}
_READS_RESIDUAL = {"task-adapter": True, "compacter": False}


class ConfigError(UserError, ValueError):
    """A bad adapter/fusion setting: a `UserError` (one-line CLI message) and a `ValueError`."""


def _require_int(name: str, value: Any, minimum: int) -> None:
    # bool is an int subclass; `phm_dim: true` in a spec is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}.")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}.")


def _require_float(name: str, value: Any, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}.")
    if positive and value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}.")
    if not positive and value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value}.")


def _require_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}.")


def _require_choice(what: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(str(unknown_name_error(what, str(value), choices)))


def _checked_kwargs(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Reject keys that are not fields of `cls`, naming each with its nearest match."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be a mapping, got {type(data).__name__}.")
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in data if key not in fields]
    if unknown:
        hints = "; ".join(f"'{key}'.{did_you_mean(str(key), fields)}".rstrip() for key in unknown)
        raise ConfigError(f"Unknown {cls.__name__} key(s): {hints} Available: {', '.join(fields)}.")
    return dict(data)


@dataclass(frozen=True)
class AdapterConfig:
    """One adapter's shape and init; presets `task_adapter()` and `compacter()`."""

    kind: Literal["task-adapter", "compacter"] = "task-adapter"
    reduction_factor: int = 16  # bottleneck = hidden // reduction_factor (>= 1)
    activation: Literal["relu", "gelu", "gelu_tanh", "silu", "tanh"] = "relu"  # gelu = exact erf
    init_std: float = 0.02  # task adapter: dense weights N(0, init_std), biases 0
    phm_dim: int = 4  # compacter: n, the number of Kronecker summands
    phm_rank: int = 1  # compacter: rank of B_i = s_i t_i^T
    shared_phm_rule: bool = True  # compacter: one rule A per adapter, shared by every place
    phm_rule_init_std: float = 1e-4

    def __post_init__(self) -> None:
        _require_choice("adapter kind", self.kind, ADAPTER_KINDS)
        _require_int("reduction_factor", self.reduction_factor, 1)
        _require_choice("activation", self.activation, ACTIVATIONS)
        _require_float("init_std", self.init_std, positive=True)
        _require_int("phm_dim", self.phm_dim, 1)
        _require_int("phm_rank", self.phm_rank, 1)
        _require_bool("shared_phm_rule", self.shared_phm_rule)
        _require_float("phm_rule_init_std", self.phm_rule_init_std, positive=True)

    @classmethod
    def task_adapter(cls, **overrides: Any) -> AdapterConfig:
        """Pfeiffer bottleneck after the MLP: reduction 16, ReLU (reference §1)."""
        settings: dict[str, Any] = {
            "kind": "task-adapter",
            "reduction_factor": 16,
            "activation": "relu",
        }
        return cls(**(settings | _checked_kwargs(cls, overrides)))

    @classmethod
    def compacter(cls, **overrides: Any) -> AdapterConfig:
        """Compacter (PHM bottleneck, Houlsby places): reduction 32, erf GELU, n 4, rank 1."""
        settings: dict[str, Any] = {
            "kind": "compacter",
            "reduction_factor": 32,
            "activation": "gelu",
            "phm_dim": 4,
            "phm_rank": 1,
        }
        return cls(**(settings | _checked_kwargs(cls, overrides)))

    @property
    def places(self) -> tuple[str, ...]:
        """Sublayers that get one adapter each: ("mlp",) or ("attn", "mlp")."""
        return _PLACES[self.kind]

    @property
    def input_includes_residual(self) -> bool:
        """True when the adapter reads f + h (task adapter), False when it reads f (Compacter)."""
        return _READS_RESIDUAL[self.kind]

    def bottleneck_size(self, hidden_size: int) -> int:
        size = hidden_size // self.reduction_factor
        if size < 1:
            raise ConfigError(
                f"reduction_factor {self.reduction_factor} is larger than hidden size "
                f"{hidden_size}: the bottleneck would be empty."
            )
        if self.kind == "compacter" and size % self.phm_dim:
            # PHM layers need sizes divisible by phm_dim. The adapters library errors here; we
            # round the bottleneck up (192 / 32 = 6 -> 8 on the embedded model). Real code LLMs
            # (hidden 1536-4096) never need it, so the paper's settings are unchanged.
            size += self.phm_dim - size % self.phm_dim
        return size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        return cls(**_checked_kwargs(cls, data))


@dataclass(frozen=True)
class FusionConfig:
    """AdapterFusion settings ("dynamic" defaults of the adapters library, reference §2)."""

    temperature: bool = False  # T starts at 50, -50/1000 per training forward, floor 1
    regularization_weight: float = 0.01  # loss += weight * sum over places ||I - W_V||_F^2
    value_identity_init: bool = True  # W_V = I with 1e-6 off the diagonal; never a bias
    mask_mode: Literal["zero", "remove"] = "zero"  # zero: null slot; remove: -inf logit
    query_rank: int | None = None  # low-rank query/key (not the paper's); None = full d

    def __post_init__(self) -> None:
        _require_bool("temperature", self.temperature)
        _require_float("regularization_weight", self.regularization_weight, positive=False)
        _require_bool("value_identity_init", self.value_identity_init)
        _require_choice("mask mode", self.mask_mode, MASK_MODES)
        if self.query_rank is not None:
            _require_int("query_rank", self.query_rank, 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionConfig:
        return cls(**_checked_kwargs(cls, data))
