"""Compacter's PHM layer (arXiv 2106.04647): W = sum_{i=1..n} A_i ⊗ B_i with B_i = s_i t_i^T, y = x W + b."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advfusion_cli.engine.modules.config import AdapterConfig, ConfigError


def new_phm_rule(config: AdapterConfig) -> nn.Parameter:
    """A fresh rule A (n, n, n), N(0, phm_rule_init_std); A_i = A[i] is the i-th n x n factor."""
    n = config.phm_dim
    return nn.Parameter(torch.randn(n, n, n) * config.phm_rule_init_std)


def check_phm_sizes(in_features: int, out_features: int, phm_dim: int) -> None:
    """Both sides of a PHM weight must split into n equal blocks."""
    if in_features % phm_dim or out_features % phm_dim:
        raise ConfigError(
            f"Compacter PHM layer {in_features} -> {out_features} needs both sizes divisible "
            f"by phm_dim {phm_dim}; change phm_dim or reduction_factor."
        )


def new_phm_factors(
    in_features: int, out_features: int, phm_dim: int, rank: int
) -> tuple[nn.Parameter, nn.Parameter]:
    """Low-rank factors s (n, in/n, r) and t (n, r, out/n), each slice Glorot-uniform."""
    check_phm_sizes(in_features, out_features, phm_dim)
    s = torch.empty(phm_dim, in_features // phm_dim, rank)
    t = torch.empty(phm_dim, rank, out_features // phm_dim)
    for i in range(phm_dim):  # init only: Glorot bounds are per 2-D factor
        nn.init.xavier_uniform_(s[i])
        nn.init.xavier_uniform_(t[i])
    return nn.Parameter(s), nn.Parameter(t)


def phm_weight(rule: Tensor, s: Tensor, t: Tensor) -> Tensor:
    """Materialise W (in, out) = sum_i kron(A_i, s_i t_i) for y = x W + b."""
    n = rule.shape[0]
    if rule.shape != (n, n, n) or s.shape[0] != n or t.shape[0] != n:
        raise ValueError(
            f"PHM shapes disagree: rule {tuple(rule.shape)}, s {tuple(s.shape)}, "
            f"t {tuple(t.shape)}; expected rule (n, n, n) and n leading factors."
        )
    blocks = torch.bmm(s, t)  # (n, in/n, r) x (n, r, out/n) -> (n, in/n, out/n) = B_i
    p, q = blocks.shape[1:]
    # kron(A, B)[i*p + k, j*q + l] = A[i, j] * B[k, l]; summing over the n pairs at once.
    weight = torch.einsum("nij,nkl->ikjl", rule, blocks)  # (n, p, n, q)
    return weight.reshape(n * p, n * q)
