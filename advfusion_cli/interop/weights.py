"""Reading and writing weight files of other libraries: safetensors, or weights-only pickles.

A `.bin` file is a pickle; unpickling runs whatever code the file names. It is loaded with
`torch.load(weights_only=True)`, which only rebuilds tensors and plain containers, and a file
that needs anything more is refused instead of trusted.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import Tensor

from advfusion_cli.engine.serialization import atomic_path, read_tensors, write_tensors
from advfusion_cli.errors import UserError

WEIGHT_FORMATS = ("safetensors", "bin")


def read_weights(path: Path) -> dict[str, Tensor]:
    """name -> tensor from a .safetensors file or a weights-only .bin; one-line errors."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_tensors(path)
    if not path.is_file():
        raise UserError(f"Missing file {path}.")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = " ".join(str(exc).split())[:160]
        raise UserError(
            f"{path} is not a weights-only pickle (loading it would run code it names: "
            f"{reason}); re-save it as safetensors, or with torch.save of a plain state dict."
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise UserError(f"{path} is not a readable PyTorch weights file: {exc}") from None
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in loaded.items()
    ):
        raise UserError(f"{path} does not hold a state dict (names to tensors).")
    return loaded


def write_weights(path: Path, tensors: dict[str, Tensor]) -> None:
    """safetensors for a .safetensors name, else a plain state dict through torch.save."""
    path = Path(path)
    if path.suffix == ".safetensors":
        write_tensors(path, tensors)
        return
    owned = {k: t.detach().to("cpu", copy=True).contiguous() for k, t in tensors.items()}
    with atomic_path(path) as tmp:
        torch.save(owned, tmp)
