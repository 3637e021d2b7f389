"""Per-process fusion memory under DDP and FSDP over a run's stages, measured side by side.

    python -m advfusion_cli.bench.sharded_fusion [--hidden 2048 --layers 4 --processes 2]

starts `torchrun` twice (DDP, then FSDP) on a random llama of the given shape with three
random task adapters fused (AdapterFusion, full rank), built as the workflows build it (on
the meta device under FSDP). Each process measures its resident memory with the base and
adapters loaded ("before", no fusion yet), then the peak RSS of each stage: setup (fusion
built and prepared), training steps, evaluation (forwards), a checkpoint (whole weights and
moments streamed to files by the main process, one gathered tensor at a time) and the export. The fusion's share of a stage is its
peak minus "before" (the peak is reset between stages through /proc/self/clear_refs). Prints
one table with the FSDP/DDP ratios, and the exact local fusion-state element counts. CPU
(gloo) without CUDA, one GPU per process with it (RSS then misses GPU memory).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

MIB = 1024**2
RESULT = "RESULT "
MODULE = "advfusion_cli.bench.sharded_fusion"  # run again under torchrun
STAGES = ("setup", "steps", "eval", "checkpoint", "export")
DEVICE_STAGES = ("setup", "steps", "eval")  # on a GPU: device memory; the rest gathers to host


def _proc_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    """VmHWM back to the current RSS (Linux: 5 > /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def _base_with_adapters(hidden: int, layers: int, device):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from advfusion_cli.engine import AdapterConfig, attach_host

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
    return model, host


def measure(kind: str, hidden: int, layers: int, steps: int) -> None:
    """Under torchrun: one process's figures, printed by the main process for all."""
    import torch
    import torch.distributed as dist
    from accelerate import Accelerator

    from advfusion_cli.engine import FusionConfig
    from advfusion_cli.workflows import checkpoint as ckpt
    from advfusion_cli.workflows import sharding

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model, host = _base_with_adapters(hidden, layers, accelerator.device)
    gc.collect()
    before_kib = _proc_kib("VmRSS")
    peaks: dict[str, float] = {}

    def stage_done(name: str) -> None:
        gc.collect()
        dist.barrier()
        peaks[name] = (_proc_kib("VmHWM") - before_kib) / 1024
        _reset_peak()

    _reset_peak()
    host.fuse(["a", "b", "c"], FusionConfig(), on_meta=kind == sharding.FSDP)
    host.freeze_for_fusion_training()
    layout = sharding.for_run(kind, model)
    prepared = layout.prepare(accelerator, model)
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}  # sharded ones
    params = list(named.values())
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    stage_done("setup")

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
    stage_done("steps")

    with torch.no_grad():  # every process as many forwards (FSDP gathers unit by unit)
        prepared.eval()
        for _ in range(3):
            prepared(input_ids=ids)
        prepared.train()
    stage_done("eval")

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) if accelerator.is_main_process else None
        state, moments = layout.optimizer_parts(optimizer)
        # every process joins each gather; the main process streams the files as a run does
        ckpt.write_tensors(folder, layout.weight_entries(named), moments)
        if folder is not None:
            torch.save(state, folder / ckpt.STATE_FILE)
        del state, moments
        stage_done("checkpoint")
        trainable = SimpleNamespace(host=host, export=host.save_fusion)
        export = layout.exporter(trainable)
        if accelerator.is_main_process:
            export(Path(scratch) / "export")
        elif layout.exports_collectively:
            export(None)  # FSDP: join each tensor's gather
        del export
        stage_done("export")

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
        "stage_peaks_mib": peaks,  # each stage's peak RSS minus "before"
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


def fusion_share(process: dict, stages=STAGES) -> float:
    """The largest stage peak over "before" among `stages`: the fusion's share of the peak."""
    return max(process["stage_peaks_mib"][stage] for stage in stages)


def report(results: list[dict], hidden: int, layers: int) -> str:
    header = " | ".join(f"{stage} MiB" for stage in STAGES)
    rows = [
        f"fusion over 3 adapters, hidden {hidden}, {layers} layers, "
        f"{results[0]['processes'][0]['total_params']:,} trainable parameters; peak RSS of "
        "each stage minus the RSS with the base and adapters loaded (no fusion yet)",
        f"| mode | rank | local params | local moments | before MiB | {header} |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(STAGES),
    ]
    for result in results:
        for p in result["processes"]:
            cells = " | ".join(f"{p['stage_peaks_mib'][stage]:.1f}" for stage in STAGES)
            rows.append(
                f"| {result['kind']} | {p['rank']} | {p['local_params']:,} "
                f"| {p['local_moments']:,} | {p['rss_before_mib']:.1f} | {cells} |"
            )
    by_kind = {result["kind"]: result["processes"] for result in results}
    if {"ddp", "fsdp"} <= set(by_kind):
        for label, stages in (
            ("setup, steps, evaluation (device memory on a GPU)", DEVICE_STAGES),
            ("every stage, checkpoint and export included", STAGES),
        ):
            fsdp = max(fusion_share(p, stages) for p in by_kind["fsdp"])
            ddp = max(fusion_share(p, stages) for p in by_kind["ddp"])
            rows.append(
                f"fsdp/ddp fusion share of the peak, largest process, {label}: "
                f"{fsdp:.1f} / {ddp:.1f} MiB = {fsdp / max(ddp, 1e-9):.2f}"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=2048)
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
