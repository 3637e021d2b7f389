"""Adapters imported from other libraries (`advfusion import`), as the store records them.

An imported adapter sits in the store slot a trained one would use, with a provenance whose
`imported_from` names its source. Its recorded identity is the import, not a training spec,
so a fusion would never match it as "the adapter it would train itself"; `plan_fusion` takes
it explicitly instead (the user imported it for that base, task, kind and language), and
`train-adapters` leaves it where it is and trains into its own slot.
"""

from __future__ import annotations

import json
from pathlib import Path

IMPORTED_FROM = "imported_from"
IMPORT_FILE = "import.json"  # in an import run's folder: source, format, digest, notes


def imported_from(folder: Path) -> str | None:
    """The source an imported adapter in `folder` came from; None for trained ones."""
    try:
        provenance = json.loads((Path(folder) / "provenance.json").read_text())
    except (OSError, ValueError):
        return None
    source = provenance.get(IMPORTED_FROM) if isinstance(provenance, dict) else None
    return source if isinstance(source, str) else None


def imported_adapter(folder: Path, language: str):
    """The imported adapter in a store slot as a StoredAdapter, or None (empty or trained)."""
    from advfusion_cli.workflows.stages import StoredAdapter, adapter_source

    if not Path(folder).is_dir() or imported_from(folder) is None:
        return None
    return StoredAdapter(language, Path(folder), adapter_source(folder))
