"""`advfusion export`: a finished run in the `adapters` library's layout or peft's.

    task adapter / Compacter  -> adapters: adapter_config.json + adapter.safetensors
    AdapterFusion / AdvFusion -> adapters: an adapter setup (adapter_setup.json, one folder per
                                 language adapter, the fusion in "<a>,<b>,<c>/")
    LoRA                      -> peft: adapter_config.json + adapter_model.safetensors
plus README.md (a model card). `--weights bin` writes the library's .bin names instead (plain
state dicts through torch.save). The folder is built aside and renamed into place.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from advfusion_cli.engine.serialization import read_json, write_json
from advfusion_cli.errors import UserError
from advfusion_cli.interop import adapters_layout as layout
from advfusion_cli.interop import card, engine_folders, peft_layout
from advfusion_cli.interop.base import read_base
from advfusion_cli.interop.weights import WEIGHT_FORMATS, write_weights
from advfusion_cli.workflows import atomic
from advfusion_cli.workflows.imported import IMPORT_FILE

EXPORT_FORMATS = ("adapters", "peft")


@dataclass
class ExportResult:
    folder: Path
    what: str
    files: list[str]


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"'{out}' is an existing file; give a folder to export into.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"'{out}' already exists and is not empty; pass --force to replace it.")


def _adapter_files(target: Path, name: str, folder: Path, base, weights: str) -> tuple[str, bool]:
    """Write one engine adapter folder as the library's adapter folder; (kind, interface?)."""
    saved, config, tensors = engine_folders.read_adapter(folder)
    info = base.fingerprint | {"model_class": base.model_class}
    config_json, out = layout.adapter_to_library(name, config, tensors, info, base.layout.layers)
    target.mkdir(parents=True, exist_ok=True)
    write_json(target / layout.CONFIG_NAME, config_json)
    file = layout.WEIGHTS_SAFE if weights == "safetensors" else layout.WEIGHTS_BIN
    write_weights(target / file, out)
    interface = layout.interface_json(base.layout, base.fingerprint["model_type"])
    if interface is not None:
        write_json(target / layout.INTERFACE_NAME, interface)
    return config.kind, interface is not None


def _imported_from(run_path: Path) -> str | None:
    path = run_path / IMPORT_FILE
    return read_json(path).get("from") if path.is_file() else None


def export_run(
    run_value: str,
    fmt: str,
    out: Path,
    *,
    workdir: Path | None,
    weights: str = "safetensors",
    force: bool = False,
) -> ExportResult:
    from advfusion_cli.inference.loading import fusion_adapter_folders
    from advfusion_cli.inference.resolve import resolve_run
    from advfusion_cli.spec.loading import load_spec
    from advfusion_cli.spec.schema import OutputSpec
    from advfusion_cli.workflows.stages import method_label

    if fmt not in EXPORT_FORMATS:
        from advfusion_cli.errors import unknown_name_error

        raise unknown_name_error("export format", fmt, EXPORT_FORMATS)
    if weights not in WEIGHT_FORMATS:
        from advfusion_cli.errors import unknown_name_error

        raise unknown_name_error("weights format", weights, WEIGHT_FORMATS)
    ref = resolve_run(run_value, Path(workdir or OutputSpec.model_fields["workdir"].default))
    if ref.is_base:
        raise UserError(f"'{run_value}' is the frozen base, not a trained run: nothing to export.")
    run = ref.run
    spec = load_spec(run.job_yaml)
    label = method_label(spec)
    is_lora = spec.method.name == "lora"
    if is_lora and fmt != "peft":
        raise UserError(
            f"Run '{run.id}' is a LoRA: export it with --format peft (the `adapters` layout holds bottleneck adapters and fusions)."
        )
    if not is_lora and fmt != "adapters":
        raise UserError(
            f"Run '{run.id}' is {label}: export it with --format adapters (peft's layout holds LoRA only)."
        )
    out = Path(out).expanduser()
    _check_out(out, force)
    base = read_base(spec.model.name_or_path, spec.model.revision)
    target = spec.data.target
    languages = list(spec.data.languages)
    records = card.evaluations(run.path)
    origin = _imported_from(run.path)

    def build(tmp: Path) -> None:
        if is_lora:
            _, tensors, _ = peft_layout.read_peft(run.final)
            file = peft_layout.WEIGHTS_SAFE if weights == "safetensors" else peft_layout.WEIGHTS_BIN
            write_weights(tmp / file, tensors)
            shutil.copyfile(run.final / peft_layout.CONFIG_NAME, tmp / peft_layout.CONFIG_NAME)
            snippet, title = card.peft_snippet(spec.model.name_or_path), f"LoRA for {target}"
        elif spec.is_fusion:
            folders = fusion_adapter_folders(run)
            names = list(folders)
            interface = False
            for language, folder in folders.items():
                _, interface = _adapter_files(tmp / language, language, folder, base, weights)
            saved, config, tensors = engine_folders.read_fusion(run.final)
            if list(saved.get("adapters", [])) != names:
                raise UserError(
                    f"{run.final}: the fusion's adapters {saved.get('adapters')} differ from the run's ({names})."
                )
            info = base.fingerprint | {"model_class": base.model_class}
            config_json, out_tensors = layout.fusion_to_library(
                names, config, list(saved.get("masked", [])), tensors, info, base.layout.layers
            )
            fusion_dir = tmp / ",".join(names)
            fusion_dir.mkdir()
            write_json(fusion_dir / layout.FUSION_CONFIG_NAME, config_json)
            file = (
                layout.FUSION_WEIGHTS_SAFE
                if weights == "safetensors"
                else layout.FUSION_WEIGHTS_BIN
            )
            write_weights(fusion_dir / file, out_tensors)
            write_json(tmp / layout.SETUP_NAME, layout.setup_json(names))
            if interface:
                shutil.copyfile(tmp / names[0] / layout.INTERFACE_NAME, tmp / layout.INTERFACE_NAME)
            snippet = card.adapters_snippet(
                spec.model.name_or_path, "setup", names, interface, weights == "safetensors"
            )
            title = f"{label} for {target} over {', '.join(names)}"
        else:
            _, interface = _adapter_files(tmp, target, run.final, base, weights)
            snippet = card.adapters_snippet(
                spec.model.name_or_path, "adapter", [target], interface, weights == "safetensors"
            )
            title = f"{label} for {target}"
        readme = card.model_card(
            title=title,
            method=label,
            base=spec.model.name_or_path,
            languages=languages,
            target=target,
            task=spec.data.task,
            run_id=run.id,
            fmt=fmt,
            load_snippet=snippet,
            records=records,
            imported_from=origin,
        )
        atomic.write_text(tmp / "README.md", readme)

    atomic.publish_dir(build, out)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return ExportResult(out, f"{label} run {run.id}", files)
