"""Load a finished run for inference exactly as it was trained, from its recorded provenance.

The base comes back with the run's quantization and dtype (its job.yaml), then the run's
result (final/) goes on top: a task adapter or Compacter activated alone, a LoRA through
peft, or a fusion over the very adapters it was trained with. Those adapters are read from
the runs that trained them (env.json names them); the shared adapter store is used only
when it still holds the same adapter, so a retrained adapter never silently changes an
older fusion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from advfusion_cli.errors import UserError
from advfusion_cli.spec.schema import JobSpec
from advfusion_cli.workflows.runs import RunDir, Workdir


@dataclass
class LoadedRun:
    """A model ready to generate, what it is, and where every piece came from."""

    model: nn.Module  # call generate/forward on this (the peft wrapper for LoRA)
    tokenizer: object
    spec: JobSpec
    method: str  # run label: lora, task-adapter, advfusion-compacter, base, ...
    target: str
    run: RunDir | None = None  # None for the base model
    host: object | None = None  # AdapterHost for adapter and fusion runs
    adapters: dict[str, str] = field(default_factory=dict)  # fusion: language -> folder used

    @property
    def is_fusion(self) -> bool:
        return self.spec.is_fusion and self.run is not None

    def provenance(self) -> dict:
        model = self.spec.model
        return {
            "method": self.method,
            "target": self.target,
            "run_id": self.run.id if self.run else None,
            "run_dir": str(self.run.path.resolve()) if self.run else None,
            "base_model": model.name_or_path,
            "quantization": model.quantization,
            "dtype": model.dtype,
            "adapters": dict(self.adapters),
        }


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def fusion_adapter_folders(run: RunDir) -> dict[str, Path]:
    """language -> folder of the adapter the fusion run was trained over, in slot order."""
    from advfusion_cli.workflows.stages import adapter_source

    recorded = _read_json(run.env_json).get("adapters")
    if not isinstance(recorded, dict) or not recorded:
        raise UserError(f"{run.env_json} does not record the fused adapters; retrain the run.")
    workdir = Workdir(run.path.parent.parent)
    folders: dict[str, Path] = {}
    for language, entry in recorded.items():
        store = Path(entry.get("folder", ""))
        source = entry.get("source")
        origin = workdir.run(source) if isinstance(source, str) else None
        if origin is not None and origin.is_finished():
            folders[language] = origin.final  # exactly what the fusion saw
        elif store.is_dir() and adapter_source(store) == source:
            folders[language] = store
        else:
            raise UserError(
                f"The {language} adapter fused by run '{run.id}' ({source}) is gone: neither "
                f"{workdir.runs / str(source)} nor {store} holds it any more."
            )
    return folders


def load_base_for(spec: JobSpec):
    """(model, tokenizer) as the spec describes the base (quantization, dtype, device)."""
    from transformers.utils import logging as hf_logging

    from advfusion_cli.workflows.models import load_base

    hf_logging.set_verbosity_error()  # generation-config notices are noise in a results table
    return load_base(spec.model)


def load_base_model(spec: JobSpec, method: str = "base") -> LoadedRun:
    """The frozen base with no adapter: the floor."""
    model, tokenizer = load_base_for(spec)
    return LoadedRun(model, tokenizer, spec, method, spec.data.target)


def load_run(run_dir: Path | RunDir) -> LoadedRun:
    """A finished run's model for inference (base + its trained result), in eval mode."""
    from advfusion_cli.engine import attach_host, load_lora
    from advfusion_cli.inference.resolve import require_finished
    from advfusion_cli.spec.loading import load_spec
    from advfusion_cli.workflows.models import adapter_dtype
    from advfusion_cli.workflows.stages import method_label

    run = require_finished(run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir)))
    spec = load_spec(run.job_yaml)
    label = method_label(spec)
    model, tokenizer = load_base_for(spec)
    method = spec.method
    loaded = LoadedRun(model, tokenizer, spec, label, spec.data.target, run)
    if method.name == "lora":
        loaded.model = load_lora(model, run.final)
    elif spec.is_fusion:
        host = attach_host(model, adapter_dtype(spec.model))
        folders = fusion_adapter_folders(run)
        for language, folder in folders.items():
            host.load_adapter(folder, name=language)
        host.load_fusion(run.final)
        host.activate_fusion()
        loaded.host = host
        loaded.adapters = {language: str(folder) for language, folder in folders.items()}
    else:
        host = attach_host(model, adapter_dtype(spec.model))
        name = host.load_adapter(run.final, name=spec.data.target)
        host.activate(name)
        loaded.host = host
    loaded.model.eval()
    return loaded
