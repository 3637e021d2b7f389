"""FSDP2 over the fusion layers, proven on two CPU processes (gloo) under torchrun.

One launch trains AdapterFusion and AdvFusion (both phases) with FSDP and then DDP; this
process trains the same fusions on one process over the same global batch. The runs must
agree to 1e-5, each FSDP process must hold exactly half of the fusion's parameters and Adam
moments, and the exported fusion must reload on one CPU process with the trained logits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fusion_parity as fp
import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).resolve().parent / "fusion_parity_worker.py"
TOLERANCE = 1e-5


def launch(mode: str, out: Path, adapters: Path, timeout: int = 300):
    """torchrun with two CPU processes; a free rendezvous port per launch (--standalone)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", str(WORKER), mode, str(out), str(adapters)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fsdp-adapters")
    fp.write_adapters(root)
    return root


@pytest.fixture(scope="module")
def parity_runs(tmp_path_factory, adapters) -> Path:
    out = tmp_path_factory.mktemp("fsdp-parity")
    done = launch("parity", out, adapters)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def single_process(name: str, adapters: Path, run: Path):
    """The reference: one process, the whole global batch per step."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == 1
    torch.manual_seed(0)
    trainable = fp.fused_model(name, {lang: adapters / lang for lang in fp.LANGUAGES})
    loop = fp.trainer(accelerator, trainable.model, trainable, run)
    fp.schedule(name)(loop, trainable, fp.phases(name, world=1))
    return trainable


def max_difference(left: dict, right: dict) -> float:
    assert set(left) == set(right)
    return max(float((left[k].float() - right[k].float()).abs().max()) for k in left)


@pytest.mark.parametrize("name", ["adapterfusion", "advfusion"])
def test_fsdp_equals_single_process_and_ddp(parity_runs, adapters, tmp_path, name):
    start = fp.fused_model(name, {lang: adapters / lang for lang in fp.LANGUAGES})
    single = fp.fusion_weights(single_process(name, adapters, tmp_path / "single"))
    fsdp = load_file(str(parity_runs / f"fsdp-{name}.safetensors"))
    ddp = load_file(str(parity_runs / f"ddp-{name}.safetensors"))
    assert max_difference(fsdp, single) < TOLERANCE
    assert max_difference(fsdp, ddp) < TOLERANCE
    # the runs trained: every fusion tensor moved well beyond the tolerance
    assert max_difference(fp.fusion_weights(start), single) > 1e-3


def test_each_process_holds_half_of_the_fusion_state(parity_runs):
    hidden, layers = 32, 2  # tiny llama; task adapters: one place per layer
    total = layers * (3 * hidden * hidden + 2 * hidden)
    for rank in (0, 1):
        counts = json.loads((parity_runs / f"counts-rank{rank}.json").read_text())
        for name in ("adapterfusion", "advfusion"):
            assert counts[name]["total_params"] == total
            assert counts[name]["local_params"] == total // 2
            assert counts[name]["local_moments"] == 2 * (total // 2)  # exp_avg, exp_avg_sq


@pytest.mark.parametrize("name", ["adapterfusion", "advfusion"])
def test_fsdp_export_reloads_on_one_process_with_the_trained_logits(parity_runs, adapters, name):
    from conftest import build_tiny_model

    from advfusion_cli.engine import attach_host

    model = build_tiny_model("llama")
    host = attach_host(model)
    for language in fp.LANGUAGES:
        host.load_adapter(adapters / language, name=language)
    host.load_fusion(parity_runs / f"export-{name}")
    with torch.no_grad():
        logits = model(**fp.probe_batch()).logits
    trained = torch.load(parity_runs / f"logits-{name}.pt")
    assert torch.allclose(logits, trained, atol=TOLERANCE, rtol=0)
    weights = load_file(str(parity_runs / f"export-{name}" / "fusion.safetensors"))
    assert all(not t.is_meta and t.numel() for t in weights.values())
