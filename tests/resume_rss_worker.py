"""One process of test_resume_memory: restore a sharded parameter and its AdamW moments from
a whole-tensor checkpoint (as Trainer._restore does: moments in `state.pt`, or in the moments
file FSDP checkpoints write) and report its resident memory."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from advfusion_cli.workflows import checkpoint as ckpt
from advfusion_cli.workflows.sharding import FusionSharded

ROWS, COLUMNS = 2048, 8192  # 64 MiB per fp32 tensor


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def expected(seed: int) -> torch.Tensor:
    return torch.randn(ROWS, COLUMNS, generator=torch.Generator().manual_seed(seed))


def main(folder: Path) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    unit = nn.Module()
    unit.weight = nn.Parameter(torch.zeros(ROWS, COLUMNS))
    fully_shard(unit, mesh=init_device_mesh("cpu", (world,)))
    param = unit.weight  # a DTensor: this process holds ROWS / world rows
    optimizer = torch.optim.AdamW([param])
    layout = FusionSharded([unit])
    gc.collect()
    dist.barrier()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = status_kib("VmRSS")

    ckpt.load_weights_into(folder / ckpt.WEIGHTS_FILE, {"weight": param})
    state = ckpt.read_state(folder)
    saved = ckpt.with_moments(folder, state["optimizer"], [param])  # FSDP's moments file
    optimizer.load_state_dict(layout.local_optimizer_state(saved, [param]))
    del saved
    del state
    peak = status_kib("VmHWM")

    rows = slice(rank * ROWS // world, (rank + 1) * ROWS // world)
    moments = optimizer.state[param]
    restored = (
        torch.equal(param.to_local(), expected(0)[rows])
        and torch.equal(moments["exp_avg"].to_local(), expected(1)[rows])
        and torch.equal(moments["exp_avg_sq"].to_local(), expected(2)[rows])
    )
    print(json.dumps({"rank": rank, "before_kib": before, "peak_kib": peak, "ok": restored}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
