"""`advfusion import`: another library's saved adapters -> finished runs + the adapter store.

Each imported adapter becomes a finished run (`runs/<kind>-<language>-imported-<hash8>/`, its
final/ in the engine's format, job.yaml describing base, task and settings, import.json saying
where it came from) and is published to the adapter store slot that `fuse` / `adv-fuse` look
in, with a provenance that records the source. An adapter setup with a fusion also becomes a
finished fusion run over those adapters, which `evaluate`, `generate` and `export` take like
a trained one. Importing the same files again finds the same runs.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advfusion_cli.engine.serialization import read_json
from advfusion_cli.errors import UserError
from advfusion_cli.interop import adapters_layout as layout
from advfusion_cli.interop import detect, engine_folders, peft_layout
from advfusion_cli.interop.base import BaseInfo, check_against_base, read_base
from advfusion_cli.interop.weights import read_weights
from advfusion_cli.workflows import atomic
from advfusion_cli.workflows.imported import IMPORT_FILE, IMPORTED_FROM
from advfusion_cli.workflows.runs import FINISHED, RunDir, Workdir, make_run_id, now_iso

FUSION_METHODS = ("adapterfusion", "advfusion")


@dataclass
class ImportOptions:
    base: str
    language: str | None = None  # --as: a single adapter's language, or a setup's target
    task: str | None = None
    workdir: Path | None = None
    quantization: str | None = None
    method: str | None = None  # a setup's fusion: adapterfusion (default) or advfusion
    names: dict[str, str] = field(default_factory=dict)  # adapter name -> language
    expected_format: str | None = None  # --format: adapters or peft
    force: bool = False


@dataclass
class ImportedRun:
    run: RunDir
    role: str  # adapter | fusion
    what: str  # e.g. "python task-adapter", "adapterfusion over python, java, ruby -> ruby"
    reused: bool
    store: Path | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    source: Path
    base: BaseInfo
    workdir: Workdir
    runs: list[ImportedRun]


def _digest(folder: Path) -> str:
    """SHA-256 of a folder's files (names and bytes): the identity of what was imported."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _language(name: str, what: str) -> str:
    from advfusion_cli.spec.names import canonical_language

    try:
        return canonical_language(name)
    except UserError as err:
        raise UserError(f"{what}: {err}") from None


def _spec(options: ImportOptions, method: dict[str, Any], languages: list[str], target: str):
    from advfusion_cli.spec.loading import resolve_spec

    flags: dict[str, Any] = {
        "model.name_or_path": options.base,
        "model.quantization": options.quantization,
        "data.task": options.task,
        "data.languages": ",".join(languages),
        "data.target": target,
        "output.workdir": options.workdir,
    }
    flags |= {f"method.{key}": value for key, value in method.items()}
    return resolve_spec(None, None, (), flags, check_fusion_inputs=False)


def _method_of(config) -> dict[str, Any]:
    settings = {
        "name": config.kind,
        "reduction_factor": config.reduction_factor,
        "activation": config.activation,
    }
    if config.kind == "compacter":
        settings |= {
            "phm_dim": config.phm_dim,
            "phm_rank": config.phm_rank,
            "shared_phm_rule": config.shared_phm_rule,
        }
    return settings


@dataclass
class _Planned:
    """One run to write: its spec, identity, final/ builder, and (adapters) its store slot."""

    role: str
    spec: Any
    identity: dict
    run: RunDir
    build_final: Any  # callable(Path) -> None
    what: str
    language: str | None = None
    store: Path | None = None
    notes: list[str] = field(default_factory=list)
    env_extra: dict = field(default_factory=dict)


def _plan_run(
    workdir: Workdir, role: str, spec, label: str, imported: dict, build_final, what: str, **kw
) -> _Planned:
    from advfusion_cli.workflows.stages import method_label

    # What the import is: its source files and where it goes (not a training spec, so the
    # identity stays the same whatever training settings the spec's defaults carry).
    identity = {
        "imported": imported,
        "model": {"name_or_path": spec.model.name_or_path, "quantization": spec.model.quantization},
        "task": spec.data.task,
        "languages": list(spec.data.languages),
        "target": spec.data.target,
        "method": spec.method.model_dump(mode="json"),
    }
    run = workdir.run(make_run_id(method_label(spec), f"{label}-imported", identity))
    return _Planned(role, spec, identity, run, build_final, what, **kw)


