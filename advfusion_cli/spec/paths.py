"""Checks of what a spec points at on disk, without loading weights or data or going online.

Kept out of the schema so a saved job.yaml can be read on any machine; `validate` and the
workflows call `check_paths` before starting work.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from advfusion_cli.errors import UserError
from advfusion_cli.spec.names import EMBEDDED_MODEL
from advfusion_cli.spec.schema import HUB_ID, JobSpec

# Strings that can only mean a path on disk (never a hub id).
_PATH_LIKE = re.compile(r"^(/|\./|\.\./|~|[A-Za-z]:[\\/])|\\|/.*/|/$")


@dataclass(frozen=True)
class ModelLocation:
    kind: Literal["embedded", "local", "hub"]
    value: str


def model_location(name_or_path: str) -> ModelLocation:
    """Where `model.name_or_path` points: the embedded model, a local folder or a hub id.

    Like transformers, an existing local folder wins over a hub id of the same spelling."""
    if name_or_path == EMBEDDED_MODEL:
        return ModelLocation("embedded", name_or_path)
    path = Path(name_or_path).expanduser()
    if path.exists() or _PATH_LIKE.search(name_or_path):
        return ModelLocation("local", str(path))
    if HUB_ID.match(name_or_path) and ".." not in name_or_path and "--" not in name_or_path:
        return ModelLocation("hub", name_or_path)
    raise UserError(
        f"model.name_or_path: '{name_or_path}' is neither an existing path nor a hub id "
        "(owner/name)"
    )


def check_paths(spec: JobSpec) -> None:
    """UserError naming the key when a local path in the spec does not exist or has the
    wrong kind; hub ids are only checked for their form (no network)."""
    location = model_location(spec.model.name_or_path)
    if location.kind == "local":
        path = Path(location.value)
        if not path.exists():
            raise UserError(f"model.name_or_path: no such directory: {path}")
        if not path.is_dir():
            raise UserError(
                f"model.name_or_path: {path} is a file; give the model's folder "
                "(with config.json and the weights)"
            )
    if spec.data.source_kind == "path":
        source = Path(spec.data.source).expanduser()
        if not source.exists():
            raise UserError(f"data.source: no such file or directory: {source}")
    workdir = spec.output.workdir.expanduser()
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"output.workdir: {workdir} exists and is not a directory")
    existing = next(p for p in (workdir, *workdir.absolute().parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"output.workdir: {existing} is not writable")
