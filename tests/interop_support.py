"""Helpers of the interop tests: the golden fixtures made by the `adapters` library
(tests/fixtures/interop, see make_fixtures.py) and loading an imported run's weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures" / "interop"


def fixture(arch: str, *parts: str) -> Path:
    return FIXTURES.joinpath(arch, *parts)


def golden_logits(arch: str) -> dict[str, torch.Tensor]:
    """input_ids and the library's logits per case (base, seq_bn, compacter, fusion, ...)."""
    return load_file(str(fixture(arch, "logits.safetensors")))


def load_fixture_base(arch: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(fixture(arch, "base")).eval()


def copy_fixture(arch: str, case: str, into: Path) -> Path:
    """A writable copy of one fixture folder (tests that break a file work on the copy)."""
    target = into / f"{arch}-{case}"
    shutil.copytree(fixture(arch, case), target)
    return target


def import_args(path: Path, base: Path | str, workdir: Path, *more: str) -> list[str]:
    return ["import", str(path), "--base", str(base), "--workdir", str(workdir), *more]


def only_run(workdir: Path, prefix: str) -> Path:
    (run,) = [p for p in (workdir / "runs").iterdir() if p.name.startswith(prefix)]
    return run


def logits_of(model, input_ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids).logits.float()


def host_with_run(model, run_path: Path):
    """The model with an imported run's result loaded as `load_run` would (no tokenizer)."""
    from advfusion_cli.engine import attach_host
    from advfusion_cli.inference.loading import fusion_adapter_folders
    from advfusion_cli.spec.loading import load_spec
    from advfusion_cli.workflows.runs import RunDir

    run = RunDir(run_path)
    spec = load_spec(run.job_yaml)
    host = attach_host(model)
    if spec.is_fusion:
        for language, folder in fusion_adapter_folders(run).items():
            host.load_adapter(folder, name=language)
        host.load_fusion(run.final)
        host.activate_fusion()
    else:
        host.activate(host.load_adapter(run.final, name=spec.data.target))
    return host