def _store_slot(workdir: Workdir, spec, language: str, kind: str) -> Path:
    from advfusion_cli.workflows.stages import store_folder

    return store_folder(workdir, spec, language, kind)


def _check_slot(planned: _Planned, force: bool) -> None:
    """An adapter already in the store slot (not this import) is replaced only with --force."""
    from advfusion_cli.workflows.stages import adapter_source

    slot = planned.store
    if slot is None or not slot.is_dir() or force:
        return
    if adapter_source(slot) != planned.run.id:
        raise UserError(
            f"The adapter store already holds a {planned.spec.method.name} adapter for "
            f"{planned.language} in {slot} (from {adapter_source(slot)}); pass --force to "
            "replace it there (its run keeps its own copy)."
        )


def _adapter_plan(
    workdir: Workdir,
    options: ImportOptions,
    base: BaseInfo,
    folder: Path,
    language: str,
    digest: str,
) -> tuple[_Planned, str]:
    """Plan one `adapters` adapter folder; returns the plan and its engine kind."""
    config_path = folder / layout.CONFIG_NAME
    data = read_json(config_path)
    weights = _weights_file(folder, (layout.WEIGHTS_SAFE, layout.WEIGHTS_BIN))
    imported = layout.adapter_from_library(config_path, data, read_weights(weights))
    check_against_base(
        str(folder), base, imported.model_type, imported.hidden_size, imported.num_layers
    )
    config = imported.config
    fp = base.fingerprint
    engine_folders.check_adapter(weights, config, imported.tensors, fp)  # before any write
    spec = _spec(options, _method_of(config), [language], language)

    def build(final: Path) -> None:
        engine_folders.write_adapter(
            final, language, language, config, imported.tensors, base.fingerprint, weights
        )

    source = {
        "format": "adapters",
        "from": str(folder.resolve()),
        "sha256": digest,
        "name": imported.name,
        "config": imported.library_config,
    }
    planned = _plan_run(
        workdir,
        "adapter",
        spec,
        language,
        source,
        build,
        f"{language} {config.kind} ({imported.library_config} '{imported.name}')",
        language=language,
        notes=list(imported.notes),
    )
    if (folder / "head_config.json").is_file():  # save_adapter's with_head=True default
        planned.notes.append(
            "the saved prediction head is not imported (the base's LM head is used)"
        )
    planned.store = _store_slot(workdir, spec, language, config.kind)
    return planned, config.kind


def _weights_file(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"Missing weights file in '{folder}': expected {' or '.join(names)}.")


def _setup_names(setup_path: Path) -> list[str]:
    data = read_json(setup_path)
    block = data.get("adapter_setup")
    if isinstance(block, dict) and block.get("type") == "Fuse":
        names = []
        for child in block.get("children", []):
            if isinstance(child, str):
                names.append(child)
            elif isinstance(child, dict) and child.get("type") == "single":
                names.extend(c for c in child.get("children", []) if isinstance(c, str))
            else:
                raise UserError(f"{setup_path}: only Fuse(adapter, ...) setups can be imported.")
        if names:
            return names
    raise UserError(
        f"{setup_path}: 'adapter_setup' is not a Fuse over adapters; advfusion imports "
        "AdapterFusion setups (save_adapter_setup of a Fuse block)."
    )


