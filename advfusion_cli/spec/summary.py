"""A short human summary of a resolved spec (rows of label, value) for `validate` and plans."""

from __future__ import annotations

from advfusion_cli.spec.methods import AdvFusionMethod, CompacterMethod, LoraMethod
from advfusion_cli.spec.paths import model_location
from advfusion_cli.spec.schema import JobSpec


def describe_method(spec: JobSpec) -> str:
    method = spec.method
    if isinstance(method, LoraMethod):
        return f"lora (r {method.r}, alpha {method.alpha:g}, dropout {method.dropout:g})"
    if isinstance(method, CompacterMethod):
        return f"compacter (reduction {method.reduction_factor}, phm_dim {method.phm_dim})"
    if spec.is_fusion:
        adapters = method.adapter_method()
        text = (
            f"{method.name} over {adapters.name} adapters (reduction {adapters.reduction_factor})"
        )
        if isinstance(method, AdvFusionMethod):
            text += f", mask {method.mask_mode}, phase-1 data {method.phase1_data}"
        return text
    return f"{method.name} (reduction {method.reduction_factor}, {method.activation})"


def describe_model(spec: JobSpec) -> str:
    model = spec.model
    where = {"embedded": "shipped tiny model", "local": "local folder", "hub": "hub id"}
    text = f"{model.name_or_path} ({where[model_location(model.name_or_path).kind]})"
    if model.quantization != "none":
        text += f", {model.quantization}"
        if model.quantization == "4bit" and model.double_quant:
            text += " + double quant"
    return text


def describe_budget(spec: JobSpec) -> str:
    phases = spec.phase_budgets()
    training = spec.training
    stage = "fusion" if spec.is_fusion else "adapter"
    text = " + ".join(str(budget) for budget in phases)
    if len(phases) == 2:
        text = f"phase 1 {phases[0]} + phase 2 {phases[1]}"
    return (
        f"{text}, batch {training.batch_size} x {training.grad_accum}, "
        f"lr {training.lr_for(stage):g}"
    )


def summary_rows(spec: JobSpec) -> list[tuple[str, str]]:
    data = spec.data
    source = data.source
    if data.task == "code-translation":
        source += f" ({data.subset})"
    task = data.task
    if data.custom is not None:
        task += f": {data.custom.template!r} -> {data.custom.target_field}"
    return [
        ("preset", spec.preset),
        ("task", task),
        ("method", describe_method(spec)),
        ("model", describe_model(spec)),
        ("data", source),
        ("languages", ", ".join(data.languages)),
        ("target", data.target),
        ("training", describe_budget(spec)),
        ("workdir", str(spec.output.workdir)),
    ]
