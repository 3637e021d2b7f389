"""Resume reads only what each process keeps: two gloo processes restore a sharded parameter
and its AdamW moments from a whole-tensor checkpoint (moments in `state.pt`, or in FSDP's
moments file), and each one's resident memory grows by less than one copy of the checkpoint
(the old reader took the whole files per process)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from resume_rss_worker import expected
from safetensors.torch import save_file

from advfusion_cli.workflows import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset"
)


def write_checkpoint(folder: Path, moments_file: bool) -> int:
    """A checkpoint as the main process writes it (whole tensors), the moments in `state.pt`
    (single process, DDP, FSDP before moments had their own file) or in the moments file
    (FSDP); returns its size."""
    folder.mkdir()
    save_file({"weight": expected(0)}, str(folder / ckpt.WEIGHTS_FILE))
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    groups = optimizer.state_dict()["param_groups"]
    moments = {"exp_avg": expected(1), "exp_avg_sq": expected(2)}
    kept = {"step": torch.tensor(3.0)}
    if moments_file:
        named = {f"0.{key}": value for key, value in moments.items()}
        save_file(named, str(folder / ckpt.MOMENTS_FILE))
    else:
        kept |= moments
    torch.save(
        {"optimizer": {"state": {0: kept}, "param_groups": groups}},
        folder / ckpt.STATE_FILE,
    )
    return sum(p.stat().st_size for p in folder.iterdir())


@pytest.mark.parametrize("moments_file", [False, True], ids=["moments-in-state", "moments-file"])
def test_each_process_resumes_below_one_checkpoint_copy(tmp_path, moments_file):
    size = write_checkpoint(tmp_path / "step-000003", moments_file)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2"}
    env.setdefault("OMP_NUM_THREADS", "1")
    worker = [
        sys.executable,
        str(ROOT / "tests" / "resume_rss_worker.py"),
        str(tmp_path / "step-000003"),
    ]
    processes = [
        subprocess.Popen(
            worker,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
        )
        for rank in range(2)
    ]
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    for report in reports:
        assert report["ok"], report  # each process holds exactly its rows of each tensor
        grown = (report["peak_kib"] - report["before_kib"]) * 1024
        # its slices of the moments must be allocated; a whole copy of the files must not
        print(
            f"rank {report['rank']}: +{grown / 2**20:.0f} MiB (checkpoint {size / 2**20:.0f} MiB)"
        )
        assert grown < size, (grown, size)
