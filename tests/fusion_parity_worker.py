"""Run under `torchrun --nproc_per_node 2` by tests/test_sharding_processes.py (not a test).

parity OUT ADAPTERS [CLI_ARGS_JSON]: AdapterFusion and AdvFusion, each under FSDP then DDP,
    and AdapterFusion under FSDP with gradient checkpointing; writes the gathered weights,
    each process's shard element counts, the FSDP export and logits; then saved weights
    loaded back into the shards (a resume after Ctrl-C, a keep-best reload). Then, given
    CLI_ARGS_JSON, runs `advfusion ARGS` in this launch (both processes), as
    `accelerate launch -m advfusion_cli ARGS` would.
kill OUT ADAPTERS: FSDP AdapterFusion into OUT/run; process 1 kills itself (SIGKILL) right
    after optimizer step 3 (the step-2 checkpoint is on disk).
resume OUT ADAPTERS: the same run again, resuming; writes its final weights.
splits OUT ADAPTERS: each method of fp.SPLIT_METHODS with batch 4 on each process under DDP,
    the fusions also under FSDP, and AdapterFusion under FSDP with batch 2 x grad_accum 2
    counting its reduce-scatters; writes the weights and each run's metrics.
bf16 OUT ADAPTERS: AdapterFusion under FSDP at batch 4 per process with bf16 autocast;
    writes the weights and the dtypes it computed with, reduced in and kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fusion_parity as fp  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from advfusion_cli.workflows import checkpoint as ckpt  # noqa: E402
from advfusion_cli.workflows import sharding, trainer  # noqa: E402
from advfusion_cli.workflows.execute import causal_lm_loss  # noqa: E402


def train_fsdp(accelerator, name, adapters, run, checkpointing=False, stop=None):
    trainable = fp.fused_model(name, adapters, checkpointing, sharded=True)
    layout, prepared = sharding.prepare_training(sharding.FSDP, accelerator, trainable)
    params = trainable.params  # now the sharded parameters
    loop = fp.trainer(accelerator, prepared, trainable, run, layout, stop)
    results = fp.schedule(name)(loop, trainable, fp.phases(name, accelerator.num_processes))
    return trainable, layout, prepared, params, results[-1].optimizer_state


@contextlib.contextmanager
def after_step(hook):
    trainer.AFTER_STEP_HOOKS.append(hook)
    try:
        yield
    finally:
        trainer.AFTER_STEP_HOOKS.remove(hook)


def rising_eval_loss(model, batch, train):
    """The real loss for training; for evaluation a loss that rises with every call, so the
    first evaluation (step 2) is the best one and keep-best must reload its weights."""
    loss, count = causal_lm_loss(model, batch, train)
    if train:
        return loss, count
    rising_eval_loss.calls += 1
    return torch.full_like(loss, float(rising_eval_loss.calls)), count


rising_eval_loss.calls = 0


def restores(accelerator, out: Path, adapters) -> None:
    """Saved weights loaded back into the shards, the two ways a run does it:

    - resume: a Ctrl-C on process 1 after step 2 stops both processes at that step's
      checkpoint; the same run again resumes from it and ends where the uninterrupted FSDP
      run ends (fsdp-adapterfusion-resumed);
    - keep-best: with evaluations getting worse after step 2, the run ends on the weights it
      had at step 2 (fsdp-adapterfusion-best, against fsdp-adapterfusion-step2 gathered then).
    """
    rank = accelerator.process_index
    stop = trainer.StopRequest()

    def press_ctrl_c(phase: str, step: int) -> None:
        if step == 2 and rank == 1:
            stop.requested = True

    torch.manual_seed(0)
    with after_step(press_ctrl_c):
        try:
            train_fsdp(accelerator, "adapterfusion", adapters, out / "resume", stop=stop)
            raise AssertionError("the run was not interrupted")
        except trainer.TrainingInterrupted as interrupted:
            assert interrupted.step == 2, interrupted.step
    if rank == 0:  # what the interrupted run's checkpoint holds, for the test to read
        (saved,) = (out / "resume").rglob("step-000002")
        with safe_open(str(saved / ckpt.MOMENTS_FILE), framework="pt") as moments:
            shapes = {name: moments.get_slice(name).get_shape() for name in moments.keys()}  # noqa: SIM118
        listing = {"files": sorted(p.name for p in saved.iterdir()), "moments": shapes}
        (out / "resume-checkpoint.json").write_text(json.dumps(listing))
    torch.manual_seed(0)
    *_, params, _ = train_fsdp(accelerator, "adapterfusion", adapters, out / "resume")
    weights = gathered(params)
    if rank == 0:
        save_file(weights, str(out / "fsdp-adapterfusion-resumed.safetensors"))

    at_step_2 = {}

    def keep_step_2(phase: str, step: int) -> None:
        if step == 2:  # every process joins the gather
            at_step_2.update(gathered(live["params"]))

    live = {}
    torch.manual_seed(0)
    trainable = fp.fused_model("adapterfusion", adapters, sharded=True)
    layout, prepared = sharding.prepare_training(sharding.FSDP, accelerator, trainable)
    live["params"] = trainable.params
    loop = fp.trainer(accelerator, prepared, trainable, out / "best", layout, loss=rising_eval_loss)
    phases = fp.phases("adapterfusion", accelerator.num_processes)
    for phase in phases:
        phase.settings = dataclasses.replace(phase.settings, keep_best=True)
    with after_step(keep_step_2):
        (result,) = fp.schedule("adapterfusion")(loop, trainable, phases)
    assert result.best_step == 2, result.best_step
    weights = gathered(trainable.params)
    if rank == 0:
        save_file(weights, str(out / "fsdp-adapterfusion-best.safetensors"))
        save_file(at_step_2, str(out / "fsdp-adapterfusion-step2.safetensors"))
    accelerator.wait_for_everyone()


def gathered(params) -> dict[str, torch.Tensor]:
    return {name: sharding.full_tensor(p).contiguous() for name, p in params.items()}


def shard_counts(params, optimizer_state) -> dict:
    local = sum(p.to_local().numel() for p in params.values())
    total = sum(p.numel() for p in params.values())
    moments = sum(
        value.to_local().numel()
        for per_param in optimizer_state.values()  # the live optimizer.state, keyed by parameter
        for key, value in per_param.items()
        if key in ("exp_avg", "exp_avg_sq")
    )
    return {
        "local_params": local,
        "total_params": total,
        "local_moments": moments,
    }


def parity(accelerator, out: Path, adapters) -> None:
    rank = accelerator.process_index
    counts = {}
    for name in ("adapterfusion", "advfusion"):
        torch.manual_seed(0)
        trainable, layout, prepared, params, state = train_fsdp(
            accelerator, name, adapters, out / f"fsdp-{name}"
        )
        counts[name] = shard_counts(params, state)
        weights = gathered(params)
        if rank == 0:
            save_file(weights, str(out / f"fsdp-{name}.safetensors"))
        with torch.no_grad():  # a sharded forward: both processes run it
            prepared.eval()
            logits = prepared(**fp.probe_batch()).logits
        export = layout.exporter(trainable)
        if rank == 0:
            torch.save(logits, out / f"logits-{name}.pt")
        export(out / f"export-{name}" if rank == 0 else None)  # both join each gather
        accelerator.wait_for_everyone()

        torch.manual_seed(0)
        trainable = fp.fused_model(name, adapters)
        prepared = accelerator.prepare(trainable.model)  # DDP
        loop = fp.trainer(accelerator, prepared, trainable, out / f"ddp-{name}")
        fp.schedule(name)(loop, trainable, fp.phases(name, accelerator.num_processes))
        if rank == 0:
            save_file(fp.fusion_weights(trainable), str(out / f"ddp-{name}.safetensors"))
        accelerator.wait_for_everyone()
    (out / f"counts-rank{rank}.json").write_text(json.dumps(counts))

    torch.manual_seed(0)
    *_, params, _ = train_fsdp(accelerator, "adapterfusion", adapters, out / "ckpt", True)
    weights = gathered(params)
    if rank == 0:
        save_file(weights, str(out / "fsdp-adapterfusion-checkpointing.safetensors"))
    restores(accelerator, out, adapters)


def count_reduce_scatters(counter: list[int]) -> None:
    """Count FSDP's gradient reduce-scatters (torch.distributed.reduce_scatter_single)."""
    import torch.distributed as dist

    original = dist.reduce_scatter_single

    def counted(*args, **kwargs):
        counter[0] += 1
        return original(*args, **kwargs)

    dist.reduce_scatter_single = counted


