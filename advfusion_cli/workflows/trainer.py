"""One readable training loop on accelerate, resumable bit for bit at any optimizer step.

    for each optimizer step:
        count the step's target tokens over its micro-batches and processes (one all-reduce)
        for each of `grad_accumulation` micro-batches (seeded order per epoch):
            backward(task loss summed over its targets / the step's global target count
                     (+ fusion regularizer / grad_accumulation))
        clip, optimizer step, schedule step
        log (metrics.jsonl, trackers); evaluate and keep the best weights; checkpoint;
        stop early when eval loss stopped improving; stop cleanly on Ctrl-C or a stop
        signal (workflows/preemption.py: checkpoint, then TrainingInterrupted)
    at the end: reload the best weights, write the phase's end state

Checkpoints are written only at optimizer-step boundaries, with the optimizer, scheduler,
RNG states and data position, so a resumed run continues exactly where it stopped. The loop
knows nothing about adapters or tasks: the workflow hands it the trainable parameters, a loss
function, a collator and the encoded examples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advfusion_cli.workflows import checkpoint as ckpt
from advfusion_cli.workflows.batching import (
    epoch_permutation,
    micro_batch_indices,
    micro_batches_per_epoch,
)
from advfusion_cli.workflows.lm_loss import IGNORE_INDEX
from advfusion_cli.workflows.optim import build_optimizer, build_scheduler, repage_state
from advfusion_cli.workflows.preemption import NO_STOP, REQUEUE, StopRequest
from advfusion_cli.workflows.progress import NullProgress, PhaseProgress, peak_memory_mb
from advfusion_cli.workflows.runs import RunDir
from advfusion_cli.workflows.sharding import FSDP, Replicated
from advfusion_cli.workflows.tracking import NullRunTracker

# loss_fn(model, batch, train) -> (mean loss over counted tokens, number of counted tokens).
# Training weights each micro-batch by `target_count(batch)` (what the mean is over), so a
# step's loss is the mean over all its targets however the global batch is split.
LossFn = Callable[[nn.Module, dict[str, Tensor], bool], tuple[Tensor, Tensor]]


def target_count(batch: dict[str, Tensor]) -> int:
    """How many targets a training batch's loss averages over: its labelled next-token
    positions (labels != -100 after the first); a batch without labels (a loss that is not
    per token) counts one per row. Counted on the collated (CPU) batch: no device sync."""
    labels = batch.get("labels")
    if labels is None:
        return len(batch["attention_mask"])
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def loss_sum(mean: Tensor, count: int) -> Tensor:
    """A mean loss back to its sum over `count` targets; 0 (with a zero gradient, still one
    forward and backward so collectives line up) for a micro-batch without targets."""
    if count == 0:
        return mean.nan_to_num(0.0) * 0.0
    return mean * count


# Called after every optimizer step with (phase name, step): an extension point that tests
# use to interrupt a run at an exact step.
AFTER_STEP_HOOKS: list[Callable[[str, int], None]] = []


@dataclass(frozen=True)
class LoopSettings:
    """The knobs of one training phase (flat values; the workflow maps the job spec here)."""

    learning_rate: float
    total_steps: int  # optimizer steps in this phase
    batch_size: int = 1  # per process
    grad_accumulation: int = 1
    weight_decay: float = 0.0
    schedule: str = "linear"  # linear | cosine | constant, each after linear warmup
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = 1.0
    eval_every: int | None = None  # optimizer steps; the phase's last step always evaluates
    save_every: int | None = None  # optimizer steps; the end of a phase is always saved
    eval_batch_size: int = 4
    keep_checkpoints: int = 2
    keep_best: bool = True  # reload the weights with the lowest eval loss at the end
    seed: int = 0
    optimizer: str = "auto"  # auto | adamw | paged_adamw_32bit
    early_stopping_patience: int | None = None  # evaluations without improvement; None = off
    early_stopping_min_delta: float = 0.0  # an improvement must beat the best by more than this


@dataclass
class Phase:
    """A stretch of training with its own data, schedule and checkpoints."""

    name: str
    train: Sequence[Any]
    eval: Sequence[Any]
    settings: LoopSettings
    description: str = ""


@dataclass
class PhaseResult:
    name: str
    steps: int
    best_eval_loss: float | None
    best_step: int | None
    last_loss: float | None
    tokens: int
    elapsed_s: float
    resumed_from: int | None = None
    # The optimizer's live per-parameter state (parameter -> moments), for the next phase.
    optimizer_state: dict | None = field(default=None, repr=False)
    stop_reason: str | None = None  # why the phase ended before its budget (early stopping)


class TrainingInterrupted(Exception):
    """Raised after a clean stop (Ctrl-C, a stop signal): the checkpoint to resume from is on
    disk. `requeue`: a stop signal (or the stop file) asked for it, on this process or
    another; `signal` names it when it reached this process."""

    def __init__(
        self, run: RunDir, phase: str, step: int, requeue: bool = False, signal: str | None = None
    ):
        super().__init__(f"interrupted at step {step} of phase '{phase}' in run {run.id}")
        self.run, self.phase, self.step = run, phase, step
        self.requeue, self.signal = requeue, signal


class Trainer:
    """Runs phases over one prepared model; the optimizer state may carry over between phases."""

    def __init__(
        self,
        accelerator,
        model: nn.Module,
        trainable: dict[str, nn.Parameter],
        loss_fn: LossFn,
        collate: Callable[[list[Any]], dict[str, Tensor]],
        run: RunDir,
        extra_loss: Callable[[], Tensor] | None = None,
        progress: PhaseProgress | None = None,
        stop: StopRequest | None = None,
        extra_state: Callable[[], dict] | None = None,
        load_extra_state: Callable[[dict], None] | None = None,
        sharding: Replicated | None = None,
        tracker: NullRunTracker | None = None,
    ):
        self.accelerator = accelerator
        self.model = model
        self.trainable = trainable
        self.loss_fn = loss_fn
        self.collate = collate
        self.run = run
        self.extra_loss = extra_loss
        self.progress = progress if accelerator.is_main_process and progress else NullProgress()
        self.stop = stop or StopRequest()
        self.extra_state = extra_state or dict
        self.load_extra_state = load_extra_state or (lambda state: None)
        self.sharding = sharding or Replicated()  # whole or FSDP-sharded trainable state
        self.world = accelerator.num_processes
        self.rank = accelerator.process_index
        self.is_main = accelerator.is_main_process
        self.tracker = tracker if self.is_main and tracker else NullRunTracker()

    # ---- the loop ------------------------------------------------------------------------

    def run_phase(self, phase: Phase, carry_optimizer: dict | None = None) -> PhaseResult:
        """Train one phase to its end (resuming from its last checkpoint if there is one).

        `carry_optimizer`: a previous phase's per-parameter optimizer state (its
        `PhaseResult.optimizer_state`; AdvFusion keeps phase 1's Adam moments for phase 2). It
        is handed over, not copied, and emptied here, so only one copy ever exists; a phase
        that resumes from its own checkpoint drops it before loading. The learning-rate
        schedule always starts over.
        """
        s = phase.settings
        params = list(self.trainable.values())
        sharded = self.sharding.kind == FSDP  # sharded parameters: torch AdamW
        optimizer = build_optimizer(params, s.optimizer, s.learning_rate, s.weight_decay, sharded)
        if carry_optimizer is not None:
            resuming = self._end_dir(phase).exists() or ckpt.latest_checkpoint(
                self._phase_dir(phase)
            )
            if not resuming:
                optimizer.state.update(carry_optimizer)  # same tensors, keyed by parameter
            carry_optimizer.clear()
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = s.learning_rate
        scheduler = build_scheduler(optimizer, s.schedule, s.total_steps, s.warmup_ratio)

        if self._end_dir(phase).exists():  # finished in an earlier session: take its end state
            pos = self._restore(self._end_dir(phase), optimizer, scheduler)
            return self._result(phase, pos, optimizer, resumed_from=pos.step, last_loss=None)
        pos, resumed_from = ckpt.LoopPosition(), None
        latest = ckpt.latest_checkpoint(self._phase_dir(phase))
        if latest is not None:
            pos = self._restore(latest, optimizer, scheduler)
            resumed_from = pos.step
        if self.is_main:  # forget metrics logged after the checkpoint we resume from
            self.run.rewind_metrics(
                lambda r, k=pos.step: r.get("phase") != phase.name or r.get("step", 0) <= k
            )
        self.tracker.resume(phase.name, pos.step)

        order = epoch_permutation(len(phase.train), s.seed, pos.epoch)
        self.model.train()
        self.progress.start(phase.name, phase.description, s.total_steps, pos.step)
        session_start, elapsed_before, saved_at = time.perf_counter(), pos.elapsed_s, pos.step
        last_loss = None
        if pos.step < s.total_steps and (level := self._stop_level()) != NO_STOP:
            self._interrupt(phase, pos, level)  # a stop while loading: this position is saved
        while pos.step < s.total_steps:
            window_start = time.perf_counter()
            order, loss, regularizer, tokens = self._accumulate_gradients(phase, pos, order)
            if s.max_grad_norm:
                self.accelerator.clip_grad_norm_(params, s.max_grad_norm)
            step_lr = optimizer.param_groups[0]["lr"]  # the rate this step used
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            pos.step += 1
            pos.tokens += tokens
            pos.elapsed_s = elapsed_before + time.perf_counter() - session_start
            last_loss = loss
            speed = tokens / (time.perf_counter() - window_start)
            self._log_step(phase, pos, loss, regularizer, step_lr, speed)

            is_last = pos.step == s.total_steps
            stopping_early = False
            if is_last or (s.eval_every and pos.step % s.eval_every == 0):
                self._evaluate_and_keep_best(phase, pos)
                stopping_early = not is_last and self._patience_ran_out(phase, pos)
            if not (is_last or stopping_early) and s.save_every and pos.step % s.save_every == 0:
                self._checkpoint(phase, pos, optimizer, scheduler)
                saved_at = pos.step
            for hook in AFTER_STEP_HOOKS:
                hook(phase.name, pos.step)
            if stopping_early:
                self.progress.note_stop(pos.stop_reason)
                break
            if not is_last and (level := self._stop_level()) != NO_STOP:
                if saved_at != pos.step:  # every process joins the checkpoint, then stops
                    self._checkpoint(phase, pos, optimizer, scheduler)
                self._interrupt(phase, pos, level)

        if s.keep_best and pos.best_step is not None and self._best_file(phase).exists():
            ckpt.load_weights_into(self._best_file(phase), self.trainable)
        self._save(self._phase_dir(phase), "end", optimizer, scheduler, pos)
        if self.is_main:  # the end state supersedes the step checkpoints
            ckpt.prune(self._phase_dir(phase), keep=-1)
        self.progress.finish(pos.best_eval_loss, pos.step)
        return self._result(phase, pos, optimizer, resumed_from, last_loss)

    def _accumulate_gradients(
        self, phase: Phase, pos: ckpt.LoopPosition, order: list[int]
    ) -> tuple[list[int], float, float | None, int]:
        """Forward/backward over one step's micro-batches; returns (order, loss, regularizer,
        tokens): loss is the step's global mean over target tokens (regularizer included),
        tokens the attention-mask tokens of every micro-batch on every process, regularizer
        None without an extra loss.

        One global batch, one gradient: the task loss of an optimizer step is the sum of the
        losses of all its target tokens (every micro-batch, every process) divided by their
        global count, so a step's result does not depend on how its batch is split. The count
        is gathered once per step, before the first backward; each micro-batch then backs
        its loss *sum* scaled by world / global count (DDP's and FSDP's gradient averaging
        divide by world again). The regularizer is added once per step, at its weight.
        """
        s = phase.settings
        micro_per_epoch = micro_batches_per_epoch(len(phase.train), s.batch_size, self.world)
        batches, counts = [], []
        for _ in range(s.grad_accumulation):
            if pos.index >= micro_per_epoch:  # next epoch, next seeded permutation
                pos.epoch, pos.index = pos.epoch + 1, 0
                order = epoch_permutation(len(phase.train), s.seed, pos.epoch)
            ids = micro_batch_indices(order, pos.index, s.batch_size, self.world, self.rank)
            batch = self.collate([phase.train[i] for i in ids])
            counts.append(target_count(batch))
            batches.append(self._to_device(batch))
            pos.index += 1
        global_targets = self._global_count(sum(counts))
        scale = self.world / max(global_targets, 1)
        # loss sum over target tokens, attention tokens, regularizer
        totals = torch.zeros(3, dtype=torch.float64, device=self.accelerator.device)
        for micro, (batch, count) in enumerate(zip(batches, counts, strict=True)):
            last = micro == s.grad_accumulation - 1
            with self._gradient_sync(last), self.accelerator.autocast():
                mean, _ = self.loss_fn(self.model, batch, True)
                summed = loss_sum(mean, count)
                objective = summed * scale
                if self.extra_loss is not None:
                    extra = self.extra_loss() / s.grad_accumulation
                    objective = objective + extra
                    totals[2] += extra.detach().double()
                self.accelerator.backward(objective)
            totals[0] += summed.detach().double()
            totals[1] += batch["attention_mask"].sum()
        if self.world > 1:
            totals = self.accelerator.reduce(totals, reduction="sum")
        regularizer = float(totals[2]) / self.world if self.extra_loss is not None else None
        loss = float(totals[0]) / max(global_targets, 1) + (regularizer or 0.0)
        return order, loss, regularizer, int(totals[1])

    def _global_count(self, local: int) -> int:
        """A step's target count summed over every process (one all-reduce per step)."""
        if self.world == 1:
            return local
        count = torch.tensor([local], dtype=torch.float64, device=self.accelerator.device)
        return int(self.accelerator.reduce(count, reduction="sum").item())

    def _gradient_sync(self, last: bool):
        """Gradients are averaged across processes only on the step's last micro-batch
        (DDP: no_sync; FSDP: no reduce-scatter until the last backward)."""
        return self.sharding.gradient_sync(self.accelerator, self.model, last)

    def _log_step(
        self,
        phase: Phase,
        pos: ckpt.LoopPosition,
        loss: float,
        regularizer: float | None,
        lr: float,
        tokens_per_s: float,
    ) -> None:
        micro_per_epoch = micro_batches_per_epoch(
            len(phase.train), phase.settings.batch_size, self.world
        )
        record = {
            "phase": phase.name,
            "step": pos.step,
            "epoch": round(pos.epoch + pos.index / micro_per_epoch, 4),
            "loss": round(loss, 6),
            "lr": lr,
            "tokens_per_s": round(tokens_per_s, 1),
            "tokens": pos.tokens,
            "elapsed_s": round(pos.elapsed_s, 3),
            "peak_memory_mb": round(peak_memory_mb(), 1),
        }
        if regularizer is not None:  # fusion runs: the regularizer's share of the loss
            record["regularizer"] = round(regularizer, 6)
        if self.is_main:
            self.run.log(record)
            self.tracker.log_step(record)
        self.progress.update(pos.step, record)

    # ---- evaluation ----------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, examples: Sequence[Any], batch_size: int) -> float | None:
        """Token-weighted mean loss (the loss function's eval labels: the completion only),
        over all processes' shares of the examples."""
        if not examples:
            return None
        # The unwrapped model: processes hold different numbers of eval batches, so the
        # forward must not run DDP's collectives. Under FSDP each unit is gathered for its
        # own forward (one at a time), so there every process runs as many batches.
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        mine = list(range(self.rank, len(examples), self.world))
        chunks = [mine[start : start + batch_size] for start in range(0, len(mine), batch_size)]
        counted = len(chunks)
        if self.sharding.forward_communicates:  # FSDP: every process runs as many forwards
            rounds = math.ceil(math.ceil(len(examples) / self.world) / batch_size)
            chunks += [chunks[-1] if chunks else [0]] * (rounds - counted)  # not counted
        totals = torch.zeros(2, dtype=torch.float64, device=self.accelerator.device)
        for number, indices in enumerate(chunks):
            batch = self._to_device(self.collate([examples[i] for i in indices]))
            with self.accelerator.autocast():
                loss, count = self.loss_fn(model, batch, False)
            if number < counted:
                totals[0] += loss.double() * count
                totals[1] += count
        if self.world > 1:
            totals = self.accelerator.reduce(totals, reduction="sum")
        model.train(was_training)
        return float(totals[0] / totals[1]) if totals[1] > 0 else None

    def _evaluate_and_keep_best(self, phase: Phase, pos: ckpt.LoopPosition) -> None:
        eval_loss = self.evaluate(phase.eval, phase.settings.eval_batch_size)
        if eval_loss is None:
            return
        improved = pos.best_eval_loss is None or eval_loss < pos.best_eval_loss
        # Early stopping counts only drops larger than min_delta below the best so far.
        counts = pos.best_eval_loss is None or (
            eval_loss < pos.best_eval_loss - phase.settings.early_stopping_min_delta
        )
        pos.evals_without_improvement = 0 if counts else pos.evals_without_improvement + 1
        if improved:
            pos.best_eval_loss, pos.best_step = eval_loss, pos.step
            entries = self.sharding.weight_entries(self.trainable)
            # every process joins (one gather per tensor); the main process writes
            ckpt.save_weights(self._best_file(phase) if self.is_main else None, entries)
        self.accelerator.wait_for_everyone()
        if self.is_main:
            record = {"phase": phase.name, "step": pos.step, "eval_loss": round(eval_loss, 6)}
            self.run.log({**record, "best": improved})
            self.tracker.log_eval(record)
        self.progress.note_eval(pos.step, eval_loss, improved)

    def _patience_ran_out(self, phase: Phase, pos: ckpt.LoopPosition) -> bool:
        """After an evaluation: whether early stopping ends the phase here (the reason goes
        into the position, so a finished phase still tells it after a restart)."""
        s = phase.settings
        patience = s.early_stopping_patience
        if patience is None or pos.evals_without_improvement < patience:
            return False
        delta = (
            f" by more than {s.early_stopping_min_delta:g}" if s.early_stopping_min_delta else ""
        )
        pos.stop_reason = (
            f"early stopping at step {pos.step}/{s.total_steps}: eval loss did not improve"
            f"{delta} in {patience} evaluation{'s' if patience > 1 else ''} "
            f"(best {pos.best_eval_loss:.4f} at step {pos.best_step})"
        )
        return True

    # ---- checkpoints ---------------------------------------------------------------------

    def _phase_dir(self, phase: Phase) -> Path:
        return self.run.checkpoints / phase.name

    def _end_dir(self, phase: Phase) -> Path:
        return self._phase_dir(phase) / "end"

    def _best_file(self, phase: Phase) -> Path:
        return self.run.best / phase.name / ckpt.WEIGHTS_FILE

    def _checkpoint(self, phase: Phase, pos, optimizer, scheduler) -> None:
        name = ckpt.checkpoint_name(pos.step)
        keep = phase.settings.keep_checkpoints
        self._save(self._phase_dir(phase), name, optimizer, scheduler, pos, keep)

    def _save(self, parent: Path, name: str, optimizer, scheduler, pos, keep: int = 0) -> None:
        """Every process writes its RNG state; the main process writes the rest and publishes."""
        if self.is_main:
            ckpt.begin(parent, name)
        self.accelerator.wait_for_everyone()
        tmp = ckpt.pending(parent, name)
        ckpt.write_rng(tmp, self.rank)
        weights = self.sharding.weight_entries(self.trainable)
        optimizer_state, moments = self.sharding.optimizer_parts(optimizer)
        # every process joins (one gather per tensor); the main process streams the files
        ckpt.write_tensors(tmp if self.is_main else None, weights, moments)
        self.accelerator.wait_for_everyone()
        if self.is_main:
            extra = self.extra_state()
            ckpt.write_main_state(tmp, optimizer_state, scheduler, pos, extra)
            ckpt.publish(tmp, parent, name)
            ckpt.prune(parent, keep)
        self.accelerator.wait_for_everyone()

    def _restore(self, folder: Path, optimizer, scheduler) -> ckpt.LoopPosition:
        ckpt.load_weights_into(folder / ckpt.WEIGHTS_FILE, self.trainable)
        state = ckpt.read_state(folder)
        if state.get("optimizer") is not None:  # None: dropped once the run finished
            params = list(self.trainable.values())
            saved = ckpt.with_moments(folder, state["optimizer"], params)
            optimizer.load_state_dict(self.sharding.local_optimizer_state(saved, params))
            repage_state(optimizer)  # a paged optimizer's state back into paged buffers
        scheduler.load_state_dict(state["scheduler"])
        self.load_extra_state(state.get("extra", {}))
        rng = ckpt.read_rng(folder, self.rank)
        if rng is not None:
            ckpt.set_rng_state(rng)
        return ckpt.LoopPosition.from_dict(state["position"])

    # ---- helpers -------------------------------------------------------------------------

    def _to_device(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        device = self.accelerator.device
        return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}

    def _interrupt(self, phase: Phase, pos: ckpt.LoopPosition, level: int) -> None:
        self.progress.stop()
        requeue = level == REQUEUE
        raise TrainingInterrupted(self.run, phase.name, pos.step, requeue, self.stop.signal_name)

    def _stop_level(self) -> int:
        """Signals reach processes at different times (or only one): one all-reduce per step
        makes every process see the highest request (Ctrl-C: 1, a stop signal: 2)."""
        level = self.stop.level()
        # [asked Ctrl-C, asked a requeue] per process, summed over processes
        flags = torch.tensor(
            [float(level != NO_STOP), float(level == REQUEUE)], device=self.accelerator.device
        )
        if self.world > 1:
            flags = self.accelerator.reduce(flags, reduction="sum")
        return REQUEUE if flags[1].item() > 0 else (NO_STOP if flags[0].item() == 0 else 1)

    def _result(self, phase, pos, optimizer, resumed_from, last_loss) -> PhaseResult:
        return PhaseResult(
            name=phase.name,
            steps=pos.step,
            best_eval_loss=pos.best_eval_loss,
            best_step=pos.best_step,
            last_loss=last_loss,
            tokens=pos.tokens,
            elapsed_s=pos.elapsed_s,
            resumed_from=resumed_from,
            optimizer_state=optimizer.state,
            stop_reason=pos.stop_reason,
        )
