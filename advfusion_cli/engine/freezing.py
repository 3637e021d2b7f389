"""Which parameters train: freeze everything, then unfreeze exactly one stage's parameters.

AdvFusion trains in stages (an adapter per language, then the fusion over frozen adapters), and
each stage must leave exactly its own parameters trainable. Unlike the authors' runs, the input
embeddings stay frozen while adapters train.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


def freeze_all(model: nn.Module) -> None:
    """requires_grad False on every parameter of `model` (base, adapters, fusions)."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)


def unfreeze(parameters: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    """requires_grad True on each distinct parameter; returns them in first-seen order."""
    seen: set[int] = set()
    unique: list[nn.Parameter] = []
    for parameter in parameters:
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        parameter.requires_grad_(True)
        unique.append(parameter)
    return unique


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that currently require grad (for logs and tests)."""
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


def _stored_numel(parameter: nn.Parameter) -> int:
    # bitsandbytes packs two 4-bit weights per uint8 element; count real weights.
    if type(parameter).__name__ == "Params4bit":
        return parameter.numel() * 2
    return parameter.numel()


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit packed weights count as the weights they hold."""
    trainable = total = 0
    for parameter in model.parameters():
        count = _stored_numel(parameter)
        total += count
        if parameter.requires_grad:
            trainable += count
    return trainable, total


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Activation checkpointing on every decoder layer, non-reentrant.

    Non-reentrant checkpointing passes gradients to adapters inside a checkpointed layer even
    though the (frozen) embeddings' output does not require grad; the reentrant variant would not.
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
        model.activation_checkpointing_enable(kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