def _plans_for_setup(
    workdir: Workdir, options: ImportOptions, base: BaseInfo, folder: Path
) -> list[_Planned]:
    names = _setup_names(folder / layout.SETUP_NAME)
    fusion_folder = folder / ",".join(names)
    if not (fusion_folder / layout.FUSION_CONFIG_NAME).is_file():
        raise UserError(f"Missing file {fusion_folder / layout.FUSION_CONFIG_NAME}.")
    languages = [
        _language(
            options.names.get(name, name), f"adapter '{name}' (map it with --names {name}=LANG)"
        )
        for name in names
    ]
    if len(set(languages)) != len(languages):
        raise UserError(
            f"{folder}: two fused adapters map to one language ({', '.join(languages)})."
        )
    target = _language(options.language, "--as") if options.language else None
    if target is None or target not in languages:
        raise UserError(
            f"Pass --as with the fusion's target language, one of {', '.join(languages)}."
        )
    plans, kinds = [], set()
    for name, language in zip(names, languages, strict=True):
        adapter_folder = folder / name
        if not adapter_folder.is_dir():
            raise UserError(f"'{adapter_folder}' (fused adapter '{name}') does not exist.")
        planned, kind = _adapter_plan(
            workdir, options, base, adapter_folder, language, _digest(adapter_folder)
        )
        plans.append(planned)
        kinds.add(kind)
    if len(kinds) != 1:
        raise UserError(
            f"{folder}: the fused adapters are of different kinds ({', '.join(sorted(kinds))})."
        )
    kind = kinds.pop()
    places = ("mlp",) if kind == "task-adapter" else ("attn", "mlp")
    fusion_data = read_json(fusion_folder / layout.FUSION_CONFIG_NAME)
    fusion_weights = _weights_file(
        fusion_folder, (layout.FUSION_WEIGHTS_SAFE, layout.FUSION_WEIGHTS_BIN)
    )
    fusion = layout.fusion_from_library(
        fusion_folder / layout.FUSION_CONFIG_NAME,
        fusion_data,
        read_weights(fusion_weights),
        places,
        base.fingerprint["num_layers"],
    )
    engine_folders.check_fusion(
        fusion_weights, fusion.config, fusion.tensors, len(names), places, base.fingerprint
    )
    if fusion.names != names:
        raise UserError(
            f"{fusion_folder / layout.FUSION_CONFIG_NAME}: adapter_names {fusion.names} differ "
            f"from {layout.SETUP_NAME} ({names})."
        )
    method_name = options.method or "adapterfusion"
    adapter_method = plans[0].spec.method
    adapter_settings = {
        key: getattr(adapter_method, key)
        for key in ("reduction_factor", "activation", "phm_dim", "phm_rank", "shared_phm_rule")
        if hasattr(adapter_method, key)
    }
    method = {
        "name": method_name,
        "adapter_kind": kind,
        "temperature": fusion.config.temperature,
        "regularization_weight": fusion.config.regularization_weight,
        **{f"adapter.{key}": value for key, value in adapter_settings.items()},
    }
    spec = _spec(options, method, languages, target)

    def build(final: Path) -> None:
        engine_folders.write_fusion(
            final,
            languages,
            kind,
            places,
            fusion.config,
            fusion.tensors,
            base.fingerprint,
            fusion_weights,
        )

    source = {
        "format": "adapters",
        "from": str(folder.resolve()),
        "sha256": _digest(fusion_folder),
        "name": ",".join(names),
        "adapters": [p.run.id for p in plans],
    }
    fusion_plan = _plan_run(
        workdir,
        "fusion",
        spec,
        target,
        source,
        build,
        f"{method_name} over {', '.join(languages)} -> {target}",
        notes=list(fusion.notes),
    )
    fusion_plan.env_extra = {
        "adapters": {p.language: {"folder": str(p.store), "source": p.run.id} for p in plans}
    }
    return [*plans, fusion_plan]


def _plan_peft(workdir: Workdir, options: ImportOptions, base: BaseInfo, folder: Path) -> _Planned:
    config, tensors, weights = peft_layout.read_peft(folder)
    fp = base.fingerprint
    layers, implied = peft_layout.lora_shape(weights, tensors, fp["hidden_size"])
    if implied is not None and implied != fp["hidden_size"]:
        check_against_base(str(folder), base, None, implied, fp["num_layers"])
    if layers > fp["num_layers"]:
        check_against_base(str(folder), base, None, fp["hidden_size"], layers)
    if not options.language:
        raise UserError("Pass --as with the language this LoRA was trained for.")
    language = _language(options.language, "--as")
    spec = _spec(
        options,
        peft_layout.lora_method(folder / peft_layout.CONFIG_NAME, config),
        [language],
        language,
    )

    def build(final: Path) -> None:
        from advfusion_cli.engine.lora import FINGERPRINT_FILE
        from advfusion_cli.engine.serialization import write_json, write_tensors

        final.mkdir(parents=True, exist_ok=True)
        write_tensors(final / peft_layout.WEIGHTS_SAFE, tensors)
        shutil.copyfile(folder / peft_layout.CONFIG_NAME, final / peft_layout.CONFIG_NAME)
        write_json(final / FINGERPRINT_FILE, fp)

    source = {"format": "peft", "from": str(folder.resolve()), "sha256": _digest(folder)}
    notes = []
    named = config.get("base_model_name_or_path")
    if (
        named
        and str(named).rstrip("/").rsplit("/", 1)[-1]
        != str(options.base).rstrip("/").rsplit("/", 1)[-1]
    ):
        notes.append(f"peft recorded base {named}; imported onto {options.base} (same shapes)")
    planned = _plan_run(
        workdir,
        "adapter",
        spec,
        language,
        source,
        build,
        f"{language} lora",
        language=language,
        notes=notes,
    )
    planned.store = _store_slot(workdir, spec, language, "lora")
    return planned


