"""N frozen bottleneck adapters of one place in one batched op (AdapterFusion input): z_n = g_n (act(x D_n + d_n) U_n + u_n)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from advfusion_cli.engine.modules.activations import activation_function
from advfusion_cli.engine.modules.bottleneck import Adapter
from advfusion_cli.engine.modules.config import ConfigError


def stack_deltas(
    x: Tensor,
    down_weight: Tensor,
    down_bias: Tensor,
    up_weight: Tensor,
    up_bias: Tensor,
    gate: Tensor,
    act: Callable[[Tensor], Tensor],
) -> Tensor:
    """All N deltas of x (..., d) -> z (..., N, d), in the stored layouts of `AdapterStack`.

    One GEMM for every down projection, one batched GEMM for every up projection. The gate
    scales the up weights and bias rather than z: it touches N*b*d numbers instead of
    tokens*N*d, and gate 0 gives z_n = 0 exactly, as if every weight and bias were zeroed
    (act(0) = 0 for all supported activations).
    """
    *lead, d = x.shape
    n, b, _ = up_weight.shape
    flat = x.reshape(-1, d)  # (M, d), M = number of tokens
    hidden = torch.addmm(down_bias.reshape(-1), flat, down_weight.reshape(d, n * b))  # (M, N*b)
    hidden = act(hidden).view(-1, n, b).transpose(0, 1)  # (M, N*b) -> (N, M, b)
    gated_up = up_weight * gate[:, None, None]  # (N, b, d)
    gated_bias = (up_bias * gate[:, None]).unsqueeze(1)  # (N, 1, d)
    z = torch.baddbmm(gated_bias, hidden, gated_up)  # (N, M, b) x (N, b, d) -> (N, M, d)
    return z.permute(1, 0, 2).reshape(*lead, n, d)  # (M, N, d) view -> (..., N, d)


class AdapterStack(nn.Module):
    """N frozen adapters of one place as stacked buffers; all deltas in one batched op.

    Buffers (stored in the layouts the batched op reads without copies):
    down_weight (d, N, b), down_bias (N, b), up_weight (N, b, d), up_bias (N, d),
    gate (N,) - 1 active, 0 masked; a value in between scales that adapter's delta.
    """

    def __init__(
        self,
        down_weight: Tensor,
        down_bias: Tensor,
        up_weight: Tensor,
        up_bias: Tensor,
        activation: str,
    ) -> None:
        """down_weight (N, d, b), down_bias (N, b), up_weight (N, b, d), up_bias (N, d)."""
        super().__init__()
        n, d, b = down_weight.shape
        expected = {"down_bias": (n, b), "up_weight": (n, b, d), "up_bias": (n, d)}
        given = {"down_bias": down_bias, "up_weight": up_weight, "up_bias": up_bias}
        for name, shape in expected.items():
            if tuple(given[name].shape) != shape:
                raise ValueError(
                    f"AdapterStack {name} has shape {tuple(given[name].shape)}, expected {shape} "
                    f"for down_weight {tuple(down_weight.shape)}."
                )
        self.activation = activation
        self._act = activation_function(activation)
        self.register_buffer("down_weight", down_weight.detach().transpose(0, 1).contiguous())
        self.register_buffer("down_bias", down_bias.detach().clone())
        self.register_buffer("up_weight", up_weight.detach().clone())
        self.register_buffer("up_bias", up_bias.detach().clone())
        self.register_buffer("gate", torch.ones(n, dtype=down_weight.dtype))

    @classmethod
    def from_adapters(cls, adapters: Sequence[Adapter]) -> AdapterStack:
        """Copy (detached) the dense weights of adapters of one place, in order.

        Adapters may differ in bottleneck size: smaller ones are zero-padded, which adds
        hidden units with act(0) = 0 and zero up weights, so each delta is unchanged.
        """
        if not adapters:
            raise ValueError("AdapterStack needs at least one adapter.")
        first = adapters[0]
        for adapter in adapters[1:]:
            if adapter.hidden_size != first.hidden_size:
                raise ConfigError(
                    f"Cannot stack adapters of hidden sizes {first.hidden_size} and "
                    f"{adapter.hidden_size}."
                )
            if adapter.activation != first.activation:
                raise ConfigError(
                    f"Cannot stack adapters with activations '{first.activation}' and "
                    f"'{adapter.activation}': one stack applies one activation."
                )
        d = first.hidden_size
        b = max(adapter.bottleneck_size for adapter in adapters)
        dtype = next(first.parameters()).dtype
        device = next(first.parameters()).device
        n = len(adapters)
        down_weight = torch.zeros(n, d, b, dtype=dtype, device=device)
        down_bias = torch.zeros(n, b, dtype=dtype, device=device)
        up_weight = torch.zeros(n, b, d, dtype=dtype, device=device)
        up_bias = torch.zeros(n, d, dtype=dtype, device=device)
        with torch.no_grad():
            for i, adapter in enumerate(adapters):  # construction only, not the forward
                w_down, b_down, w_up, b_up = adapter.dense_weights()
                width = adapter.bottleneck_size
                down_weight[i, :, :width] = w_down
                down_bias[i, :width] = b_down
                up_weight[i, :width] = w_up
                up_bias[i] = b_up
        return cls(down_weight, down_bias, up_weight, up_bias, first.activation)

    @property
    def n_adapters(self) -> int:
        return self.up_weight.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.up_weight.shape[2]

    @property
    def bottleneck_size(self) -> int:
        return self.up_weight.shape[1]

    def set_gate(self, index: int, value: float) -> None:
        """Gate 0 masks adapter `index` exactly (its delta is 0); 1 restores it."""
        if not 0 <= index < self.n_adapters:
            raise IndexError(f"Adapter index {index} out of range for {self.n_adapters} adapters.")
        with torch.no_grad():
            self.gate[index] = value

    def stacked_tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(down_weight, down_bias, up_weight, up_bias, gate) in the stored layouts."""
        return self.down_weight, self.down_bias, self.up_weight, self.up_bias, self.gate

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, d) -> z (B, T, N, d): every adapter's delta, no loop over N."""
        if x.shape[-1] != self.hidden_size:
            raise ValueError(
                f"AdapterStack expects hidden size {self.hidden_size}, got input {tuple(x.shape)}."
            )
        return stack_deltas(x, *self.stacked_tensors(), self._act)

    def extra_repr(self) -> str:
        return (
            f"n_adapters={self.n_adapters}, hidden_size={self.hidden_size}, "
            f"bottleneck_size={self.bottleneck_size}, activation={self.activation}"
        )
