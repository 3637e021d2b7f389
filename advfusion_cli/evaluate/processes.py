"""The processes an evaluation runs on: one, or N started by `accelerate launch` / torchrun.

`EvalWorld.current()` is a single process unless the launcher's environment names several
(WORLD_SIZE > 1); then it joins accelerate's process group (NCCL on GPUs, gloo on CPU, the
same state the training session uses, so `compare` trains and evaluates in one group) and
each process keeps its own GPU (cuda:LOCAL_RANK).

What an evaluation needs from the group is small: the main process's decisions sent to all
(`broadcast`), every process's results at the end (`all_gather`), a `barrier`, and shared
counters for the live progress line (`counters`), kept in the group's key-value store so
the main process can read them while the others still generate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def launched_processes() -> int:
    """How many processes the launcher started (1 when run directly)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass
class EvalWorld:
    """Rank and size of this evaluation's process group, and the collectives it uses."""

    rank: int = 0
    size: int = 1
    _sequence: int = 0  # evaluations started in this process (keys of their counters)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @classmethod
    def current(cls) -> EvalWorld:
        """This process's place: joins the launcher's group on first use (once per process)."""
        global _WORLD
        if _WORLD is None:
            _WORLD = cls._join() if launched_processes() > 1 else cls()
        return _WORLD

    @classmethod
    def _join(cls) -> EvalWorld:
        import torch
        from accelerate import PartialState

        # cpu=True without CUDA: torchrun's processes then form a gloo group (as training's
        # session does); on GPUs each process is bound to cuda:LOCAL_RANK, where the model
        # loads (device_map None = the current device).
        state = PartialState(cpu=not torch.cuda.is_available())
        return cls(rank=state.process_index, size=state.num_processes)

    def broadcast(self, value):
        """The main process's `value`, on every process."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, value) -> list:
        """Every process's `value`, by rank, on every process."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        gathered: list = [None] * self.size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def counters(self, names: tuple[str, ...]) -> SharedCounters:
        """Fresh counters for one evaluation (each process calls this once, in the same order)."""
        self._sequence += 1
        store = _default_store() if self.distributed else None
        return SharedCounters(f"advfusion-eval/{self._sequence}", names, store)


_WORLD: EvalWorld | None = None


def _default_store():
    """The process group's key-value store, or None where this torch does not expose it."""
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):
        return None


class SharedCounters:
    """Integers every process adds to and the main process reads while the others work.

    Without a store (one process, or a torch without one) each process counts alone.
    """

    def __init__(self, prefix: str, names: tuple[str, ...], store=None):
        import threading

        self.prefix = prefix
        self.store = store
        self.local = dict.fromkeys(names, 0)
        self._lock = threading.Lock()  # execution pools count from their callback thread

    def add(self, name: str, amount: int) -> None:
        with self._lock:
            self.local[name] += int(amount)
        if self.store is not None and amount:
            self.store.add(f"{self.prefix}/{name}", int(amount))

    def read(self) -> dict[str, int]:
        """The totals over all processes (this process's own counts without a store)."""
        if self.store is None:
            return dict(self.local)
        return {name: int(self.store.add(f"{self.prefix}/{name}", 0)) for name in self.local}


def quiet_console():
    """A console that shows nothing: the display of a process other than the main one."""
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), stderr=False)
