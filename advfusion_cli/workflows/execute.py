"""Running one planned stage: lock it, reuse or resume it, train its phases, export, record.

    lock runs/<id>/.lock -> job.yaml, env.json, status "running"
    -> load base + tokenizer -> method setup (what trains) -> encode data
    -> phases (the workflow decides what happens between them) -> final/ -> adapter store
    -> summary.json, status "finished"

An interruption (Ctrl-C, or a stop signal: then marked for a requeue) leaves status
"interrupted" and a checkpoint; any other failure leaves status "failed" with the message
(under several processes, the failing process's). The next identical command resumes either.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from advfusion_cli.spec.loading import dump_spec
from advfusion_cli.workflows import atomic, process_group, retention, sharding, stages, tracking
from advfusion_cli.workflows.identity import IDENTITY_FILE, identity_record, revisions
from advfusion_cli.workflows.methods import Trainable
from advfusion_cli.workflows.models import load_base
from advfusion_cli.workflows.optim import check_optimizer, paged_memory_mb, release_paged_buffers
from advfusion_cli.workflows.plan import RETRAIN, REUSE, PhasePlan, RunPlan
from advfusion_cli.workflows.preemption import StopRequest
from advfusion_cli.workflows.progress import PhaseProgress, peak_memory_mb, stderr_console
from advfusion_cli.workflows.runs import (
    FAILED,
    FINISHED,
    INTERRUPTED,
    RUNNING,
    RunDir,
    RunLock,
    environment_info,
    now_iso,
)
from advfusion_cli.workflows.task_data import StageData, StageEncoder, data_cache
from advfusion_cli.workflows.trainer import (
    LoopSettings,
    Phase,
    PhaseResult,
    Trainer,
    TrainingInterrupted,
)

# Extension/test hooks: called with (run plan, trainable) after setup and after training.
AFTER_SETUP_HOOKS: list[Callable[[RunPlan, Trainable], None]] = []
AFTER_TRAINING_HOOKS: list[Callable[[RunPlan, Trainable], None]] = []


@dataclass
class Session:
    """What every run of one command shares: the accelerator, the display, the stop
    request (Ctrl-C, stop signals)."""

    accelerator: object
    progress: PhaseProgress = field(default_factory=PhaseProgress)
    stop: StopRequest = field(default_factory=StopRequest)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process


def open_session(
    precision: str,
    report_to: Sequence[str] = (),
    workdir: Path | None = None,
    timeout_minutes: float | None = None,
) -> Session:
    """An accelerate session: bf16 autocast on CUDA (when supported), fp32 on CPU; with
    `report_to`, its trackers (a missing tracker package fails here, before any work); with
    `timeout_minutes`, the process group's collective timeout (training.timeout_minutes)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    trackers: dict = {}
    if report_to:
        tracking.check_installed(report_to)
        root = Path(workdir or "advfusion-runs")
        logs = ProjectConfiguration(
            project_dir=str(root), logging_dir=str(tracking.tensorboard_root(root))
        )
        trackers = {"log_with": list(report_to), "project_config": logs}
    if precision == "auto":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        precision = "bf16" if bf16 else "fp32"
    # cpu=True on machines without CUDA: under torchrun/`accelerate launch --multi_gpu` that
    # selects accelerate's multi-CPU (gloo) mode instead of N unrelated processes.
    with sharding.without_launcher_fsdp():  # FSDP is applied per run (workflows/sharding.py)
        accelerator = Accelerator(
            cpu=not torch.cuda.is_available(),
            mixed_precision="bf16" if precision == "bf16" else "no",
            kwargs_handlers=process_group.init_kwargs(timeout_minutes),
            **trackers,
        )
    return Session(accelerator, PhaseProgress(stderr_console()))


