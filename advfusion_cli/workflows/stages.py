"""From a command's job spec to the training stages it needs, each with a stable run id.

A stage is one run: one language's adapter (task adapter, Compacter or LoRA) or one fusion.
Its spec is the command's spec narrowed to the stage (an adapter's spec names only its own
language), and its run id hashes that spec minus the keys that cannot change the result
(output locations, the preset's name, the other stage's learning rate). Training the java
adapter from `train-adapters --langs java,python` and from `fuse --target ruby` is therefore
the same run, found and reused by either command.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from advfusion_cli.errors import UserError
from advfusion_cli.spec.methods import (
    AdapterFusionMethod,
    AdvFusionMethod,
    CompacterMethod,
    LoraMethod,
    TaskAdapterMethod,
)
from advfusion_cli.spec.schema import JobSpec
from advfusion_cli.workflows import atomic
from advfusion_cli.workflows.runs import Workdir, identity_hash, make_run_id

AdapterMethod = TaskAdapterMethod | CompacterMethod | LoraMethod
PROVENANCE_FILE = "provenance.json"
RETENTION_KEYS = ("keep_checkpoints", "keep_optimizer_state")
# How a run is stopped or waited for on a cluster, not what it trains.
OPERATIONAL_KEYS = ("stop_signals", "timeout_minutes")


def method_label(spec: JobSpec) -> str:
    """The method as runs are named: `task-adapter`, `lora`, `advfusion-compacter`, ..."""
    method = spec.method
    if isinstance(method, AdapterFusionMethod | AdvFusionMethod):
        return method.name + ("-compacter" if method.adapter_kind == "compacter" else "")
    return method.name


def adapter_method_of(spec: JobSpec) -> AdapterMethod:
    """The adapters a spec trains: its own method, or the fused adapters' settings."""
    if isinstance(spec.method, AdapterFusionMethod | AdvFusionMethod):
        return spec.method.adapter_method()
    return spec.method


def adapter_stage_spec(
    spec: JobSpec, language: str, method: AdapterMethod | None = None
) -> JobSpec:
    """The spec of training `language`'s adapter: one language, the adapter's method."""
    method = method or adapter_method_of(spec)
    data = spec.data.model_copy(update={"languages": [language], "target": language})
    return spec.model_copy(update={"data": data, "method": method})


def identity(spec: JobSpec, extra: dict | None = None) -> dict:
    """What makes two runs the same: the resolved spec minus output-only keys (and the
    trackers it reports to)."""
    values = spec.model_dump(mode="json")
    values.pop("output", None)
    values.pop("preset", None)  # the preset's values are resolved into the fields themselves
    if values["data"].get("custom") is None:
        values["data"].pop("custom", None)  # built-in tasks keep the ids they had before it
    training = values["training"]
    training.pop("report_to")  # where a run is watched does not change what it trains
    if spec.training.early_stopping_patience is None:  # off: ids of runs made before it existed
        training.pop("early_stopping_patience")
        training.pop("early_stopping_min_delta")
    for key in (*RETENTION_KEYS, *OPERATIONAL_KEYS):  # kept on disk / how it runs
        training.pop(key, None)
    for section in ("model", "data"):  # an unpinned revision leaves the id as it always was
        if values[section].get("revision") is None:
            values[section].pop("revision", None)
    if spec.is_fusion:
        training.pop("lr")  # adapters' learning rate: not used by a fusion stage
        training["fusion_lr"] = spec.training.lr_for("fusion")
    else:
        training.pop("fusion_lr")
    if extra:
        values["extra"] = extra
    return values


def run_id_for(spec: JobSpec, label: str, extra: dict | None = None) -> str:
    """`<method>-<label>-<hash8>`: the same spec (and extra identity) gives the same id."""
    return make_run_id(method_label(spec), label, identity(spec, extra))


@dataclass(frozen=True)
class StoredAdapter:
    """A trained adapter in the workdir's store, and what produced it."""

    language: str
    folder: Path
    source: str  # the run id that trained it, or a hash of its weights

    @property
    def exists(self) -> bool:
        return self.folder.is_dir()


def store_folder(workdir: Workdir, spec: JobSpec, language: str, kind: str) -> Path:
    model = spec.model
    return workdir.adapter_dir(
        model.name_or_path, spec.data.task_label, kind, language, model.quantization
    )


def find_adapter(workdir: Workdir, spec: JobSpec, language: str, kind: str) -> StoredAdapter | None:
    """The stored adapter for (base, task, kind, language), or None when none was trained."""
    folder = store_folder(workdir, spec, language, kind)
    if not folder.is_dir():
        return None
    return StoredAdapter(language, folder, adapter_source(folder))


