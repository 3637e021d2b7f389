"""What a run keeps on disk: dropping finished optimizer state, and checkpoint sizes up front.

A checkpoint holds the trainable weights and the optimizer state (AdamW: two moments per
parameter), so at 7B a fusion checkpoint is ~19 GB (1.61 B parameters x 12 bytes). While a
phase trains, `training.keep_checkpoints` step checkpoints are kept; a finished phase keeps
only its end state, and once the whole run is finished its optimizer state is deleted
unless `training.keep_optimizer_state` is set (nothing resumes a finished run).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from advfusion_cli.spec.schema import JobSpec
from advfusion_cli.workflows import atomic
from advfusion_cli.workflows import checkpoint as ckpt

DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


def drop_optimizer_states(checkpoints: Path) -> int:
    """Rewrite every phase's end state without its optimizer state; returns bytes freed."""
    freed = 0
    for state_file in sorted(checkpoints.glob(f"*/end/{ckpt.STATE_FILE}")):
        state = ckpt.read_state(state_file.parent)
        if state.get("optimizer") is None:
            continue
        before = state_file.stat().st_size
        state["optimizer"] = None
        atomic.write_with(state_file, lambda tmp, s=state: torch.save(s, tmp))
        freed += before - state_file.stat().st_size
        moments = state_file.parent / ckpt.MOMENTS_FILE  # an FSDP run's moments, if any
        if moments.exists():
            freed += moments.stat().st_size
            moments.unlink()
    return freed


@dataclass(frozen=True)
class CheckpointSize:
    """Bytes of one run's checkpoint: trainable weights plus optimizer state."""

    trainable_parameters: int
    weight_bytes: int
    optimizer_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.optimizer_bytes


def checkpoint_size(spec: JobSpec, trainable_parameters: int) -> CheckpointSize:
    """Weights in the trained modules' dtype; AdamW keeps two moments per parameter, in the
    parameter's dtype (torch) or fp32 (paged_adamw_32bit, the CUDA default)."""
    from advfusion_cli.workflows.models import adapter_dtype

    weight = DTYPE_BYTES.get(adapter_dtype(spec.model), 4)
    optimizer = spec.training.optimizer
    paged = optimizer == "paged_adamw_32bit" or (optimizer == "auto" and torch.cuda.is_available())
    moment = 4 if paged else weight
    return CheckpointSize(
        trainable_parameters, trainable_parameters * weight, trainable_parameters * 2 * moment
    )


def count_trainable(spec: JobSpec, config) -> int:
    """Trainable parameters of the run `spec` describes, from the base's config alone: the
    base and the method's modules are built on the meta device (no memory, no weights)."""
    from transformers import AutoModelForCausalLM

    from advfusion_cli.engine import attach_host
    from advfusion_cli.spec.methods import LoraMethod
    from advfusion_cli.workflows import methods, stages

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        if isinstance(spec.method, LoraMethod):
            return sum(p.numel() for p in methods.setup_lora(model, spec.method).params.values())
        host = attach_host(model, "float32")
        adapter = methods.adapter_config(stages.adapter_method_of(spec))
        if not spec.is_fusion:
            host.add_adapter("size", adapter, language="size")
            host.freeze_for_adapter_training("size")
        else:  # fresh adapters stand in for the stored ones: the fusion's size is the same
            for language in spec.data.languages:
                host.add_adapter(language, adapter, language=language)
            host.fuse(list(spec.data.languages), methods.fusion_config(spec.method))
            host.freeze_for_fusion_training()
        return sum(p.numel() for p in methods.trainable_by_name(model).values())


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def retention_note(spec: JobSpec) -> str:
    """What stays on disk, in one sentence, for the plan."""
    training = spec.training
    optimizer = "kept" if training.keep_optimizer_state else "deleted"
    return (
        f"{training.keep_checkpoints} step checkpoint(s) kept per phase while it trains, then "
        f"its end state; optimizer state {optimizer} when the run finishes"
    )


def size_line(run_id: str, size: CheckpointSize) -> str:
    return (
        f"  {run_id}: {size.trainable_parameters:,} trainable, "
        f"{human_bytes(size.total_bytes)} (weights {human_bytes(size.weight_bytes)} + "
        f"optimizer {human_bytes(size.optimizer_bytes)})"
    )


def base_config(spec: JobSpec):
    """The base's config (no weights), or None when it cannot be read."""
    from transformers import AutoConfig

    from advfusion_cli.workflows.models import model_source

    try:
        source = model_source(spec.model.name_or_path)
        return AutoConfig.from_pretrained(source, revision=spec.model.revision)
    except (OSError, ValueError, KeyError):
        return None


def plan_lines(run_specs: list[tuple[str, JobSpec]]) -> list[str]:
    """A heading and one size line per (run id, spec) that will train; [] when the base's
    config cannot be read."""
    if not run_specs:
        return []
    config = base_config(run_specs[0][1])
    if config is None:
        return []
    counted: dict[str, int] = {}
    lines = [f"Checkpoint size per run ({retention_note(run_specs[0][1])}):"]
    for run_id, spec in run_specs:
        key = spec.method.model_dump_json() + ",".join(spec.data.languages * spec.is_fusion)
        if key not in counted:
            counted[key] = count_trainable(spec, config)
        lines.append(size_line(run_id, checkpoint_size(spec, counted[key])))
    return lines