@dataclass
class RunOutcome:
    plan: RunPlan
    reused: bool
    final: Path
    store: Path | None = None
    trainable_params: int = 0
    total_params: int = 0
    elapsed_s: float = 0.0
    best_eval_loss: float | None = None
    peak_memory_mb: float = 0.0
    paged_memory_mb: float = 0.0  # paged optimizer state (CUDA managed memory), not in the peak
    resumed: bool = False
    phases: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # this session, in seconds
    distributed: str = "none"  # none | ddp | fsdp: how this session's processes trained


# run_phases(trainer, trainable, phases) -> results; the workflow's own schedule.
PhaseRunner = Callable[[Trainer, Trainable, list[Phase]], list[PhaseResult]]
Setup = Callable[[nn.Module], Trainable]


def causal_lm_loss(
    model: nn.Module, batch: dict[str, Tensor], train: bool
) -> tuple[Tensor, Tensor]:
    """Mean next-token loss over the labelled positions (training labels, or the completion
    only for evaluation), and how many positions were counted. Large vocabulary x tokens
    takes the chunked path (workflows.lm_loss) instead of materialising all logits."""
    from advfusion_cli.data.encoding import IGNORE_INDEX, completion_only_labels
    from advfusion_cli.workflows.lm_loss import next_token_loss

    labels = batch["labels"]
    if not train:
        labels = completion_only_labels(labels, batch["completion_mask"])
    loss = next_token_loss(model, batch["input_ids"], batch["attention_mask"], labels)
    counted = (labels[:, 1:] != IGNORE_INDEX).sum()
    return loss, counted


def loop_settings(run_plan: RunPlan, phase: PhasePlan, n_train: int, world: int) -> LoopSettings:
    """The loop's flat settings for one phase, from the stage's spec."""
    from advfusion_cli.workflows.plan import interval, phase_steps, steps_per_epoch

    training = run_plan.spec.training
    total = phase_steps(phase.budget, n_train, training, world)
    per_epoch = steps_per_epoch(n_train, training, world)
    return LoopSettings(
        learning_rate=phase.learning_rate,
        total_steps=total,
        batch_size=training.batch_size,
        grad_accumulation=training.grad_accum,
        weight_decay=training.weight_decay,
        schedule=training.scheduler,
        warmup_ratio=training.warmup_ratio,
        max_grad_norm=training.max_grad_norm,
        eval_every=interval(training.eval_every_steps, training.eval_every_epochs, per_epoch),
        save_every=interval(training.save_every_steps, training.save_every_epochs, per_epoch),
        eval_batch_size=training.batch_size,
        seed=training.seed,
        optimizer=training.optimizer,
        keep_best=training.keep_best,
        early_stopping_patience=training.early_stopping_patience,
        early_stopping_min_delta=training.early_stopping_min_delta,
        keep_checkpoints=training.keep_checkpoints,
    )


def reuse(run_plan: RunPlan, session: Session) -> RunOutcome:
    """A finished run: read its summary; re-publish its adapter if the store lost or changed it."""
    run = run_plan.run
    summary = _read_json(run.summary_json)
    if run_plan.store is not None and session.is_main:
        current = stages.find_adapter_at(run_plan.store)
        if current != run.id:
            stages.publish_adapter(run.final, run_plan.store, adapter_provenance(run_plan, summary))
    return RunOutcome(
        plan=run_plan,
        reused=True,
        final=run.final,
        store=run_plan.store,
        trainable_params=summary.get("trainable_params", 0),
        total_params=summary.get("total_params", 0),
        elapsed_s=summary.get("elapsed_s", 0.0),
        best_eval_loss=summary.get("best_eval_loss"),
        peak_memory_mb=summary.get("peak_memory_mb", 0.0),
        phases=summary.get("phases", []),
    )


def adapter_provenance(run_plan: RunPlan, summary: dict) -> dict:
    return {
        "run_id": run_plan.run.id,
        "run_dir": str(run_plan.run.path.resolve()),
        "language": run_plan.language,
        "kind": run_plan.spec.method.name,
        "base": run_plan.spec.model.name_or_path,
        "task": run_plan.spec.data.task,
        "best_eval_loss": summary.get("best_eval_loss"),
        "published": now_iso(),
        # a fusion reuses it only for this identity and these data
        **identity_record(run_plan.identity, run_plan.data_fingerprint),
    }