def stored_identity(folder: Path) -> dict | None:
    """The identity of the run that trained a stored adapter: recorded in its provenance, or
    (adapters published before it was recorded) worked out from that run's job.yaml."""
    from advfusion_cli.spec.loading import parse_spec
    from advfusion_cli.workflows.identity import read_identity

    provenance = folder / PROVENANCE_FILE
    recorded = read_identity(provenance)
    if recorded is not None:
        return recorded
    try:
        run_dir = Path(json.loads(provenance.read_text())["run_dir"])
        return identity(parse_spec((run_dir / "job.yaml").read_text()))
    except (OSError, ValueError, KeyError, TypeError, UserError):
        return None


@dataclass(frozen=True)
class AdapterMatch:
    """Where the adapter a stage needs is (or will be) stored, and why another was not used."""

    stored: StoredAdapter | None  # a stored adapter trained with exactly the wanted spec
    slot: Path  # where a newly trained one is published
    mismatch: str = ""  # why the adapter in the default slot does not serve, if one is there


def match_adapter(
    workdir: Workdir,
    stage: JobSpec,
    language: str,
    kind: str,
    wanted: dict,
    data: str | None = None,
) -> AdapterMatch:
    """The stored adapter trained with identity `wanted` (and, when `data` is given, on the
    examples it digests), looked for in the default slot `<language>/` and then in its own
    slot `<language>-<hash8>/` (used when the default holds an adapter trained otherwise,
    which is left as it is). An adapter trained as asked but on other data is replaced in
    its slot."""
    from advfusion_cli.workflows.identity import (
        data_changed,
        describe_differences,
        differences,
        read_data_fingerprint,
    )

    default = store_folder(workdir, stage, language, kind)
    own = default.with_name(f"{language}-{identity_hash(wanted)}")
    stale: Path | None = None  # trained as asked, on other examples
    for folder in (default, own):
        if folder.is_dir() and stored_identity(folder) == wanted:
            if data_changed(read_data_fingerprint(folder / PROVENANCE_FILE), data):
                stale = stale or folder
                continue
            return AdapterMatch(StoredAdapter(language, folder, adapter_source(folder)), folder)
    if stale is not None:
        why = f"stored {language} adapter was trained on other {language} examples (data changed)"
        return AdapterMatch(None, stale, why)
    if not default.is_dir():
        return AdapterMatch(None, default)
    recorded = stored_identity(default)
    if recorded is None:
        return AdapterMatch(None, own, f"stored {language} adapter has no recorded spec")
    was, asked = describe_differences(differences(recorded, wanted))
    why = f"stored {language} adapter was trained with {was}; this asks for {asked}"
    return AdapterMatch(None, own, why)


def find_adapter_at(folder: Path) -> str | None:
    """The source of the adapter stored in `folder`, None when there is none."""
    return adapter_source(folder) if folder.is_dir() else None


def adapter_source(folder: Path) -> str:
    """Which run trained a stored adapter (its provenance), else a hash of its files."""
    try:
        provenance = json.loads((folder / PROVENANCE_FILE).read_text())
        if isinstance(provenance.get("run_id"), str):
            return provenance["run_id"]
    except (OSError, ValueError):
        pass
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != PROVENANCE_FILE:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return "sha256:" + digest.hexdigest()[:16]


def publish_adapter(final: Path, folder: Path, provenance: dict) -> None:
    """Copy a run's exported adapter into the store (atomically replacing an older one)."""
    import shutil

    def build(tmp: Path) -> None:
        shutil.copytree(final, tmp, dirs_exist_ok=True)
        atomic.write_json(tmp / PROVENANCE_FILE, provenance)

    try:
        atomic.publish_dir(build, folder)
    except OSError as err:
        raise UserError(f"Cannot write adapter folder '{folder}': {err.strerror or err}.") from None


def check_adapter_base(stored: StoredAdapter, fingerprint: dict) -> None:
    """Fail early (before any weights load) when a stored adapter was trained on another base."""
    from advfusion_cli.engine.lora import FINGERPRINT_FILE
    from advfusion_cli.engine.serialization import (
        ADAPTER_CONFIG,
        check_fingerprint,
        read_json,
    )

    config_path = stored.folder / ADAPTER_CONFIG
    lora_fingerprint = stored.folder / FINGERPRINT_FILE
    if lora_fingerprint.is_file():
        check_fingerprint(read_json(lora_fingerprint), fingerprint, lora_fingerprint)
    elif config_path.is_file():
        check_fingerprint(read_json(config_path).get("base"), fingerprint, config_path)
    else:
        raise UserError(f"Adapter folder '{stored.folder}' has no {ADAPTER_CONFIG}.")
