"""AdapterFusion (arXiv 2005.00247), dynamic variant: out = f + W_V sum_n alpha_n z_n, alpha = softmax_n(Q.K_n / T)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from advfusion_cli.engine.modules.activations import activation_function
from advfusion_cli.engine.modules.config import ConfigError, FusionConfig
from advfusion_cli.engine.modules.stack import AdapterStack

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


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The autocast dtype where autocast is on for x's device, else x's own dtype."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


def _gated_up(up_weight: Tensor, up_bias: Tensor, gate: Tensor) -> tuple[Tensor, Tensor]:
    """(g_n U_n stacked (N*b, d), g_n u_n (N, d)): gate 0 makes z_n exactly 0."""
    n, b, d = up_weight.shape
    return (up_weight * gate[:, None, None]).reshape(n * b, d), up_bias * gate[:, None]


def _per_slot_dot(hidden: Tensor, other: Tensor, n: int) -> Tensor:
    """sum over b of hidden * other, per slot: (M, N*b), (M, N*b) -> (M, N)."""
    return (hidden * other).view(hidden.shape[0], n, -1).sum(-1)


def _slot_weighted(hidden: Tensor, weights: Tensor) -> Tensor:
    """Each slot's hidden units scaled by its weight: (M, N*b), (M, N) -> (M, N*b)."""
    n = weights.shape[-1]
    return (hidden.view(hidden.shape[0], n, -1) * weights.unsqueeze(-1)).view_as(hidden)


class _RecomputedMix(torch.autograd.Function):
    """(sum_n alpha_n z_n, alpha) from x without ever building z (N*d numbers per token).

    With z_n = g_n (H_n U_n + u_n), H = act(x D + d) (M, N*b):
      scores_n = z_n . qk = H_n . (g_n U_n qk) + g_n u_n . qk   (qk = W_K^T Q)
      sum_n alpha_n z_n   = [alpha_n H_n]_n @ [g_n U_n]_n + alpha @ [g_n u_n]_n
    so every per-token product is a GEMM of width N*b (b = d / reduction) instead of N
    passes over d. Saves the pre-activations and U qk (2*N*b numbers per token); backward
    reuses them. Stack tensors are frozen inputs; gradients flow to x, W_K^T Q and Q.b_K.
    Runs in the autocast dtype when autocast is on (backward then matches forward).
    """

    @staticmethod
    def forward(ctx, x, query_key, shift, removed, temperature, activation, *stack):
        dtype = _compute_dtype(x)
        down_weight, down_bias, up_weight, up_bias, gate = (t.to(dtype) for t in stack)
        *lead, d = x.shape
        n, b, _ = up_weight.shape
        with torch.autocast(x.device.type, enabled=False):
            flat = x.reshape(-1, d).to(dtype)  # (M, d)
            qk = query_key.reshape(-1, d).to(dtype)  # (M, d)
            up, up_bias = _gated_up(up_weight, up_bias, gate)  # (N*b, d), (N, d)
            pre = torch.addmm(down_bias.reshape(-1), flat, down_weight.reshape(d, n * b))
            hidden = activation_function(activation)(pre)  # (M, N*b)
            up_qk = qk @ up.t()  # (M, d) x (d, N*b) -> (M, N*b)
            scores = _per_slot_dot(hidden, up_qk, n) + qk @ up_bias.t()  # (M, N)
            probs = _probabilities(scores + shift.reshape(-1, 1).to(dtype), removed, temperature)
            alpha = probs.to(dtype)
            mixed = torch.addmm(alpha @ up_bias, _slot_weighted(hidden, alpha), up)  # (M, d)
        ctx.save_for_backward(pre, up_qk, probs, down_weight, up, up_bias)
        ctx.temperature = temperature
        ctx.activation = activation
        ctx.dtypes = (x.dtype, query_key.dtype, shift.dtype)
        return mixed.view(*lead, d), alpha.view(*lead, n)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_mixed, grad_alpha):
        pre, up_qk, probs, down_weight, up, up_bias = ctx.saved_tensors
        x_dtype, query_key_dtype, shift_dtype = ctx.dtypes
        needs_x = ctx.needs_input_grad[0]
        d, n = up.shape[1], probs.shape[-1]
        lead = grad_mixed.shape[:-1]
        with torch.autocast(pre.device.type, enabled=False):
            with torch.enable_grad():
                pre_leaf = pre.detach().requires_grad_(needs_x)
                hidden_graph = activation_function(ctx.activation)(pre_leaf)
            hidden = hidden_graph.detach()  # (M, N*b)
            grad = grad_mixed.reshape(-1, d).to(pre.dtype)  # (M, d)
            up_grad = grad @ up.t()  # (M, N*b)
            # dL/dalpha_n = direct gradient + grad . z_n
            grad_probs = _per_slot_dot(hidden, up_grad, n) + grad @ up_bias.t()
            grad_probs = grad_probs.to(probs) + grad_alpha.reshape(-1, n).to(probs)
            # softmax backward: ds_n = alpha_n (g_n - sum_m alpha_m g_m) / T
            grad_scores = probs * (grad_probs - (probs * grad_probs).sum(-1, keepdim=True))
            grad_scores = grad_scores / ctx.temperature  # (M, N), 0 at removed slots
            grad_shift = grad_scores.sum(-1).to(shift_dtype).view(lead)  # 0 up to rounding
            grad_scores = grad_scores.to(pre.dtype)
            # dL/dqk = sum_n ds_n z_n, in the same factored form as the mix
            grad_query_key = torch.addmm(
                grad_scores @ up_bias, _slot_weighted(hidden, grad_scores), up
            )
            grad_x = None
            if needs_x:
                # dL/dH_n = alpha_n (U_n grad) + ds_n (U_n qk); then back through act and D
                alpha = probs.to(pre.dtype)
                grad_hidden = _slot_weighted(up_grad, alpha) + _slot_weighted(up_qk, grad_scores)
                (grad_pre,) = torch.autograd.grad(hidden_graph, pre_leaf, grad_hidden)
                grad_x = (grad_pre @ down_weight.reshape(d, -1).t()).view(*lead, d).to(x_dtype)
        grad_query_key = grad_query_key.view(*lead, d).to(query_key_dtype)
        return (grad_x, grad_query_key, grad_shift, None, None, None) + (None,) * 5


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
        self._last_temperature: float | None = None

    @property
    def n_adapters(self) -> int:
        return self._n_adapters

    @property
    def temperature(self) -> float:
        """T for the next forward: T_start - steps * T_start / 1000, floored at 1."""
        step = self.temperature_start / TEMPERATURE_STEPS
        return max(self.temperature_start - self.temperature_steps * step, 1.0)

    def _take_temperature(self) -> float:
        if torch._C._current_graph_task_id() != -1 and self._last_temperature is not None:
            # Inside backward: gradient checkpointing is re-running this forward. Use the
            # temperature the original forward used instead of advancing the schedule twice.
            return self._last_temperature
        temperature = self.temperature
        if self.training and temperature > 1.0:
            self.temperature_steps += 1
        self._last_temperature = temperature
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
        """Same result as `forward(query, stack(x), f, removed)`, never building z.

        z (N*d numbers per token) is neither stored nor materialised: scores and the mix are
        computed from the adapters' hidden units (see `_RecomputedMix`); the stack must be
        frozen (it gets no gradient).
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
