"""Bottleneck adapter (Houlsby/Pfeiffer; Compacter = PHM projections): delta(x) = act(x W_down + b_down) W_up + b_up."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advfusion_cli.engine.modules.activations import activation_function
from advfusion_cli.engine.modules.config import AdapterConfig, ConfigError
from advfusion_cli.engine.modules.phm import (
    check_phm_sizes,
    new_phm_factors,
    new_phm_rule,
    phm_weight,
)


class Adapter(nn.Module):
    """One adapter at one place: delta(x) = up(act(down(x)))."""

    def __init__(
        self, hidden_size: int, config: AdapterConfig, phm_rule: nn.Parameter | None = None
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.bottleneck_size = config.bottleneck_size(hidden_size)
        self.kind = config.kind
        self.activation = config.activation
        self._act = activation_function(config.activation)
        self._shared_rule: tuple[nn.Parameter, ...] = ()
        if config.kind == "task-adapter":
            if phm_rule is not None:
                raise ConfigError("A task adapter takes no phm_rule (only Compacter does).")
            self._init_dense(config)
        else:
            self._init_phm(config, phm_rule)

    def _init_dense(self, config: AdapterConfig) -> None:
        self.down = nn.Linear(self.hidden_size, self.bottleneck_size)
        self.up = nn.Linear(self.bottleneck_size, self.hidden_size)
        for linear in (self.down, self.up):
            nn.init.normal_(linear.weight, std=config.init_std)
            nn.init.zeros_(linear.bias)

    def _init_phm(self, config: AdapterConfig, phm_rule: nn.Parameter | None) -> None:
        d, b, n = self.hidden_size, self.bottleneck_size, config.phm_dim
        check_phm_sizes(d, b, n)
        if config.shared_phm_rule:
            if phm_rule is None:
                raise ConfigError(
                    "Compacter with shared_phm_rule needs phm_rule=new_phm_rule(config), "
                    "created once per adapter and passed to every place."
                )
            if tuple(phm_rule.shape) != (n, n, n):
                raise ConfigError(
                    f"phm_rule has shape {tuple(phm_rule.shape)}, expected ({n}, {n}, {n}) "
                    f"for phm_dim {n}."
                )
            # Held by reference, not registered: the owner of the shared rule registers,
            # trains and saves it once, so it is not repeated in every place's state dict.
            self._shared_rule = (phm_rule,)
        else:
            if phm_rule is not None:
                raise ConfigError("phm_rule was given but shared_phm_rule is false.")
            self.down_rule = new_phm_rule(config)
            self.up_rule = new_phm_rule(config)
        self.down_s, self.down_t = new_phm_factors(d, b, n, config.phm_rank)
        self.down_bias = nn.Parameter(torch.zeros(b))
        self.up_s, self.up_t = new_phm_factors(b, d, n, config.phm_rank)
        self.up_bias = nn.Parameter(torch.zeros(d))

    @property
    def phm_rule(self) -> nn.Parameter | None:
        """The shared Compacter rule this adapter uses, or None (task adapter / own rules)."""
        return self._shared_rule[0] if self._shared_rule else None

    def _rules(self) -> tuple[Tensor, Tensor]:
        if self._shared_rule:
            # The shared rule may live outside this module's .to(); follow our own dtype/device.
            rule = self._shared_rule[0].to(self.down_s)
            return rule, rule
        return self.down_rule, self.up_rule

    def dense_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(W_down (d, b), b_down (b,), W_up (b, d), b_up (d,)) with y = x @ W + b."""
        if self.kind == "task-adapter":
            return self.down.weight.t(), self.down.bias, self.up.weight.t(), self.up.bias
        down_rule, up_rule = self._rules()
        return (
            phm_weight(down_rule, self.down_s, self.down_t),
            self.down_bias,
            phm_weight(up_rule, self.up_s, self.up_t),
            self.up_bias,
        )

    def forward(self, x: Tensor) -> Tensor:
        """x (..., d) -> the delta (..., d), not x + delta."""
        if self.kind == "task-adapter":
            return self.up(self._act(self.down(x)))
        w_down, b_down, w_up, b_up = self.dense_weights()
        hidden = self._act(torch.addmm(b_down, x.reshape(-1, self.hidden_size), w_down))  # (M, b)
        return torch.addmm(b_up, hidden, w_up).view(x.shape)  # (M, b) -> (..., d)

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind}, hidden_size={self.hidden_size}, "
            f"bottleneck_size={self.bottleneck_size}, activation={self.activation}"
        )
