"""AdapterFusion (arXiv 2005.00247), dynamic variant: out = f + W_V sum_n alpha_n z_n, alpha = softmax_n(Q.K_n / T)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from advfusion_cli.engine.modules.activations import activation_function
from advfusion_cli.engine.modules.config import ConfigError, FusionConfig
from advfusion_cli.engine.modules.stack import AdapterStack, stack_deltas

TEMPERATURE_START = 50.0  # adapters library: T = 50 when the schedule is on
TEMPERATURE_STEPS = 1000  # ... and it falls by T_start / 1000 per training forward, to 1
VALUE_OFF_DIAGONAL = 1e-6  # identity-initialised W_V carries this off the diagonal


def _scores(query_key: Tensor, shift: Tensor, z: Tensor) -> Tensor:
    """Q.K_n = (W_K^T Q).z_n + Q.b_K without building K: (..., d), (...), (..., N, d) -> (..., N)."""
    return (z @ query_key.unsqueeze(-1)).squeeze(-1) + shift.unsqueeze(-1)


def _probabilities(scores: Tensor, removed: Tensor | None, temperature: float) -> Tensor:
    """Softmax over the N slots in at least float32 (unscaled dot products can be large)."""
    logits = scores.to(torch.promote_types(scores.dtype, torch.float32))
    if temperature != 1.0:
        logits = logits / temperature
    if removed is not None:
        logits = logits.masked_fill(removed, float("-inf"))
    return torch.softmax(logits, dim=-1)


def _mix(alpha: Tensor, z: Tensor) -> Tensor:
    """sum_n alpha_n z_n: (..., N), (..., N, d) -> (..., d)."""
    return (alpha.unsqueeze(-2) @ z).squeeze(-2)


class _RecomputedMix(torch.autograd.Function):
    """(alpha, sum_n alpha_n z_n) from x, with z = stack(x) recomputed in backward, never saved.

    Saves x, W_K^T Q and alpha (a few numbers per token) instead of z (N*d per token).
    Stack tensors are frozen inputs; gradients flow to x, W_K^T Q and the shift Q.b_K.
    """

    @staticmethod
    def forward(ctx, x, query_key, shift, removed, temperature, activation, *stack):
        act = activation_function(activation)
        z = stack_deltas(x, *stack, act)  # (..., N, d), dropped when forward returns
        probs = _probabilities(_scores(query_key, shift, z), removed, temperature)
        alpha = probs.to(z.dtype)
        ctx.save_for_backward(x, query_key, probs, *stack)
        ctx.temperature = temperature
        ctx.activation = activation
        ctx.shift_dtype = shift.dtype
        return _mix(alpha, z), alpha

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_mixed, grad_alpha):
        x, query_key, probs, *stack = ctx.saved_tensors
        needs_x = ctx.needs_input_grad[0]
        with torch.enable_grad():
            x_leaf = x.detach().requires_grad_(needs_x)
            z_graph = stack_deltas(x_leaf, *stack, activation_function(ctx.activation))
        z = z_graph.detach()  # (..., N, d)
        alpha = probs.to(z.dtype)
        # dL/dalpha_n = direct gradient + grad_mixed . z_n
        grad_probs = (z @ grad_mixed.unsqueeze(-1)).squeeze(-1).to(probs) + grad_alpha.to(probs)
        # softmax backward: ds_n = alpha_n (g_n - sum_m alpha_m g_m) / T
        grad_scores = probs * (grad_probs - (probs * grad_probs).sum(-1, keepdim=True))
        grad_scores = grad_scores / ctx.temperature  # (..., N), 0 at removed slots
        grad_shift = grad_scores.sum(-1).to(ctx.shift_dtype)  # 0 up to rounding: softmax
        grad_scores = grad_scores.to(z.dtype)  # is invariant to a shift shared by all n
        grad_query_key = _mix(grad_scores, z)  # sum_n ds_n z_n
        grad_x = None
        if needs_x:
            # dL/dz_n = alpha_n grad_mixed + ds_n W_K^T Q
            grad_z = alpha.unsqueeze(-1) * grad_mixed.unsqueeze(-2)
            grad_z = grad_z + grad_scores.unsqueeze(-1) * query_key.unsqueeze(-2)
            (grad_x,) = torch.autograd.grad(z_graph, x_leaf, grad_z)
        return (grad_x, grad_query_key, grad_shift, None, None, None) + (None,) * len(stack)


class FusionLayer(nn.Module):
    """Attention over N adapter deltas at one place; only this layer trains during fusion.

    Q = W_Q q + b_Q, K_n = W_K z_n + b_K, V_n = W_V z_n (no bias), no 1/sqrt(d) scaling.
    K is never built: Q.K_n = (W_K^T Q).z_n + Q.b_K. V is applied once after the softmax,
    since W_V is linear and bias-free: sum_n alpha_n W_V z_n = W_V sum_n alpha_n z_n.
    """

    def __init__(self, hidden_size: int, n_adapters: int, config: FusionConfig | None = None):
        super().__init__()
        config = config or FusionConfig()
        if n_adapters < 1:
            raise ConfigError(f"A fusion needs at least one adapter, got {n_adapters}.")
        rank = config.query_rank or hidden_size
        if rank > hidden_size:
            raise ConfigError(f"query_rank {rank} exceeds hidden size {hidden_size}.")
        self.hidden_size = hidden_size
        self._n_adapters = n_adapters
        self.mask_mode = config.mask_mode
        self.query = nn.Linear(hidden_size, rank)
        self.key = nn.Linear(hidden_size, rank)
        self.value = nn.Linear(hidden_size, hidden_size, bias=False)
        for linear in (self.query, self.key):
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
        with torch.no_grad():
            if config.value_identity_init:
                self.value.weight.fill_(VALUE_OFF_DIAGONAL).fill_diagonal_(1.0)
            else:
                nn.init.normal_(self.value.weight, std=0.02)
        # The schedule is host-side Python state: reading a device tensor would sync the GPU.
        self.temperature_start = TEMPERATURE_START if config.temperature else 1.0
        self.temperature_steps = 0

    @property
    def n_adapters(self) -> int:
        return self._n_adapters

    @property
    def temperature(self) -> float:
        """T for the next forward: T_start - steps * T_start / 1000, floored at 1."""
        step = self.temperature_start / TEMPERATURE_STEPS
        return max(self.temperature_start - self.temperature_steps * step, 1.0)

    def _take_temperature(self) -> float:
        temperature = self.temperature
        if self.training and temperature > 1.0:
            self.temperature_steps += 1
        return temperature

    def _query_terms(self, query: Tensor) -> tuple[Tensor, Tensor]:
        """(W_K^T Q (..., d), Q.b_K (...)) with Q = W_Q q + b_Q."""
        projected = self.query(query)  # (..., d) -> (..., r)
        return projected @ self.key.weight, projected @ self.key.bias  # (..., d), (...)

    def _checked_removed(self, removed: Tensor | None, device: torch.device) -> Tensor | None:
        if removed is None:
            return None
        if removed.dtype != torch.bool or tuple(removed.shape) != (self.n_adapters,):
            raise ValueError(
                f"removed must be a bool tensor of shape ({self.n_adapters},), got "
                f"{removed.dtype} {tuple(removed.shape)}."
            )
        if bool(removed.all()):  # a device sync; pass a CPU mask to keep it cheap
            raise ConfigError(
                "Every adapter slot is removed from the fusion softmax; at least one must stay."
            )
        return removed.to(device, non_blocking=True)

    def _check_inputs(self, query: Tensor, f: Tensor, n_slots: int) -> None:
        if n_slots != self.n_adapters:
            raise ValueError(f"FusionLayer has {self.n_adapters} slots, got {n_slots} adapters.")
        if query.shape[-1] != self.hidden_size or f.shape[-1] != self.hidden_size:
            raise ValueError(
                f"FusionLayer expects hidden size {self.hidden_size}, got query "
                f"{tuple(query.shape)} and f {tuple(f.shape)}."
            )

    def forward(
        self, query: Tensor, z: Tensor, f: Tensor, removed: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """query (B, T, d), z (B, T, N, d), f (B, T, d) -> (out (B, T, d), alpha (B, T, N)).

        `removed` (N,) bool takes slots out of the softmax (-inf logit, alpha exactly 0).
        """
        self._check_inputs(query, f, z.shape[-2])
        removed = self._checked_removed(removed, z.device)
        temperature = self._take_temperature()
        query_key, shift = self._query_terms(query)
        probs = _probabilities(_scores(query_key, shift, z), removed, temperature)  # (B, T, N)
        alpha = probs.to(z.dtype)
        return f + self.value(_mix(alpha, z)), alpha  # W_V once, after the softmax

    def forward_from_stack(
        self,
        query: Tensor,
        x: Tensor,
        stack: AdapterStack,
        f: Tensor,
        removed: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Same result as `forward(query, stack(x), f, removed)`, keeping no z for backward.

        z (N*d numbers per token) is recomputed from x during backward, trading one more
        stack forward for memory; the stack must be frozen (it gets no gradient).
        """
        self._check_inputs(query, f, stack.n_adapters)
        removed = self._checked_removed(removed, x.device)
        temperature = self._take_temperature()
        query_key, shift = self._query_terms(query)
        mixed, alpha = _RecomputedMix.apply(
            x, query_key, shift, removed, temperature, stack.activation, *stack.stacked_tensors()
        )
        return f + self.value(mixed), alpha

    def regularization(self) -> Tensor:
        """||I - W_V||_F^2 (unweighted), accumulated in float32."""
        weight = self.value.weight.float()
        identity = torch.eye(self.hidden_size, device=weight.device)
        return (identity - weight).pow(2).sum()

    def extra_repr(self) -> str:
        return (
            f"hidden_size={self.hidden_size}, n_adapters={self.n_adapters}, "
            f"temperature={self.temperature:g}, mask_mode={self.mask_mode}"
        )
