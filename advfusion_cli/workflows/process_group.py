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
from datetime import timedelta

FAILURE_KEY = "advfusion/failure"


class PeerFailed(Exception):
    """This process stopped because another process of the launch failed first."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


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
    message = f"process {rank} failed: {type(error).__name__}: {first_line}"[:500]
    # the store lives in process 0, which may be the one going down
    with contextlib.suppress(Exception):
        store.set(FAILURE_KEY, message)


def failure_elsewhere() -> str | None:
    """The failure another process recorded, or None (also when the store is unreachable)."""
    store = _store()
    if store is None:
        return None
    try:
        if store.check([FAILURE_KEY]):
            return store.get(FAILURE_KEY).decode()
    except Exception:
        return None
    return None
