"""Adapter and fusion folders on disk: safetensors weights + a JSON config, never pickle.

One folder per adapter (`adapter.safetensors`, `adapter_config.json`) or fusion
(`fusion.safetensors`, `fusion_config.json`). Each config records the base model's fingerprint,
so weights are never loaded onto a model they were not trained on. Files are written to a
temporary name, fsynced and renamed, so an interrupted save never leaves a half-written file
under the real name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from advfusion_cli.errors import UserError

FORMAT_VERSION = 1
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
FUSION_WEIGHTS = "fusion.safetensors"
FUSION_CONFIG = "fusion_config.json"
STRUCTURAL_KEYS = ("model_type", "hidden_size", "num_layers")


def base_fingerprint(model: nn.Module) -> dict[str, Any]:
    """What identifies a base model: architecture, hidden size, layer count, name or path."""
    config = model.config
    return {
        "model_type": config.model_type,
        "hidden_size": int(config.hidden_size),
        "num_layers": int(config.num_hidden_layers),
        "name_or_path": str(getattr(config, "_name_or_path", "") or ""),
    }


def _model_name(name_or_path: str) -> str:
    """The last component, so a hub id and a local copy of it compare equal."""
    return name_or_path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _describe(fingerprint: dict[str, Any]) -> str:
    name = fingerprint.get("name_or_path") or "<unnamed>"
    return (
        f"{name} ({fingerprint.get('model_type')}, hidden {fingerprint.get('hidden_size')}, "
        f"{fingerprint.get('num_layers')} layers)"
    )


def check_fingerprint(
    saved: dict[str, Any], current: dict[str, Any], source: Path, strict_name: bool = True
) -> None:
    """Fail unless `saved` (from a file) describes the same base as `current`.

    Architecture, hidden size and layer count must match. With `strict_name`, the model names
    must match too (compared by last path component; skipped when either side has none).
    """
    if not isinstance(saved, dict) or any(k not in saved for k in STRUCTURAL_KEYS):
        raise UserError(f"{source}: 'base' fingerprint is missing or incomplete.")
    mismatch = any(saved[k] != current[k] for k in STRUCTURAL_KEYS)
    saved_name, current_name = saved.get("name_or_path") or "", current["name_or_path"]
    if strict_name and saved_name and current_name:
        mismatch = mismatch or _model_name(saved_name) != _model_name(current_name)
    if mismatch:
        hint = (
            ""
            if any(saved[k] != current[k] for k in STRUCTURAL_KEYS)
            else (" (same shape: pass strict_base=False to load it anyway)")
        )
        raise UserError(
            f"{source} was trained on base {_describe(saved)}, but the loaded base is "
            f"{_describe(current)}{hint}."
        )


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; on success fsync it and rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported on every platform/filesystem
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


TENSOR_METADATA = {"format": "pt"}  # what torch-based readers expect in the header


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    # Own CPU copies: safetensors refuses views that share storage and non-contiguous tensors.
    owned = {k: t.detach().to("cpu", copy=True).contiguous() for k, t in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(owned, str(tmp), metadata=TENSOR_METADATA)


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"Missing file {path}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object.")
    return data


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"Missing file {path}.")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(
            f"{path} is not a readable safetensors file (corrupt or truncated): {exc}"
        ) from exc


def read_config(folder: Path, config_name: str, kind: str) -> dict[str, Any]:
    """The folder's JSON config, checked for kind and format version."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{kind.capitalize()} folder '{folder}' does not exist.")
    path = folder / config_name
    config = read_json(path)
    if "peft_type" in config:
        raise UserError(f"{path} is a peft (LoRA) config; load that folder with load_lora.")
    if config.get("kind") != kind:
        raise UserError(f"{path}: expected kind '{kind}', found {config.get('kind')!r}.")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(
            f"{path}: format_version {version!r} is not supported (this version reads {FORMAT_VERSION})."
        )
    return config


def check_tensors(
    path: Path, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Size]
) -> None:
    """The file must hold exactly the expected names with the expected shapes."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
        raise UserError(f"{path} does not match its config: {'; '.join(parts)}.")
    for key, shape in expected.items():
        if tensors[key].shape != shape:
            raise UserError(
                f"{path}: tensor '{key}' has shape {tuple(tensors[key].shape)}, expected {tuple(shape)}."
            )
