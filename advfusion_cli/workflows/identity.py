"""Is this the same run? Comparing what a run or a stored adapter was trained with to what is asked.

A run folder keeps `identity.json`: the identity (resolved spec minus output-only and
retention keys, plus what a fusion fuses) and its hash. The run id hashes the same identity,
except when `output.run_name` names the run: then this file is what tells a rerun of the same
job (resume or reuse it) from a changed job under an old name (refused, or `--force`).
Stored adapters carry the identity of the run that trained them in `provenance.json`, so a
fusion reuses one only if it is the adapter the fusion would train itself.

Both also record `data`: a digest of the examples the run read (task_data.data_fingerprint).
It is kept beside the identity, not in the run id, so an edited record keeps the run's id
and folder: the finished run is retrained in place ("data changed") instead of reused, and a
stored adapter trained on the old records is not fused.
"""

from __future__ import annotations

import json
from pathlib import Path

from advfusion_cli.errors import UserError
from advfusion_cli.workflows.runs import RunDir, identity_hash

IDENTITY_FILE = "identity.json"
SHOWN_DIFFERENCES = 3


def identity_record(identity: dict, data: str | None = None) -> dict:
    record = {"hash": identity_hash(identity), "identity": identity}
    if data is not None:
        record["data"] = data
    return record


def read_data_fingerprint(path: Path) -> str | None:
    """The data digest recorded in an identity.json or provenance.json (None before it was
    recorded, or when unreadable)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    value = record.get("data") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def data_changed(recorded: str | None, current: str | None) -> bool:
    """Whether a run or adapter was trained on other examples than those asked for now
    (unknown either side: not changed, so runs made before the digest existed are reused)."""
    return recorded is not None and current is not None and recorded != current


def read_identity(path: Path) -> dict | None:
    """The identity stored in a run's identity.json or an adapter's provenance.json."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    identity = record.get("identity") if isinstance(record, dict) else None
    return identity if isinstance(identity, dict) else None


def flatten(values: object, prefix: str = "") -> dict[str, object]:
    """{"training": {"seed": 0}} -> {"training.seed": 0}; lists stay values."""
    if not isinstance(values, dict):
        return {prefix: values}
    flat: dict[str, object] = {}
    for key, value in values.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def differences(recorded: dict, wanted: dict) -> list[tuple[str, object, object]]:
    """(key, recorded value, wanted value) for every key whose value differs, sorted."""
    old, new = flatten(recorded), flatten(wanted)
    keys = sorted(set(old) | set(new))
    return [(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


def _value(value: object) -> str:
    return "unset" if value is None else json.dumps(value) if not isinstance(value, str) else value


def describe_differences(diffs: list[tuple[str, object, object]]) -> tuple[str, str]:
    """('method.reduction_factor 16, data.source testbed', '4, /data') for the first few."""
    shown = diffs[:SHOWN_DIFFERENCES]
    more = f" and {len(diffs) - len(shown)} more" if len(diffs) > len(shown) else ""
    was = ", ".join(f"{key.removeprefix('extra.')} {_value(old)}" for key, old, _ in shown)
    wanted = ", ".join(_value(new) for _, _, new in shown)
    return was + more, wanted


def check_named_run(run: RunDir, identity: dict, force: bool) -> None:
    """A run named by `output.run_name` that holds another job: refuse unless --force."""
    recorded = read_identity(run.path / IDENTITY_FILE)
    if recorded is None or recorded == identity or force:
        return
    was, wanted = describe_differences(differences(recorded, identity))
    raise UserError(
        f"Run '{run.id}' ({run.path}) was trained with {was}; this job asks for {wanted}. "
        "Choose another output.run_name, or pass --force to replace that run."
    )


def check_process_count(run: RunDir, world: int) -> None:
    """Resuming with another number of processes would change data sharding and the
    epoch-to-step conversion mid-run: refuse with the count the run was started with."""
    try:
        recorded = json.loads(run.env_json.read_text()).get("num_processes")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(recorded, int) and recorded != world:
        raise UserError(
            f"Run '{run.id}' was started with {recorded} process(es) and cannot resume with "
            f"{world}: the data sharding and step counts would change. Relaunch with "
            f"{recorded} process(es), or pass --force to start it over."
        )


def revisions(model_spec, data_spec, model=None) -> dict:
    """Requested (spec) and, once loaded, resolved (hub commit) revisions of base and data."""
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    return {
        "model": {
            "name_or_path": model_spec.name_or_path,
            "requested": model_spec.revision,
            "resolved": commit,
        },
        "data": {"source": data_spec.source, "requested": data_spec.revision},
    }
