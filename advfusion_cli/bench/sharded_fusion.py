"""Per-process fusion-state memory under DDP and FSDP, measured side by side on 2 processes.

    python -m advfusion_cli.bench.sharded_fusion [--hidden 1024 --layers 4 --processes 2]

starts `torchrun` twice (DDP, then FSDP) on a random llama of the given shape with three
random task adapters fused (AdapterFusion, full rank). Each process trains a few AdamW steps
and reports its exact local fusion-state elements (weights, gradients, two moments) and its
resident memory: VmRSS before the fusion is prepared and VmHWM (the peak) after training.
Prints one table with the FSDP/DDP ratios. CPU (gloo) without CUDA, one GPU per process
with it. The base is random and replicated in both modes, so only the fusion state differs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

MIB = 1024**2
RESULT = "RESULT "
MODULE = "advfusion_cli.bench.sharded_fusion"  # run again under torchrun


def _proc_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _fused_model(hidden: int, layers: int, device):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from advfusion_cli.engine import AdapterConfig, FusionConfig, attach_host

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "llama",
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        vocab_size=256,
        max_position_embeddings=128,
    )
    model = AutoModelForCausalLM.from_config(config).to(device)
    host = attach_host(model)
    for name in ("a", "b", "c"):
        host.add_adapter(name, AdapterConfig.task_adapter(reduction_factor=16))
    host.fuse(["a", "b", "c"], FusionConfig())
    host.freeze_for_fusion_training()
    return model, host


def measure(kind: str, hidden: int, layers: int, steps: int) -> None:
    """Under torchrun: one process's figures, printed by the main process for all."""
    import torch
    import torch.distributed as dist
    from accelerate import Accelerator

    from advfusion_cli.workflows import sharding

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model, host = _fused_model(hidden, layers, accelerator.device)
    gc.collect()
    before_kib = _proc_kib("VmRSS")
    layout = sharding.for_run(kind, model)
    prepared = layout.prepare(accelerator, model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    ids = torch.randint(0, 256, (2, 64), device=accelerator.device)
    grads_local = 0
    for _ in range(steps):
        loss = prepared(input_ids=ids, labels=ids).loss
        if kind == sharding.FSDP:
            loss = loss + sharding.sharded_regularization(layout.units, 0.01)
        else:
            loss = loss + host.fusion_regularization()
        loss.backward()
        grads_local = sum(_local(p.grad).numel() for p in params if p.grad is not None)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    moments = sum(
        _local(v).numel()
        for state in optimizer.state.values()
        for key, v in state.items()
        if key in ("exp_avg", "exp_avg_sq")
    )
    mine = {
        "rank": accelerator.process_index,
        "total_params": sum(p.numel() for p in params),
        "local_params": sum(_local(p).numel() for p in params),
        "local_grads": grads_local,
        "local_moments": moments,
        "rss_before_mib": before_kib / 1024,
        "rss_after_mib": _proc_kib("VmRSS") / 1024,  # the state alive, between steps
        "peak_rss_mib": _proc_kib("VmHWM") / 1024,
    }
    everyone = [None] * accelerator.num_processes
    dist.all_gather_object(everyone, mine)
    if accelerator.is_main_process:
        print(RESULT + json.dumps({"kind": kind, "processes": everyone}), flush=True)


def _local(tensor):
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def launch(kind: str, args) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(args.processes), "-m", MODULE, "--measure", kind]
    command += ["--hidden", str(args.hidden), "--layers", str(args.layers)]
    command += ["--steps", str(args.steps)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    # Large buffers (all-gathers, reduce-scatters) mmapped and unmapped when freed: otherwise
    # glibc keeps freed heap pages and RSS measures its fragmentation, not the state.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(64 * 1024))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"error: the {kind} launch failed:\n{done.stderr[-12000:]}")
    return json.loads(lines[-1][len(RESULT) :])


def report(results: list[dict], hidden: int, layers: int) -> str:
    rows = [
        f"fusion over 3 adapters, hidden {hidden}, {layers} layers, "
        f"{results[0]['processes'][0]['total_params']:,} trainable parameters",
        "| mode | rank | local params | local grads | local moments | state MiB (16 B/param) "
        "| RSS before MiB | RSS after MiB | after - before MiB | peak - before MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    held_by, peak_by = {}, {}
    for result in results:
        for p in result["processes"]:
            state = 4 * (p["local_params"] + p["local_grads"] + p["local_moments"]) / MIB
            held = p["rss_after_mib"] - p["rss_before_mib"]
            delta = p["peak_rss_mib"] - p["rss_before_mib"]
            held_by.setdefault(result["kind"], []).append(held)
            peak_by.setdefault(result["kind"], []).append(delta)
            rows.append(
                f"| {result['kind']} | {p['rank']} | {p['local_params']:,} | {p['local_grads']:,} "
                f"| {p['local_moments']:,} | {state:.1f} | {p['rss_before_mib']:.1f} "
                f"| {p['rss_after_mib']:.1f} | {held:.1f} | {delta:.1f} |"
            )
    if {"ddp", "fsdp"} <= set(held_by):
        for label, by in (("held between steps", held_by), ("peak", peak_by)):
            ratio = max(by["fsdp"]) / max(max(by["ddp"]), 1e-9)
            rows.append(f"fsdp/ddp, largest per-process growth over 'before', {label}: {ratio:.2f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--measure", choices=["ddp", "fsdp"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        measure(args.measure, args.hidden, args.layers, args.steps)
        return
    results = [launch(kind, args) for kind in ("ddp", "fsdp")]
    print(report(results, args.hidden, args.layers))


if __name__ == "__main__":
    main()
