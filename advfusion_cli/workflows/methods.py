"""Per-method setup on a loaded base: which parameters train, the extra loss, how results are saved.

- task adapter / Compacter (Pfeiffer / Houlsby placement): one new adapter, only it trains;
- LoRA (peft, arXiv 2106.09685): only the LoRA matrices train;
- AdapterFusion / AdvFusion (arXiv 2005.00247, 2511.02869): N frozen language adapters, only
  the fusion layers train, with `weight * sum ||I - W_V||^2` added to the loss.
Everything else in the model stays frozen (the trainer only ever sees `Trainable.params`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from advfusion_cli.engine import (
    AdapterConfig,
    AdapterHost,
    FusionConfig,
    LoraSettings,
    add_lora,
    attach_host,
    save_lora,
)
from advfusion_cli.engine import enable_gradient_checkpointing as engine_checkpointing
from advfusion_cli.spec.methods import (
    AdapterFusionMethod,
    AdvFusionMethod,
    CompacterMethod,
    LoraMethod,
    TaskAdapterMethod,
)


@dataclass
class Trainable:
    """A model ready to train: the parameters that move, an optional extra loss, an exporter."""

    model: nn.Module  # call forward on this (the peft wrapper for LoRA)
    params: dict[str, nn.Parameter]
    export: Callable[[Path], None]  # writes the result folder (engine or peft format)
    extra_loss: Callable[[], Tensor] | None = None
    host: AdapterHost | None = None
    # Non-parameter state a resumed run must restore (the fusion temperature counter).
    extra_state: Callable[[], dict] = field(default=lambda: {})
    load_extra_state: Callable[[dict], None] = field(default=lambda state: None)


def trainable_by_name(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """The engine's non-reentrant checkpointing, plus no KV cache: training never reuses it."""
    engine_checkpointing(model)
    if hasattr(model, "config"):
        model.config.use_cache = False


def adapter_config(method: TaskAdapterMethod | CompacterMethod) -> AdapterConfig:
    """The engine config for a task adapter or Compacter job-spec section."""
    if isinstance(method, CompacterMethod):
        return AdapterConfig.compacter(
            reduction_factor=method.reduction_factor,
            activation=method.activation,
            phm_dim=method.phm_dim,
            phm_rank=method.phm_rank,
            shared_phm_rule=method.shared_phm_rule,
        )
    return AdapterConfig.task_adapter(
        reduction_factor=method.reduction_factor, activation=method.activation
    )


def fusion_config(method: AdapterFusionMethod | AdvFusionMethod) -> FusionConfig:
    mask_mode = method.mask_mode if isinstance(method, AdvFusionMethod) else "zero"
    return FusionConfig(
        temperature=method.temperature,
        regularization_weight=method.regularization_weight,
        mask_mode=mask_mode,
        query_rank=method.query_rank,
    )


def setup_adapter(
    model: nn.Module,
    method: TaskAdapterMethod | CompacterMethod,
    language: str,
    adapter_dtype: str | None = None,
    gradient_checkpointing: bool = False,
) -> Trainable:
    """A fresh adapter named after the language; only its parameters train."""
    host = attach_host(model, adapter_dtype)
    host.add_adapter(language, adapter_config(method), language=language)
    host.freeze_for_adapter_training(language)
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return Trainable(
        model=model,
        params=trainable_by_name(model),
        export=lambda folder: host.save_adapter(language, folder, language=language),
        host=host,
    )


def setup_lora(
    model: nn.Module, method: LoraMethod, gradient_checkpointing: bool = False
) -> Trainable:
    settings = LoraSettings(
        r=method.r,
        alpha=method.alpha,
        dropout=method.dropout,
        target_modules=tuple(method.target_modules) if method.target_modules else None,
    )
    peft_model = add_lora(model, settings, gradient_checkpointing=gradient_checkpointing)
    if gradient_checkpointing and hasattr(peft_model, "config"):
        peft_model.config.use_cache = False
    return Trainable(
        model=peft_model,
        params=trainable_by_name(peft_model),
        export=lambda folder: save_lora(peft_model, folder),
    )


def setup_fusion(
    model: nn.Module,
    method: AdapterFusionMethod | AdvFusionMethod,
    adapter_dirs: dict[str, Path],
    adapter_dtype: str | None = None,
    gradient_checkpointing: bool = False,
    sharded: bool = False,
) -> Trainable:
    """Load the language adapters (frozen), fuse them in the given order; only the fusion trains.
    sharded: build the fusion on the meta device, for FSDP to materialise each process's
    slice (workflows.sharding); its `extra_loss` and params are replaced there."""
    host = attach_host(model, adapter_dtype)
    for language, folder in adapter_dirs.items():
        host.load_adapter(folder, name=language)
    host.fuse(list(adapter_dirs), fusion_config(method), on_meta=sharded)
    host.freeze_for_fusion_training()
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)

    def temperature_state() -> dict:
        return {"temperature_steps": _fusion_layers(host)[0].temperature_steps}

    def load_temperature_state(state: dict) -> None:
        for layer in _fusion_layers(host):
            layer.temperature_steps = int(state.get("temperature_steps", 0))

    return Trainable(
        model=model,
        params=trainable_by_name(model),
        export=lambda folder: host.save_fusion(folder),
        extra_loss=host.fusion_regularization,
        host=host,
        extra_state=temperature_state,
        load_extra_state=load_temperature_state,
    )


def _fusion_layers(host: AdapterHost) -> list[nn.Module]:
    state = host.fusion_state
    return [host.place(i, p).fusion for i in range(host.num_layers) for p in state.places]