def _write_run(planned: _Planned) -> bool:
    """Write the finished run (atomically); False when the same import is already there."""
    from advfusion_cli.spec.loading import dump_spec
    from advfusion_cli.workflows.identity import IDENTITY_FILE, identity_record
    from advfusion_cli.workflows.runs import environment_info

    run = planned.run
    if run.is_finished():
        return False

    def build(tmp: Path) -> None:
        staged = RunDir(tmp)
        planned.build_final(staged.final)
        atomic.write_text(staged.job_yaml, dump_spec(planned.spec))
        atomic.write_json(tmp / IDENTITY_FILE, identity_record(planned.identity))
        atomic.write_json(
            tmp / IMPORT_FILE,
            {**planned.identity["imported"], "notes": planned.notes, "imported": now_iso()},
        )
        env = environment_info() | {"imported_from": planned.identity["imported"]["from"]}
        env |= planned.env_extra
        atomic.write_json(staged.env_json, env)
        atomic.write_json(
            staged.summary_json,
            {"imported_from": planned.identity["imported"]["from"], "best_eval_loss": None},
        )
        atomic.write_json(
            staged.status_json, {"status": FINISHED, "finished": now_iso(), "imported": True}
        )

    atomic.publish_dir(build, run.path)
    return True


def _publish(planned: _Planned) -> None:
    from advfusion_cli.workflows.identity import identity_record
    from advfusion_cli.workflows.stages import adapter_source, publish_adapter

    if planned.store.is_dir() and adapter_source(planned.store) == planned.run.id:
        return
    spec = planned.spec
    provenance = {
        "run_id": planned.run.id,
        "run_dir": str(planned.run.path.resolve()),
        "language": planned.language,
        "kind": spec.method.name,
        "base": spec.model.name_or_path,
        "task": spec.data.task,
        "best_eval_loss": None,
        "published": now_iso(),
        IMPORTED_FROM: planned.identity["imported"]["from"],
        **identity_record(planned.identity),
    }
    publish_adapter(planned.run.final, planned.store, provenance)


def import_path(path: Path, options: ImportOptions) -> ImportResult:
    """Check everything, then write the runs and publish the adapters (see module docstring)."""
    from advfusion_cli.spec.schema import OutputSpec

    path = Path(path).expanduser()
    kind = detect.kind_of(path, options.expected_format)
    if kind != detect.ADAPTERS_SETUP and (options.method or options.names):
        flag = "--method" if options.method else "--names"
        raise UserError(
            f"{flag} applies to an adapter setup with a fusion; '{path}' holds one adapter."
        )
    base = read_base(options.base)
    workdir = Workdir(Path(options.workdir or OutputSpec.model_fields["workdir"].default))
    if kind == detect.ADAPTERS_SETUP:
        plans = _plans_for_setup(workdir, options, base, path)
    elif kind == detect.PEFT_LORA:
        plans = [_plan_peft(workdir, options, base, path)]
    else:
        data = read_json(path / layout.CONFIG_NAME)
        name = options.language or data.get("name")
        if not isinstance(name, str) or not name:
            raise UserError("Pass --as with the adapter's language.")
        hint = "--as" if options.language else f"adapter name '{name}' (pass --as LANG)"
        plans = [
            _adapter_plan(workdir, options, base, path, _language(name, hint), _digest(path))[0]
        ]
    for planned in plans:  # every refusal before anything is written
        _check_slot(planned, options.force)
    workdir.ensure_writable()
    results = []
    for planned in plans:
        written = _write_run(planned)
        if planned.store is not None:
            _publish(planned)
        results.append(
            ImportedRun(
                planned.run, planned.role, planned.what, not written, planned.store, planned.notes
            )
        )
    return ImportResult(path, base, workdir, results)