def _clear(run: RunDir) -> None:
    """--force: remove everything of the old run except the lock we hold."""
    for child in run.path.iterdir():
        if child.name == run.lock_file.name:
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def execute_run(
    run_plan: RunPlan, session: Session, setup: Setup, run_phases: PhaseRunner
) -> RunOutcome:
    """Train (or resume, or reuse) one planned run.

    A --force retrain loads everything it needs (base, tokenizer, stored adapters, data)
    before it clears the old run: a retrain that cannot start leaves the previous results
    exactly as they were.
    """
    run = run_plan.run
    if run_plan.state == REUSE or (run_plan.state != RETRAIN and run.is_finished()):
        return reuse(run_plan, session)
    accelerator = session.accelerator
    kind = sharding.resolve_distributed(
        run_plan.spec.training.distributed, accelerator.num_processes
    )
    check_optimizer(run_plan.spec.training.optimizer, kind)  # e.g. bitsandbytes under FSDP
    lock = RunLock(run) if session.is_main else None
    if lock is not None:
        lock.acquire()
    try:
        # stop signals are handled from here: a stop while loading ends at the first step
        with session.stop.listening(run_plan.spec.training.stop_signals):
            return _prepare_and_train(run_plan, session, setup, run_phases)
    finally:
        if lock is not None:
            lock.release()
        release_run_memory(session)


def _prepare_and_train(
    run_plan: RunPlan, session: Session, setup: Setup, run_phases: PhaseRunner
) -> RunOutcome:
    run, accelerator = run_plan.run, session.accelerator
    prepared = None
    if run_plan.state == RETRAIN:
        prepared = _prepare(run_plan, session, setup)  # fails before anything is removed
        if session.is_main:
            _clear(run)
            _start_records(run_plan, accelerator.num_processes)
    elif session.is_main:
        _start_records(run_plan, accelerator.num_processes)
    accelerator.wait_for_everyone()
    try:
        if prepared is None:
            prepared = _prepare(run_plan, session, setup)
        return _train(prepared, run_plan, session, run_phases)
    except TrainingInterrupted as stop:
        if session.is_main:
            how = {"requeue": True, "signal": stop.signal} if stop.requeue else {}
            run.write_status(INTERRUPTED, phase=stop.phase, step=stop.step, **how)
        raise
    except KeyboardInterrupt:
        if session.is_main:
            run.write_status(INTERRUPTED, error="stopped by a second Ctrl-C")
        raise
    except BaseException as err:
        # Under several processes this failure may only be another process's: say whose.
        elsewhere = process_group.failure_elsewhere()
        if elsewhere is None:
            process_group.record_failure(accelerator.process_index, err)
        if session.is_main:
            own = f"{type(err).__name__}: {err}"[:500]
            run.write_status(FAILED, error=elsewhere.message if elsewhere else own)
        if elsewhere is not None:
            raise process_group.PeerFailed(elsewhere) from None
        raise


def release_run_memory(session: Session) -> None:
    """Drop the accelerator's references to this run's model/optimizer and collect them, so
    the next run of the command loads its base into free memory (a 7B base is ~13.5 GB)."""
    session.accelerator.free_memory()  # clears its model/optimizer lists, gc, empties CUDA cache
    release_paged_buffers()  # bitsandbytes' page manager would keep them until the process ends


def _start_records(run_plan: RunPlan, world: int) -> None:
    run = run_plan.run
    run.path.mkdir(parents=True, exist_ok=True)
    atomic.write_text(run.job_yaml, dump_spec(run_plan.spec))
    record = identity_record(run_plan.identity, run_plan.data_fingerprint)
    atomic.write_json(run.path / IDENTITY_FILE, record)
    env = environment_info(world)
    env["revisions"] = revisions(run_plan.spec.model, run_plan.spec.data)
    previous = _read_json(run.env_json)
    if previous:
        env["first_started"] = previous.get("first_started", previous.get("created"))
        env["sessions"] = int(previous.get("sessions", 1)) + 1
    else:
        env["first_started"], env["sessions"] = env["created"], 1
    if run_plan.adapters:
        env["adapters"] = {
            language: {"folder": str(folder), "source": run_plan.adapter_sources.get(language)}
            for language, folder in run_plan.adapters.items()
        }
    atomic.write_json(run.env_json, env)
    run.write_status(RUNNING, started=now_iso())


