"""Adapter building blocks in pure torch: bottleneck/Compacter adapters, adapter stacks, AdapterFusion."""

from advfusion_cli.engine.modules.activations import activation_function
from advfusion_cli.engine.modules.bottleneck import Adapter
from advfusion_cli.engine.modules.config import (
    ACTIVATIONS,
    ADAPTER_KINDS,
    MASK_MODES,
    AdapterConfig,
    ConfigError,
    FusionConfig,
)
from advfusion_cli.engine.modules.fusion import FusionLayer
from advfusion_cli.engine.modules.phm import new_phm_rule, phm_weight
from advfusion_cli.engine.modules.stack import AdapterStack, stack_deltas

__all__ = [
    "ACTIVATIONS",
    "ADAPTER_KINDS",
    "MASK_MODES",
    "Adapter",
    "AdapterConfig",
    "AdapterStack",
    "ConfigError",
    "FusionConfig",
    "FusionLayer",
    "activation_function",
    "new_phm_rule",
    "phm_weight",
    "stack_deltas",
]
