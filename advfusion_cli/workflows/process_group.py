"""The processes of one launch: their collective timeout, and one failure ending them all.

Stretches where one process works alone while the others wait in a collective (data
preparation under `main_process_first`, a 34B checkpoint write, the optimizer-state
rewrite) can outlast torch's default collective timeout (10 minutes under NCCL) and kill
a healthy job: `training.timeout_minutes` sets it for the process group.

When one process fails (a full disk while it writes its part of a checkpoint), the others
are usually waiting for it in a collective. The failing process records its error in the
process group's key-value store before it exits; the others fail in that collective as
soon as it is gone (gloo notices the closed connection; under NCCL the launcher, torchrun
or `srun --kill-on-bad-exit=1`, ends them) and, instead of reporting their own broken
collective, say which process failed. The error itself is printed once, by its process,
and is what the run's status.json records.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import timedelta

FAILURE_KEY = "advfusion/failure"


class PeerFailed(Exception):
    """This process stopped because another process of the launch failed first."""

    def __init__(self, failure: Failure):
        super().__init__(failure.message)
        self.failure = failure


@dataclass(frozen=True)
class Failure:
    rank: int
    error: str  # "OSError: [Errno 28] No space left on device" (its first line)

    @property
    def message(self) -> str:
        return f"process {self.rank} failed: {self.error}"


def init_kwargs(timeout_minutes: float | None) -> list:
    """accelerate kwargs handlers that set the collective timeout (none: torch's default)."""
    if timeout_minutes is None:
        return []
    from accelerate.utils import InitProcessGroupKwargs

    return [InitProcessGroupKwargs(timeout=timedelta(minutes=timeout_minutes))]


def _store():
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
        return None
    try:
        return dist.distributed_c10d._get_default_store()
    except (RuntimeError, ValueError, AttributeError):
        return None


def record_failure(rank: int, error: BaseException) -> None:
    """Tell the other processes why this one fails (best effort: the store may be gone)."""
    store = _store()
    if store is None:
        return
    first_line = (str(error).strip().splitlines() or [""])[0]
    record = {"rank": rank, "error": f"{type(error).__name__}: {first_line}"[:500]}
    # the store lives in process 0, which may be the one going down
    with contextlib.suppress(Exception):
        store.set(FAILURE_KEY, json.dumps(record))


def failure_elsewhere() -> Failure | None:
    """The failure another process recorded, or None (also when the store is unreachable)."""
    store = _store()
    if store is None:
        return None
    try:
        if store.check([FAILURE_KEY]):
            record = json.loads(store.get(FAILURE_KEY).decode())
            return Failure(int(record["rank"]), str(record["error"]))
    except Exception:
        return None
    return None
