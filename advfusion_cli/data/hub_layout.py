"""Which files hold which split, in the layouts datasets on the Hugging Face hub use.

Read without `datasets` (see data/sources.py), in the order `datasets` itself looks:
1. `README.md` front matter `configs:`: each config's `data_files`, a glob or a list of
   globs (all train), or a list of `{split, path}` entries (`path` a glob or a list);
2. a folder per config, `<config>/` (when a config is asked for and the folder exists),
   then inside it (or the root) the standard folders:
3. `data/`: files named by their split (`train-00000-of-00002.parquet`, `validation.jsonl`)
   or in split folders (`data/train/...`);
4. split files or folders at the top: `train.jsonl`, `train/`, `validation/`, `test/` (any
   alias).
"""

from __future__ import annotations

from pathlib import Path

from advfusion_cli.data.splits import split_of_name
from advfusion_cli.errors import UserError

README = "README.md"
SPLIT_KEYS = {"split", "path"}


def split_files(
    root: Path, config: str | None, suffixes: tuple[str, ...]
) -> dict[str, list[Path]] | None:
    """{split: files} of the hub layout under `root` (splits as SPLITS names them), or None
    when `root` is in none of these layouts. UserError for a config that is not there."""
    declared = _readme_configs(root)
    if declared:
        return _from_config(root, _pick(root, declared, config), suffixes)
    if config is not None:
        if not (root / config).is_dir():
            raise UserError(
                f"{root}: no config '{config}' (no {README} `configs:` entry, no {config}/ "
                "folder); check data.custom.config."
            )
        root = root / config
    for folder in (root / "data", root):
        files = _record_files(folder, suffixes, top=folder == root)
        if files:
            return _by_split(root, files)
    return None


def _record_files(folder: Path, suffixes: tuple[str, ...], top: bool) -> list[Path]:
    """Row files under `folder`, recursively (at the top: files and folders named by a split)."""
    if not folder.is_dir():
        return []
    found = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if top:
        first = [p.relative_to(folder).parts[0] for p in found]
        found = [
            p
            for p, part in zip(found, first, strict=True)
            if split_of_name(Path(part).stem if p.name == part else part) is not None
        ]
    return found


def _split_of(root: Path, path: Path) -> str | None:
    """A file's split: named by the file (train-00000-of-00002), else by a folder above it."""
    split = split_of_name(path.stem)
    if split is not None:
        return split
    for part in reversed(path.relative_to(root).parts[:-1]):
        split = split_of_name(part)
        if split is not None:
            return split
    return None


def _by_split(root: Path, files: list[Path]) -> dict[str, list[Path]]:
    per_split: dict[str, list[Path]] = {}
    for path in files:
        split = _split_of(root, path)
        if split is None:
            raise UserError(
                f"{path}: neither the file nor its folder names a split (train, validation, "
                "test), as the hub's data/ layout does."
            )
        per_split.setdefault(split, []).append(path)
    return per_split


# ---- README.md configs ------------------------------------------------------------------


def _readme_configs(root: Path) -> list[dict]:
    """The `configs:` list of README.md's YAML front matter ([] when there is none)."""
    import yaml

    readme = root / README
    if not readme.is_file():
        return []
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return []
    end = text.find("\n---", 3)
    if end < 0:
        return []
    try:
        front = yaml.safe_load(text[3:end])
    except yaml.YAMLError as err:
        raise UserError(f"{readme}: the front matter is not valid YAML ({err}).") from None
    configs = front.get("configs") if isinstance(front, dict) else None
    if not isinstance(configs, list):
        return []
    return [c for c in configs if isinstance(c, dict) and "data_files" in c]


def _pick(root: Path, configs: list[dict], wanted: str | None) -> dict:
    names = [str(c.get("config_name", "default")) for c in configs]
    if wanted is not None:
        if wanted not in names:
            raise UserError(
                f"{root / README}: no config '{wanted}' (configs: {', '.join(names)}); check "
                "data.custom.config."
            )
        return configs[names.index(wanted)]
    defaults = [c for c in configs if c.get("default") is True or c.get("config_name") == "default"]
    if defaults:
        return defaults[0]
    if len(configs) == 1:
        return configs[0]
    raise UserError(
        f"{root / README} declares configs {', '.join(names)} and none is the default; "
        "set data.custom.config to one of them."
    )


def _from_config(root: Path, config: dict, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
    data_files = config["data_files"]
    entries: list[tuple[str, list[str]]]
    if isinstance(data_files, str):
        entries = [("train", [data_files])]
    elif isinstance(data_files, list) and all(isinstance(d, str) for d in data_files):
        entries = [("train", list(data_files))]
    elif isinstance(data_files, list) and all(isinstance(d, dict) for d in data_files):
        entries = []
        for item in data_files:
            if not set(item) >= SPLIT_KEYS:
                raise UserError(f"{root / README}: a data_files entry lacks split or path: {item}")
            paths = item["path"] if isinstance(item["path"], list) else [item["path"]]
            entries.append((str(item["split"]), [str(p) for p in paths]))
    else:
        raise UserError(f"{root / README}: data_files of config is not a path or a list.")
    per_split: dict[str, list[Path]] = {}
    for split_name, patterns in entries:
        split = split_of_name(split_name)
        if split is None:
            raise UserError(
                f"{root / README}: split '{split_name}' is not train, validation or test."
            )
        for pattern in patterns:
            matched = sorted(p for p in root.glob(pattern) if p.suffix.lower() in suffixes)
            if not matched:
                raise UserError(f"{root / README}: no file matches '{pattern}' ({split_name}).")
            per_split.setdefault(split, []).extend(matched)
    return per_split