def splits(accelerator, out: Path, adapters) -> None:
    rank, world = accelerator.process_index, accelerator.num_processes
    per_process = fp.SPLIT_GLOBAL_BATCH // world
    runs = [(name, "ddp", per_process, 1) for name in fp.SPLIT_METHODS]
    runs += [(name, "fsdp", per_process, 1) for name in ("adapterfusion", "advfusion")]
    runs += [("adapterfusion", "fsdp", per_process // 2, 2)]
    reduce_scatters = [0]
    count_reduce_scatters(reduce_scatters)
    counts = {}
    for name, mode, batch, accumulation in runs:
        label = f"{mode}-{name}-{batch}x{accumulation}"
        torch.manual_seed(0)
        trainable = fp.split_trainable(name, adapters, sharded=mode == "fsdp")
        if mode == "fsdp":
            layout, prepared = sharding.prepare_training(sharding.FSDP, accelerator, trainable)
        else:
            layout, prepared = None, accelerator.prepare(trainable.model)
        loop = fp.trainer(accelerator, prepared, trainable, out / label, layout)
        before = reduce_scatters[0]
        fp.split_schedule(name)(loop, trainable, fp.split_phases(name, batch, accumulation))
        counts[label] = reduce_scatters[0] - before
        weights = gathered(trainable.params)
        if rank == 0:
            save_file(weights, str(out / f"{label}.safetensors"))
        accelerator.wait_for_everyone()
    (out / f"reduce-scatters-rank{rank}.json").write_text(json.dumps(counts))


class UnitMemoryWatch:
    """How many whole fusion units a process holds at once: FSDP units gathered at the same
    time outside a backward pass (FSDPParamGroup state changes), and FusionLayers alive with
    real (not meta, not sharded) parameters, over everything the process runs."""

    def __init__(self) -> None:
        import weakref

        from torch.distributed.fsdp._fully_shard._fsdp_param_group import FSDPParamGroup

        from advfusion_cli.engine.modules.fusion import FusionLayer

        self.gathered: set[int] = set()
        self.most_gathered = 0
        self.layers: weakref.WeakSet = weakref.WeakSet()
        self.most_whole_layers = 0
        to_unsharded, to_sharded = FSDPParamGroup._to_unsharded, FSDPParamGroup._to_sharded
        to_post_forward = FSDPParamGroup._to_sharded_post_forward
        watch = self

        def unsharded(group):
            to_unsharded(group)
            watch.gathered.add(id(group))
            if torch._C._current_graph_task_id() == -1:  # not in a backward pass
                watch.most_gathered = max(watch.most_gathered, len(watch.gathered))

        def sharded(group, original):
            original(group)
            watch.gathered.discard(id(group))

        FSDPParamGroup._to_unsharded = unsharded
        FSDPParamGroup._to_sharded = lambda group: sharded(group, to_sharded)
        FSDPParamGroup._to_sharded_post_forward = lambda group: sharded(group, to_post_forward)
        init = FusionLayer.__init__

        def counted_init(layer, *args, **kwargs):
            init(layer, *args, **kwargs)
            watch.layers.add(layer)
            whole = [m for m in watch.layers if _holds_whole_parameters(m)]
            watch.most_whole_layers = max(watch.most_whole_layers, len(whole))

        FusionLayer.__init__ = counted_init
        # Whole tensors gathered from shards onto this process (checkpoints, best weights,
        # export) alive at once: counted from sharding.full_tensor to each one's release.
        self.live_tensors = 0
        self.most_gathered_tensors = 0
        full_tensor = sharding.full_tensor

        def released() -> None:
            watch.live_tensors -= 1

        def counted_full_tensor(tensor, keep=True):
            whole = full_tensor(tensor, keep)
            if whole is not None and sharding.is_sharded(tensor):
                watch.live_tensors += 1
                watch.most_gathered_tensors = max(watch.most_gathered_tensors, watch.live_tensors)
                weakref.finalize(whole, released)
            return whole

        sharding.full_tensor = counted_full_tensor

    def report(self) -> dict:
        return {
            "most_gathered": self.most_gathered,
            "most_whole_layers": self.most_whole_layers,
            "most_gathered_tensors": self.most_gathered_tensors,
        }


def _holds_whole_parameters(layer) -> bool:
    return any(not p.is_meta and not sharding.is_sharded(p) for p in layer.parameters())


def bf16(accelerator, out: Path, adapters) -> None:
    """AdapterFusion under FSDP with bf16 autocast (launched with mixed_precision=bf16):
    the dtypes the units compute with, reduce in and keep, and the trained weights."""
    import torch.distributed as dist

    seen = {"compute": set(), "reduce": set()}
    original = dist.reduce_scatter_single

    def recorded(*args, **kwargs):
        seen["reduce"].add(str(kwargs["input"].dtype))
        return original(*args, **kwargs)

    dist.reduce_scatter_single = recorded
    torch.manual_seed(0)
    trainable = fp.split_trainable("adapterfusion", adapters, sharded=True)
    layout, prepared = sharding.prepare_training(sharding.FSDP, accelerator, trainable)
    for unit in layout.units:
        unit.query.register_forward_pre_hook(
            lambda module, args: seen["compute"].add(str(module.weight.dtype))
        )
    loop = fp.trainer(accelerator, prepared, trainable, out / "bf16", layout)
    per_process = fp.SPLIT_GLOBAL_BATCH // accelerator.num_processes
    results = fp.split_schedule("adapterfusion")(
        loop, trainable, fp.split_phases("adapterfusion", per_process, 1)
    )
    master = sorted({str(p.dtype) for p in trainable.params.values()})
    state = results[-1].optimizer_state.values()  # the live moments, keyed by parameter
    moments = sorted({str(v.dtype) for s in state for k, v in s.items() if k.startswith("exp")})
    weights = gathered(trainable.params)
    if accelerator.process_index == 0:
        save_file(weights, str(out / "fsdp-adapterfusion-bf16.safetensors"))
        report = {key: sorted(value) for key, value in seen.items()}
        report.update(master=master, moments=moments)
        (out / "bf16-dtypes.json").write_text(json.dumps(report))


def run_cli(args_file: Path, out: Path, rank: int) -> None:
    from advfusion_cli.cli.app import main

    watch = UnitMemoryWatch()

    try:
        main(json.loads(args_file.read_text()))
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    (out / f"cli-exit-rank{rank}.json").write_text(json.dumps(code))
    (out / f"cli-units-rank{rank}.json").write_text(json.dumps(watch.report()))


def main() -> None:
    mode, out, adapter_root = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    adapters = {language: adapter_root / language for language in fp.LANGUAGES}
    accelerator = Accelerator(cpu=True, mixed_precision="bf16" if mode == "bf16" else "no")
    if mode == "bf16":
        bf16(accelerator, out, adapters)
        return
    if mode == "parity":
        parity(accelerator, out, adapters)
        if len(sys.argv) > 4:
            run_cli(Path(sys.argv[4]), out, accelerator.process_index)
        return
    if mode == "splits":
        splits(accelerator, out, adapters)
        return
    if mode == "kill":

        def die(phase: str, step: int) -> None:
            if step == 3 and accelerator.process_index == 1:
                os.kill(os.getpid(), signal.SIGKILL)

        trainer.AFTER_STEP_HOOKS.append(die)
    torch.manual_seed(0)
    _, _, _, params, _ = train_fsdp(accelerator, "adapterfusion", adapters, out / "run")
    weights = gathered(params)
    if accelerator.process_index == 0:
        save_file(weights, str(out / "resumed.safetensors"))


if __name__ == "__main__":
    main()
