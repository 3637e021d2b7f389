"""The offline testbed: a generated multilingual code world in the real datasets' schemas.

Nothing can be downloaded here, so the project ships its own small world: programs in
python, javascript, java, go and ruby rendered from one shared IR (so cross-lingual
transfer is real), emitted as CommitPackFT, xCodeEval and CodeTransOcean files that the
real loaders read unchanged. `ensure_testbed(task)` generates once per config (cached by
a hash, written atomically) and returns the task's root folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import unknown_name_error
from .config import GENERATOR_VERSION, TASKS, TestbedConfig
from .corpus import CorpusDocument, iter_corpus
from .pools import build_pools, commit_split_fractions
from .writers import write_code_generation, write_code_translation, write_commit_messages

TASK_DIRS = {
    "commit-message": "commitpackft",
    "code-generation": "xcodeeval",
    "code-translation": "CodeTransOcean",
}
MANIFEST = "testbed.json"


def default_cache_dir() -> Path:
    """`$ADVFUSION_CACHE/testbed`, else `~/.cache/advfusion/testbed`."""
    root = os.environ.get("ADVFUSION_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "advfusion") / "testbed"


def generate_testbed(config: TestbedConfig, destination: Path) -> dict:
    """Write all three tasks under `destination` (created atomically); returns the manifest."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        pools = build_pools(config)
        commits = write_commit_messages(config, pools, staging / TASK_DIRS["commit-message"])
        generation = write_code_generation(config, pools, staging / TASK_DIRS["code-generation"])
        translation = write_code_translation(config, pools, staging / TASK_DIRS["code-translation"])
        manifest = {
            "generator_version": GENERATOR_VERSION,
            "config": {**config.__dict__, "languages": list(config.languages)},
            "commit-message": dict(sorted(commits.items())),
            "code-generation": {f"{s}/{lang}": n for (s, lang), n in sorted(generation.items())},
            "code-translation": {
                f"{s}/{a}->{b}": n for (s, a, b), n in sorted(translation.items())
            },
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            os.rename(staging, destination)  # atomic: readers see all files or none
        except OSError:
            if not (destination / MANIFEST).is_file():
                raise  # something other than a finished concurrent generation is in the way
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_testbed(
    task: str, config: TestbedConfig | None = None, cache_dir: Path | None = None
) -> Path:
    """The root folder of `task` in the real dataset's layout, generating it on first use."""
    if task not in TASK_DIRS:
        raise unknown_name_error("task", task, TASK_DIRS)
    config = config or TestbedConfig()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = folder / config.cache_key()
    if not (root / MANIFEST).is_file():
        if root.exists():
            shutil.rmtree(root)  # an unfinished folder from an older, non-atomic writer
        generate_testbed(config, root)
    return root / TASK_DIRS[task]


__all__ = [
    "TASKS",
    "TASK_DIRS",
    "CorpusDocument",
    "TestbedConfig",
    "build_pools",
    "commit_split_fractions",
    "default_cache_dir",
    "ensure_testbed",
    "generate_testbed",
    "iter_corpus",
]
