"""Write a safetensors file one tensor at a time, so the writer never holds more than one.

The safetensors layout is an 8-byte little-endian header length, a JSON header (each tensor's
dtype, shape and byte range in the data section, padded with spaces to a multiple of 8),
then the tensors' bytes back to back. Every tensor's shape and dtype are known before any is
produced (a sharded tensor knows its global shape), so the header is written first and each
tensor is produced (e.g. gathered from its shards), written at its offset and dropped.

The tensors are laid out in the order `safetensors.torch.save_file` uses (larger element
first, then by name) and the header is the same compact JSON, so the file is byte for byte
what `save_file` writes for the same tensors (tested).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


@dataclass(frozen=True)
class StreamedTensor:
    """One tensor of a streamed file: what the header needs, and how to get its values.
    `produce` returns the whole tensor (any device) where the file is written, None where
    it is not (a process that only joins the gathers)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    produce: Callable[[], Tensor | None]

    @property
    def nbytes(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count * self.dtype.itemsize


def file_order(entries: list[StreamedTensor]) -> list[StreamedTensor]:
    """save_file's order: larger elements first, then by name."""
    return sorted(entries, key=lambda e: (-e.dtype.itemsize, e.name))


def header_bytes(entries: list[StreamedTensor], metadata: dict[str, str] | None = None) -> bytes:
    """The length prefix and the padded JSON header for `entries` in file order."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for entry in entries:
        if entry.dtype not in SAFETENSORS_DTYPES:
            raise ValueError(f"{entry.name}: dtype {entry.dtype} cannot be stored in safetensors")
        header[entry.name] = {
            "dtype": SAFETENSORS_DTYPES[entry.dtype],
            "shape": list(entry.shape),
            "data_offsets": [offset, offset + entry.nbytes],
        }
        offset += entry.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
    return len(text).to_bytes(8, "little") + text


def write_streamed(
    path: Path | None, entries: list[StreamedTensor], metadata: dict[str, str] | None = None
) -> None:
    """Write `entries` to `path`, producing one tensor at a time. Every process of a sharded
    run calls this with the same entries (producing may be a collective); path None: produce
    and drop (nothing is written here)."""
    ordered = file_order(entries)
    if path is None:
        for entry in ordered:
            entry.produce()
        return
    with open(path, "wb") as out:
        out.write(header_bytes(ordered, metadata))
        for entry in ordered:
            tensor = entry.produce()
            if tensor is None or tuple(tensor.shape) != entry.shape or tensor.dtype != entry.dtype:
                got = None if tensor is None else (tuple(tensor.shape), tensor.dtype)
                raise ValueError(f"{entry.name}: expected {entry.shape} {entry.dtype}, got {got}")
            # (numel,) bytes in native (little-endian) order, as safetensors stores them
            flat = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
            out.write(memoryview(flat.numpy()))
            del tensor, flat  # one tensor at a time