def _record_revisions(run_plan: RunPlan, resolved: dict) -> None:
    env = _read_json(run_plan.run.env_json)
    if env:
        atomic.write_json(run_plan.run.env_json, {**env, "revisions": resolved})


def _read_json(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class _Prepared:
    """Everything a run loads before it trains: nothing here touches the run folder."""

    started: float
    timings: dict[str, float]
    tokenizer: object
    trainable: Trainable
    trainable_count: int
    total_count: int
    phase_data: list[StageData]


def _prepare(run_plan: RunPlan, session: Session, setup: Setup) -> _Prepared:
    """Load the base, tokenizer, method setup (stored adapters included) and the data."""
    from accelerate.utils import set_seed

    from advfusion_cli.engine import count_parameters

    accelerator, spec = session.accelerator, run_plan.spec
    started = time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    timings: dict[str, float] = {}
    set_seed(spec.training.seed)
    model, tokenizer = load_base(spec.model)
    trainable = setup(model)
    trainable_count, total_count = count_parameters(trainable.model)
    timings["load_model_s"] = time.perf_counter() - started
    for hook in AFTER_SETUP_HOOKS:
        hook(run_plan, trainable)

    with accelerator.main_process_first():  # the main process generates/downloads data first
        encoder = StageEncoder(spec.data, tokenizer, data_cache(spec))
        phase_data = [encoder.stage(p.train_languages, p.eval_languages) for p in run_plan.phases]
    timings["load_data_s"] = time.perf_counter() - started - timings["load_model_s"]
    return _Prepared(
        started, timings, tokenizer, trainable, trainable_count, total_count, phase_data
    )


def _train(
    prepared: _Prepared, run_plan: RunPlan, session: Session, run_phases: PhaseRunner
) -> RunOutcome:
    from accelerate.utils import set_seed

    from advfusion_cli.data.encoding import Collator

    accelerator, run, spec = session.accelerator, run_plan.run, run_plan.spec
    started, timings, tokenizer = prepared.started, prepared.timings, prepared.tokenizer
    trainable, phase_data = prepared.trainable, prepared.phase_data
    trainable_count, total_count = prepared.trainable_count, prepared.total_count
    world = accelerator.num_processes
    phases = [
        Phase(
            name=p.name,
            train=data.train,
            eval=data.eval,
            settings=loop_settings(run_plan, p, len(data.train), world),
            # the first progress line says what each evaluation costs (data.max_eval_records)
            description=f"{p.description} (eval: {len(data.eval)} records)",
        )
        for p, data in zip(run_plan.phases, phase_data, strict=True)
    ]
    if session.is_main:  # the hub commit the base actually came from
        _record_revisions(run_plan, revisions(spec.model, spec.data, trainable.model))
    layout, prepared = sharding.prepare_training(spec.training.distributed, accelerator, trainable)
    set_seed(spec.training.seed + accelerator.process_index)  # distinct dropout per process
    tracker = _run_tracker(run_plan, session, phases)
    trainer = Trainer(
        accelerator,
        prepared,
        trainable.params,
        causal_lm_loss,
        Collator.for_tokenizer(tokenizer, padding_side="right"),
        run,
        extra_loss=trainable.extra_loss,
        progress=session.progress,
        stop=session.stop,
        extra_state=trainable.extra_state,
        load_extra_state=trainable.load_extra_state,
        sharding=layout,
        tracker=tracker,
    )
    training_started = time.perf_counter()
    try:
        results = run_phases(trainer, trainable, phases)
    finally:
        if tracker is not None:
            tracker.finish()
    timings["train_s"] = time.perf_counter() - training_started
    for hook in AFTER_TRAINING_HOOKS:
        hook(run_plan, trainable)

    outcome = RunOutcome(
        plan=run_plan,
        reused=False,
        final=run.final,
        store=run_plan.store,
        trainable_params=trainable_count,
        total_params=total_count,
        resumed=any(r.resumed_from for r in results),
        distributed=layout.kind,
    )
    export_started = time.perf_counter()
    export = layout.exporter(trainable)
    if session.is_main:
        atomic.publish_dir(export, run.final)
    elif layout.exports_collectively:
        export(None)  # FSDP: join each tensor's gather while the main process writes it
    accelerator.wait_for_everyone()
    timings["export_s"] = time.perf_counter() - export_started
    outcome.elapsed_s = time.perf_counter() - started
    outcome.timings = {key: round(value, 3) for key, value in timings.items()}
    outcome.peak_memory_mb = peak_memory_mb()
    outcome.paged_memory_mb = paged_memory_mb()  # managed memory, not in peak_memory_mb
    outcome.best_eval_loss = results[-1].best_eval_loss
    outcome.phases = [_phase_summary(r, d) for r, d in zip(results, phase_data, strict=True)]
    if session.is_main:
        summary = _summary(outcome)
        atomic.write_json(run.summary_json, summary)
        if run_plan.store is not None:
            stages.publish_adapter(run.final, run_plan.store, adapter_provenance(run_plan, summary))
        if not spec.training.keep_optimizer_state:
            retention.drop_optimizer_states(run.checkpoints)
        run.write_status(FINISHED, finished=now_iso())
    return outcome


def _run_tracker(
    run_plan: RunPlan, session: Session, phases: list[Phase]
) -> tracking.RunTracker | None:
    """The run's tracker run (main process, when the spec asks for trackers)."""
    spec = run_plan.spec
    if not spec.training.report_to or not session.is_main:
        return None
    config = tracking.flat_config(spec.model_dump(mode="json"))
    config |= {"run.id": run_plan.run.id, "run.role": run_plan.role}
    return tracking.RunTracker(
        session.accelerator,
        run_plan.run,
        spec.training.report_to,
        spec.output.workdir,
        [(phase.name, phase.settings.total_steps) for phase in phases],
        config,
    )


def _phase_summary(result: PhaseResult, data: StageData) -> dict:
    return {
        "name": result.name,
        "steps": result.steps,
        "best_eval_loss": result.best_eval_loss,
        "best_step": result.best_step,
        "last_loss": result.last_loss,
        "tokens": result.tokens,
        "elapsed_s": round(result.elapsed_s, 3),
        "tokens_per_s": round(result.tokens / result.elapsed_s, 1) if result.elapsed_s else None,
        "examples": data.counts,
        "dropped": data.dropped,
        "truncated": data.truncated,
        "stopped_early": result.stop_reason is not None,
        "stop_reason": result.stop_reason or "step budget reached",
    }


def _summary(outcome: RunOutcome) -> dict:
    return {
        "run_id": outcome.plan.run.id,
        "role": outcome.plan.role,
        "language": outcome.plan.language,
        "target": outcome.plan.spec.data.target,
        "trainable_params": outcome.trainable_params,
        "total_params": outcome.total_params,
        "elapsed_s": round(outcome.elapsed_s, 3),
        "training_s": round(sum(p["elapsed_s"] for p in outcome.phases), 3),  # all sessions
        "timings": outcome.timings,
        "best_eval_loss": outcome.best_eval_loss,
        "peak_memory_mb": round(outcome.peak_memory_mb, 1),
        "paged_memory_mb": round(outcome.paged_memory_mb, 1),
        "distributed": outcome.distributed,
        "final": str(outcome.final),
        "store": str(outcome.store) if outcome.store else None,
        "phases": outcome.phases,
        "finished": now_iso(),
    }
