"""Resumable training state: trainable weights in safetensors, the rest in a weights-only torch file.

A checkpoint is a folder `step-NNNNNN/` published by one rename, holding
- `trainable.safetensors` — every parameter that trains, by name (no pickle);
- `state.pt` — optimizer and scheduler state dicts, the loop position (phase, step, epoch,
  index into the epoch's permutation), best-eval bookkeeping: tensors and plain Python
  values only, read back with `torch.load(weights_only=True)`;
- `moments.safetensors` (FSDP only) — the optimizer's sharded moments, whole, named
  `<param index>.<key>`; `state.pt` then holds the optimizer state without them (older
  checkpoints, and every single-process or DDP one, keep the moments in `state.pt`);
- `rng-rank<r>.pt` — each process's RNG states (torch CPU/CUDA, Python, NumPy).
Restoring all three at an optimizer-step boundary makes a resumed run bit-identical to an
uninterrupted one on CPU.

Writing never holds more than one whole tensor on the main process beyond what it trains
with: the safetensors files are streamed (header first, then each tensor produced — under
FSDP gathered —, written and dropped). Reading back never holds a whole extra copy per
process: weights and moments are read tensor by tensor from the safetensors files, and
under FSDP only the rows a process keeps (`get_slice`); `state.pt` is memory-mapped, so a
process touches only the moments (or the slices of them) it loads.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

from advfusion_cli.engine.safetensors_stream import StreamedTensor, write_streamed
from advfusion_cli.workflows import atomic
from advfusion_cli.workflows.sharding import copy_local_into, local_region, sharded_from_rows

WEIGHTS_FILE = "trainable.safetensors"
STATE_FILE = "state.pt"
MOMENTS_FILE = "moments.safetensors"


@dataclass
class LoopPosition:
    """Where a phase stands after `step` optimizer steps (always an accumulation boundary)."""

    step: int = 0
    epoch: int = 0
    index: int = 0  # micro-batches of this epoch's permutation already consumed
    tokens: int = 0
    elapsed_s: float = 0.0
    best_eval_loss: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0  # evaluations since the last one early stopping counts
    stop_reason: str | None = None  # set when early stopping ended the phase

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> LoopPosition:
        return cls(**values)


def rng_state() -> dict:
    """Every RNG a training step may draw from (dropout, data collation, NumPy users)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        # NumPy's state holds an ndarray; store it as a tensor so weights_only loading works.
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    if isinstance(value, list | tuple):
        return tuple(_as_tuple(v) for v in value)
    return value


def save_weights(path: Path | None, entries: list[StreamedTensor]) -> None:
    """Stream the trainable weights to `path` (replaced atomically); every process of a
    sharded run calls this with the same entries, path None where it does not write."""
    if path is None:
        write_streamed(None, entries)
    else:
        atomic.write_with(path, lambda tmp: write_streamed(Path(tmp), entries))


def load_weights_into(path: Path, named: dict[str, torch.nn.Parameter]) -> None:
    """Copy saved tensors into the live parameters; names and shapes must match exactly.
    One tensor at a time, and of a sharded parameter only this process's rows."""
    with safe_open(str(path), framework="pt", device="cpu") as saved:
        names = set(saved.keys())
        missing = sorted(set(named) - names)
        unexpected = sorted(names - set(named))
        if missing or unexpected:
            raise RuntimeError(
                f"Checkpoint {path} does not match the trainable parameters "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})."
            )
        for name, param in named.items():
            region = local_region(param)
            if region is None:
                copy_local_into(param, saved.get_tensor(name))
            else:  # (rows of this process, ...) of the whole tensor
                copy_local_into(param, saved.get_slice(name)[region])


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(phase_dir: Path) -> list[Path]:
    """Complete checkpoints of a phase, oldest first (temporary folders are ignored)."""
    if not phase_dir.is_dir():
        return []
    found = [p for p in phase_dir.iterdir() if p.is_dir() and p.name.startswith("step-")]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(phase_dir: Path) -> Path | None:
    found = list_checkpoints(phase_dir)
    return found[-1] if found else None


