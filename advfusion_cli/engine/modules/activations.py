"""Bottleneck non-linearities by name; each maps 0 to exactly 0, which adapter masking relies on."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch.nn.functional as F
from torch import Tensor

from advfusion_cli.engine.modules.config import ACTIVATIONS, ConfigError

_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,  # exact erf form, as Compacter uses
    "gelu_tanh": partial(F.gelu, approximate="tanh"),
    "silu": F.silu,
    "tanh": F.tanh,
}
assert tuple(_FUNCTIONS) == ACTIVATIONS


def activation_function(name: str) -> Callable[[Tensor], Tensor]:
    if name not in _FUNCTIONS:
        raise ConfigError(f"Unknown activation '{name}'. Available: {', '.join(ACTIVATIONS)}.")
    return _FUNCTIONS[name]
