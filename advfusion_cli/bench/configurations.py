"""The benchmarked training configurations, each set up on and removed from one shared base model.

Every configuration trains exactly what its method trains (everything else frozen):
the frozen base is the floor, then one task adapter, one Compacter, peft LoRA r16 on q,v,
AdapterFusion over N task adapters and AdvFusion phase 1 (the target's adapter masked).
The floor has no trainable parameters, so for its backward to exist at all some activation
must require grad. By default ("first-place") that is the output of layer 0's attention
projection - the first place any adapter method sits - so the floor's backward covers the same
depth the methods' backward needs (input gradients only, no weight gradients). "embeddings"
makes the input embeddings' output require grad instead, which adds layer 0's attention
backward to the floor only (a cheaper-looking method, by a few percent).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from advfusion_cli.engine import (
    AdapterConfig,
    FusionConfig,
    LoraSettings,
    add_lora,
    attach_host,
)
from advfusion_cli.engine.architectures import decoder_layers, layer_submodule, layout_for

METHODS = ("base", "task-adapter", "compacter", "lora", "adapterfusion", "advfusion")
FLOORS = ("first-place", "embeddings")


@dataclass
class Prepared:
    """A configuration applied to the base model, ready to train; `teardown()` undoes it."""

    model: nn.Module  # what to call (the peft wrapper for LoRA)
    parameters: list[nn.Parameter]
    extra_loss: Callable[[], Tensor] | None = None  # fusion's ||I - W_V||^2 regularization
    teardown: Callable[[], None] = field(default=lambda: None)


@dataclass(frozen=True)
class Configuration:
    """One row of the benchmark: a method, and for fusions the number of adapters."""

    method: str
    n_adapters: int = 0
    query_rank: int | None = None  # fusion only: optional low-rank query/key
    floor: str = "first-place"  # base only: where its backward starts (see the module doc)

    @property
    def name(self) -> str:
        if self.method in ("adapterfusion", "advfusion"):
            suffix = f"-q{self.query_rank}" if self.query_rank else ""
            return f"{self.method}-{self.n_adapters}{suffix}"
        return self.method

    @property
    def label(self) -> str:
        rank = f", query rank {self.query_rank}" if self.query_rank else ""
        return {
            "base": "frozen base forward+backward (floor)",
            "task-adapter": "one task adapter",
            "compacter": "one Compacter",
            "lora": "peft LoRA r16 on q,v",
            "adapterfusion": f"AdapterFusion N={self.n_adapters}{rank}",
            "advfusion": f"AdvFusion phase 1 N={self.n_adapters} (target masked){rank}",
        }[self.method]

    @property
    def is_fusion(self) -> bool:
        return self.method in ("adapterfusion", "advfusion")

    def prepare(self, model: nn.Module, adapter_dtype: torch.dtype) -> Prepared:
        if self.method == "base":
            return _prepare_floor(model, self.floor)
        if self.method == "lora":
            return _prepare_lora(model)
        if self.method in ("task-adapter", "compacter"):
            config = (
                AdapterConfig.task_adapter()
                if self.method == "task-adapter"
                else AdapterConfig.compacter()
            )
            return _prepare_adapter(model, config, adapter_dtype)
        return _prepare_fusion(model, self, adapter_dtype)


def training_configurations(
    n_adapters: list[int],
    query_rank: int | None,
    query_rank_n: int | None,
    floor: str = "first-place",
) -> list[Configuration]:
    """The floor, the single-module baselines, then both fusions for every N.

    With `query_rank`, one more AdapterFusion at N = `query_rank_n` uses the low-rank query/key.
    """
    configurations = [Configuration("base", floor=floor)]
    configurations += [Configuration(m) for m in ("task-adapter", "compacter", "lora")]
    for n in n_adapters:
        configurations.append(Configuration("adapterfusion", n))
        configurations.append(Configuration("advfusion", n))
    if query_rank and query_rank_n:
        configurations.append(Configuration("adapterfusion", query_rank_n, query_rank))
    return configurations


def _prepare_floor(model: nn.Module, floor: str) -> Prepared:
    def needs_grad(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        # A leaf (frozen weights, inputs without grad): gradients flow down to here and stop.
        return output.requires_grad_(True)

    if floor == "embeddings":
        start = model.get_input_embeddings()
    else:
        layout = layout_for(model)
        first_layer = decoder_layers(model, layout)[0]
        start = layer_submodule(first_layer, layout.output_path("attn"), layout)
    handle = start.register_forward_hook(needs_grad)
    return Prepared(model, [], teardown=handle.remove)


def _prepare_adapter(model: nn.Module, config: AdapterConfig, dtype: torch.dtype) -> Prepared:
    host = attach_host(model, adapter_dtype=dtype)
    host.add_adapter("bench", config)
    parameters = host.freeze_for_adapter_training("bench")
    return Prepared(model, parameters, teardown=host.detach)


def _prepare_lora(model: nn.Module) -> Prepared:
    # peft's k-bit preparation (4-bit bases) casts bf16/fp16 norms, embeddings and head to
    # fp32 in place; the dtypes are put back afterwards so later configurations see the
    # same base. That cast stays inside LoRA's own timing: it is what training with it costs.
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    peft_model = add_lora(model, LoraSettings(r=16, target_modules=("q_proj", "v_proj")))
    parameters = [p for p in peft_model.parameters() if p.requires_grad]

    def teardown() -> None:
        peft_model.unload()  # puts the original q_proj / v_proj back, drops the LoRA weights
        for name, parameter in model.named_parameters():
            if parameter.dtype != dtypes[name]:
                parameter.data = parameter.data.to(dtypes[name])

    return Prepared(peft_model, parameters, teardown=teardown)


def _prepare_fusion(model: nn.Module, configuration: Configuration, dtype: torch.dtype) -> Prepared:
    host = attach_host(model, adapter_dtype=dtype)
    names = [f"lang{i}" for i in range(configuration.n_adapters)]
    for name in names:
        host.add_adapter(name, AdapterConfig.task_adapter())
    host.fuse(names, FusionConfig(query_rank=configuration.query_rank))
    if configuration.method == "advfusion":
        host.mask(names[0])  # phase 1: the target language's adapter is the null slot
    parameters = host.freeze_for_fusion_training()
    return Prepared(model, parameters, host.fusion_regularization, teardown=host.detach)