def begin(parent: Path, name: str) -> Path:
    """A fresh temporary folder in which every process writes its part before publishing."""
    tmp = parent / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def pending(parent: Path, name: str) -> Path:
    """The temporary folder `begin` made (for processes other than the main one)."""
    return parent / f".{name}.tmp"


def write_rng(tmp_dir: Path, rank: int) -> None:
    torch.save(rng_state(), tmp_dir / f"rng-rank{rank}.pt")


def write_tensors(
    tmp_dir: Path | None, weights: list[StreamedTensor], moments: list[StreamedTensor]
) -> None:
    """The checkpoint's safetensors files, streamed: trainable weights, then (FSDP) the
    moments. Every process calls this with the same entries; tmp_dir None where it does not
    write (it only joins the gathers)."""
    write_streamed(None if tmp_dir is None else tmp_dir / WEIGHTS_FILE, weights)
    if moments:
        write_streamed(None if tmp_dir is None else tmp_dir / MOMENTS_FILE, moments)


def write_main_state(
    tmp_dir: Path,
    optimizer_state: dict,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    position: LoopPosition,
    extra: dict | None = None,
) -> None:
    """`state.pt` (main process): the optimizer state (without the moments written to the
    moments file, if any), the scheduler, the loop position."""
    state = {
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict(),
        "position": position.to_dict(),
        "extra": extra or {},  # non-parameter training state, e.g. a temperature counter
    }
    torch.save(state, tmp_dir / STATE_FILE)


def publish(tmp_dir: Path, parent: Path, name: str) -> Path:
    """Rename the finished temporary folder into place (replacing an older one of that name)."""
    atomic.fsync_tree(tmp_dir)
    final = parent / name
    if final.exists():
        shutil.rmtree(final)
    tmp_dir.rename(final)
    atomic.fsync_dir(parent)
    return final


def prune(parent: Path, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints (keep < 0: delete them all)."""
    if keep == 0:
        return
    found = list_checkpoints(parent)
    for old in found if keep < 0 else found[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def read_state(checkpoint: Path) -> dict:
    """Optimizer/scheduler/position, loaded without unpickling arbitrary objects; tensors are
    memory-mapped (read when touched: a process reading its slices reads only those). Only
    torch.save's zip format can be mapped; any other file is read whole (and refused by
    weights_only unless it holds only tensors and plain values)."""
    import zipfile

    path = checkpoint / STATE_FILE
    mmap = zipfile.is_zipfile(path)
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def read_rng(checkpoint: Path, rank: int) -> dict | None:
    path = checkpoint / f"rng-rank{rank}.pt"
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def with_moments(checkpoint: Path, optimizer_state: dict, params: list[Tensor]) -> dict:
    """The saved optimizer state with the moments of `moments.safetensors` put back (a
    checkpoint without that file is returned as it is: its moments are in `state.pt`).
    Each moment is read alone; of a sharded parameter only this process's rows, returned
    sharded like the parameter. `params` in the optimizer's parameter order."""
    path = checkpoint / MOMENTS_FILE
    if not path.exists():
        return optimizer_state
    order = [i for group in optimizer_state["param_groups"] for i in group["params"]]
    by_index = dict(zip(order, params, strict=True))
    per_param = {index: dict(values) for index, values in optimizer_state["state"].items()}
    with safe_open(str(path), framework="pt", device="cpu") as saved:
        for name in saved.keys():  # noqa: SIM118 (safe_open has no __iter__)
            index_text, key = name.split(".", 1)
            index = int(index_text)
            if index not in by_index:
                raise RuntimeError(f"{path}: moment {name} names no parameter of the optimizer")
            param = by_index[index]
            region = local_region(param)
            if region is None:
                value = saved.get_tensor(name)
            else:  # (rows of this process, ...) of the whole moment
                value = sharded_from_rows(param, saved.get_slice(name)[region])
            per_param.setdefault(index, {})[key] = value
    return {**optimizer_state, "state": per_param}
