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
from safetensors.torch import save_file  # noqa: E402

from advfusion_cli.workflows import sharding, trainer  # noqa: E402
from advfusion_cli.workflows.execute import causal_lm_loss  # noqa: E402


def train_fsdp(accelerator, name, adapters, run, checkpointing=False, stop=None):
    trainable = fp.fused_model(name, adapters, checkpointing)
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
    trainable = fp.fused_model("adapterfusion", adapters)
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
        with layout.unsharded(prepared), torch.no_grad():
            prepared.eval()
            logits = prepared(**fp.probe_batch()).logits
            if rank == 0:
                torch.save(logits, out / f"logits-{name}.pt")
                trainable.export(out / f"export-{name}")
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


def run_cli(args_file: Path, out: Path, rank: int) -> None:
    from advfusion_cli.cli.app import main

    try:
        main(json.loads(args_file.read_text()))
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    (out / f"cli-exit-rank{rank}.json").write_text(json.dumps(code))


def main() -> None:
    mode, out, adapter_root = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    adapters = {language: adapter_root / language for language in fp.LANGUAGES}
    accelerator = Accelerator(cpu=True)
    if mode == "parity":
        parity(accelerator, out, adapters)
        if len(sys.argv) > 4:
            run_cli(Path(sys.argv[4]), out, accelerator.process_index)
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
