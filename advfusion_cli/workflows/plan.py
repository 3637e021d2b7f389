"""What a command will do, worked out before any weights load; `--dry-run` prints it and stops.

A plan is the list of runs in execution order (language adapters first, then the fusion),
each with its run id, whether it is new, resumed, reused or retrained, its phases with their
step counts and data, and where its results go. The workflows execute the same plan, so a
dry run shows exactly what the real run will do.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from advfusion_cli.errors import UserError
from advfusion_cli.spec.loading import dump_spec
from advfusion_cli.spec.methods import AdvFusionMethod, Budget
from advfusion_cli.spec.names import EMBEDDED_MODEL
from advfusion_cli.spec.schema import DataSpec, JobSpec, OutputSpec, TrainingSpec
from advfusion_cli.workflows import checkpoint as ckpt
from advfusion_cli.workflows import identity as run_identity
from advfusion_cli.workflows import stages
from advfusion_cli.workflows.batching import micro_batches_per_epoch, steps_for_epochs
from advfusion_cli.workflows.imported import imported_adapter, imported_from
from advfusion_cli.workflows.runs import RunDir, Workdir
from advfusion_cli.workflows.task_data import count_examples, data_cache, data_fingerprint

NEW, RESUME, REUSE, RETRAIN = "new", "resume", "reuse", "retrain"


@dataclass
class PhasePlan:
    name: str  # adapter | fusion | phase1-masked | phase2-restored
    description: str
    train_languages: list[str]
    eval_languages: list[str]
    budget: Budget
    learning_rate: float
    steps: int
    train_examples: int
    eval_examples: int


@dataclass
class RunPlan:
    role: str  # "adapter" or "fusion"
    spec: JobSpec  # the stage's own spec, saved as the run's job.yaml
    run: RunDir
    state: str  # new | resume | reuse | retrain
    note: str
    phases: list[PhasePlan]
    language: str | None = None  # adapter runs
    store: Path | None = None  # adapter runs: the adapter's folder in the store
    adapters: dict[str, Path] = field(default_factory=dict)  # fusion runs, in slot order
    adapter_sources: dict[str, str] = field(default_factory=dict)
    identity: dict = field(default_factory=dict)  # what makes the run this run (identity.json)
    data_fingerprint: str | None = None  # digest of the examples it reads (identity.json)


@dataclass
class Plan:
    command: str
    spec: JobSpec
    workdir: Workdir
    runs: list[RunPlan]
    reused_adapters: list[stages.StoredAdapter] = field(default_factory=list)
    world_size: int = 1


def world_size() -> int:
    """Processes in this launch (`accelerate launch --num_processes N` sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def phase_steps(budget: Budget, n_train: int, training: TrainingSpec, world: int) -> int:
    if budget.steps is not None:
        return budget.steps
    return steps_for_epochs(budget.epochs, n_train, training.batch_size, training.grad_accum, world)


def steps_per_epoch(n_train: int, training: TrainingSpec, world: int) -> int:
    micro = micro_batches_per_epoch(n_train, training.batch_size, world)
    return max(1, -(-micro // training.grad_accum))


def interval(steps: int | None, epochs: float | None, per_epoch: int) -> int | None:
    """An eval/save interval in optimizer steps, from steps or a fraction of an epoch."""
    if steps is not None:
        return steps
    if epochs is not None:
        return max(1, round(epochs * per_epoch))
    return None


def run_state(run: RunDir, force: bool, phases: list[str]) -> tuple[str, str]:
    """(state, note) of a run folder: reuse a finished run, resume an interrupted one."""
    if run.is_finished():
        return (RETRAIN, "finished earlier; --force retrains it") if force else (REUSE, "finished")
    if not run.path.exists():
        return NEW, ""
    if force:
        return RETRAIN, "unfinished; --force starts it over"
    position = latest_position(run, phases)
    if position is None:
        return NEW, "started before but has no checkpoint yet"
    phase, step = position
    return RESUME, f"from step {step} of phase {phase}"


def data_state(run: RunDir, state: str, note: str, fingerprint: str | None) -> tuple[str, str]:
    """A finished or resumable run whose recorded examples differ from today's: retrained
    from the start (resuming would mix two datasets, reusing would serve a stale result)."""
    if state not in (REUSE, RESUME):
        return state, note
    recorded = run_identity.read_data_fingerprint(run.path / run_identity.IDENTITY_FILE)
    if not run_identity.data_changed(recorded, fingerprint):
        return state, note
    when = "it was trained" if state == REUSE else "its checkpoint"
    return RETRAIN, f"data changed since {when}: its examples differ"


def latest_position(run: RunDir, phases: list[str]) -> tuple[str, int | str] | None:
    """The furthest checkpoint of a run, phases in order: (phase, step) or (phase, 'end')."""
    found = None
    for phase in phases:
        folder = run.checkpoints / phase
        if (folder / "end").is_dir():
            found = (phase, "end")
            continue
        latest = ckpt.latest_checkpoint(folder)
        if latest is not None:
            found = (phase, int(latest.name.split("-")[1]))
        break
    return found


def model_fingerprint(spec: JobSpec) -> dict | None:
    """The base's fingerprint from its config alone (no weights); None if it cannot be read."""
    from types import SimpleNamespace

    from transformers import AutoConfig

    from advfusion_cli.engine import base_fingerprint
    from advfusion_cli.workflows.models import model_source

    try:
        source = model_source(spec.model.name_or_path)
        config = AutoConfig.from_pretrained(source, revision=spec.model.revision)
    except (OSError, ValueError, KeyError):
        return None
    return base_fingerprint(SimpleNamespace(config=config))


# ---- plans per command ----------------------------------------------------------------------


def _adapter_run(
    spec: JobSpec,
    language: str,
    workdir: Workdir,
    force: bool,
    counts: dict,
    run_name: str | None,
    fingerprint: str | None = None,
) -> RunPlan:
    stage = stages.adapter_stage_spec(spec, language)
    wanted = stages.identity(stage)
    run_id = run_name or stages.run_id_for(stage, language)
    run = workdir.run(run_id)
    check_identity(run, wanted, force)
    if fingerprint is None:
        fingerprint = data_fingerprint(stage.data, [language], data_cache(spec))
    state, note = data_state(run, *run_state(run, force, ["adapter"]), fingerprint)
    world = world_size()
    if state == RESUME:
        run_identity.check_process_count(run, world)
    match = stages.match_adapter(workdir, stage, language, stage.method.name, wanted, fingerprint)
    mismatch = match.mismatch
    source = imported_from(stages.store_folder(workdir, stage, language, stage.method.name))
    if mismatch and source:  # an imported adapter has no training spec to compare
        mismatch = f"stored {language} adapter was imported from {source}; it is kept"
    if mismatch:
        note = "; ".join(filter(None, [mismatch, note]))
    n_train = counts[language].get("train", 0)
    budget = stage.training.budget
    phase = PhasePlan(
        name="adapter",
        description=f"{language} {stage.method.name}",
        train_languages=[language],
        eval_languages=[language],
        budget=budget,
        learning_rate=stage.training.lr_for("adapter"),
        steps=phase_steps(budget, n_train, stage.training, world),
        train_examples=n_train,
        eval_examples=counts[language].get("validation", 0),
    )
    store = match.stored.folder if match.stored is not None else match.slot
    return RunPlan(
        "adapter",
        stage,
        run,
        state,
        note,
        [phase],
        language=language,
        store=store,
        identity=wanted,
        data_fingerprint=fingerprint,
    )


def check_identity(run: RunDir, wanted: dict, force: bool) -> None:
    """Refuse a run folder (named by output.run_name) that holds a different job."""
    run_identity.check_named_run(run, wanted, force)


def plan_adapters(command: str, spec: JobSpec, force: bool) -> Plan:
    """One adapter run per language of `spec.data.languages` (train-adapters)."""
    workdir = Workdir(spec.output.workdir)
    languages = list(spec.data.languages)
    counts = count_examples(spec.data, languages, data_cache(spec))
    runs = []
    for language in languages:
        name = spec.output.run_name
        if name and len(languages) > 1:
            name = f"{name}-{language}"
        runs.append(_adapter_run(spec, language, workdir, force, counts, name))
    return Plan(command, spec, workdir, runs, world_size=world_size())


def missing_adapters_error(
    spec: JobSpec, kind: str, missing: list[str], workdir: Workdir, why: list[str] = ()
) -> UserError:
    """One line: what is missing, where it was looked for, and the command that trains it."""
    command = ["advfusion", "train-adapters", "--langs", ",".join(missing), "--kind", kind]
    if spec.model.name_or_path != EMBEDDED_MODEL:
        command += ["--model", spec.model.name_or_path]
    if spec.model.quantization != "none":
        command += ["--quantization", spec.model.quantization]
    if spec.data.task != DataSpec.model_fields["task"].default:
        command += ["--task", spec.data.task]
    if spec.data.source != DataSpec.model_fields["source"].default:
        command += ["--data", spec.data.source]
    if spec.output.workdir != OutputSpec.model_fields["workdir"].default:
        command += ["--workdir", str(spec.output.workdir)]
    where = stages.store_folder(workdir, spec, "<language>", kind)
    spec_note = ""
    if spec.data.custom is not None:  # the task's definition lives only in a spec
        command += ["--spec", "SPEC.yaml"]
        spec_note = " (SPEC.yaml: the spec whose data.custom defines this task)"
    because = "".join(f"; {reason}" for reason in why)
    return UserError(
        f"No trained {kind} adapter for {', '.join(missing)} (looked in {where}{because}); "
        f"train them with: {shlex.join(command)}{spec_note}"
    )


def plan_fusion(command: str, spec: JobSpec, force: bool, train_missing: bool) -> Plan:
    """Adapters found in the store (or planned), then the AdapterFusion/AdvFusion run."""
    workdir = Workdir(spec.output.workdir)
    method = spec.method
    kind = method.adapter_kind
    languages = list(spec.data.languages)
    target = spec.data.target
    if target not in languages:
        raise UserError(
            f"Target '{target}' is not among the fused languages ({', '.join(languages)}); "
            "add it to --langs."
        )
    fingerprint = None
    runs: list[RunPlan] = []
    reused: list[stages.StoredAdapter] = []
    adapters: dict[str, Path] = {}
    sources: dict[str, str] = {}
    missing: list[str] = []
    mismatches: list[str] = []
    counts: dict | None = None
    cache = data_cache(spec)
    fingerprints = {lang: data_fingerprint(spec.data, [lang], cache) for lang in languages}
    for language in languages:
        stage = stages.adapter_stage_spec(spec, language)
        wanted_adapter = stages.identity(stage)
        match = stages.match_adapter(
            workdir, stage, language, kind, wanted_adapter, fingerprints[language]
        )
        stored = match.stored or imported_adapter(
            stages.store_folder(workdir, stage, language, kind), language
        )
        if stored is not None:
            fingerprint = fingerprint or model_fingerprint(spec)
            if fingerprint is not None:
                stages.check_adapter_base(stored, fingerprint)
            reused.append(stored)
            adapters[language], sources[language] = stored.folder, stored.source
        elif train_missing:
            counts = counts or count_examples(spec.data, languages, cache)
            adapter_run = _adapter_run(
                spec, language, workdir, False, counts, None, fingerprints[language]
            )
            runs.append(adapter_run)
            adapters[language], sources[language] = adapter_run.store, adapter_run.run.id
        else:
            missing.append(language)
            mismatches += [match.mismatch] if match.mismatch else []
    if missing:
        raise missing_adapters_error(spec, kind, missing, workdir, mismatches)

    counts = counts or count_examples(spec.data, languages, cache)
    wanted = stages.identity(spec, {"adapters": sources})
    run_id = spec.output.run_name or stages.run_id_for(spec, target, {"adapters": sources})
    run = workdir.run(run_id)
    check_identity(run, wanted, force)
    phases = fusion_phases(spec, counts)
    # the fusion reads its own phases' languages, and fuses adapters trained on the others
    fingerprint = data_fingerprint(spec.data, languages, cache)
    state, note = data_state(run, *run_state(run, force, [p.name for p in phases]), fingerprint)
    if state == RESUME:
        run_identity.check_process_count(run, world_size())
    runs.append(
        RunPlan(
            "fusion",
            spec,
            run,
            state,
            note,
            phases,
            adapters=adapters,
            adapter_sources=sources,
            identity=wanted,
            data_fingerprint=fingerprint,
        )
    )
    return Plan(command, spec, workdir, runs, reused, world_size())


def fusion_phases(spec: JobSpec, counts: dict[str, dict[str, int]]) -> list[PhasePlan]:
    """AdapterFusion: one phase on the target. AdvFusion: masked, then restored."""
    target, training, world = spec.data.target, spec.training, world_size()
    lr = training.lr_for("fusion")
    n_eval = counts[target].get("validation", 0)

    def phase(name: str, description: str, budget: Budget, languages: list[str]) -> PhasePlan:
        n_train = sum(counts[lang].get("train", 0) for lang in languages)
        return PhasePlan(
            name,
            description,
            languages,
            [target],
            budget,
            lr,
            phase_steps(budget, n_train, training, world),
            n_train,
            n_eval,
        )

    method = spec.method
    if not isinstance(method, AdvFusionMethod):
        return [phase("fusion", f"fusion for {target}", training.budget, [target])]
    first, second = spec.phase_budgets()
    phase1_languages = list(spec.data.languages) if method.phase1_data == "all" else [target]
    masked = "removed" if method.mask_mode == "remove" else "masked"
    return [
        phase("phase1-masked", f"phase 1: {target} {masked}", first, phase1_languages),
        phase("phase2-restored", f"phase 2: {target} restored", second, [target]),
    ]


# ---- display -----------------------------------------------------------------------------


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _print_eval_reads(plan: Plan, console: Console) -> None:
    """How many validation records each evaluation reads, and the key that caps them."""
    reads = {"+".join(p.eval_languages): p.eval_examples for run in plan.runs for p in run.phases}
    if not reads:
        return
    cap = plan.spec.data.max_eval_records
    how = (
        f"capped at {cap} per language by data.max_eval_records"
        if cap is not None
        else "all of them; cap with --set data.max_eval_records=N"
    )
    listed = ", ".join(f"{languages} {n}" for languages, n in reads.items())
    console.print(f"Each evaluation reads {listed} validation records ({how}).", soft_wrap=True)


def render(plan: Plan, console: Console) -> None:
    """The resolved spec (YAML) and one table row per run: the `--dry-run` output."""
    console.print(f"[bold]Resolved job spec[/bold] ({plan.command}):")
    console.print(dump_spec(plan.spec), markup=False, highlight=False)
    root = plan.workdir.root
    table = Table(title=f"Plan: {plan.command} (workdir {root})", title_justify="left")
    table.add_column("run (runs/<id>)", no_wrap=True)
    for column in ("what", "state", "phases: steps", "train/eval examples"):
        table.add_column(column, overflow="fold")
    table.add_column("adapter store", overflow="fold")
    for stored in plan.reused_adapters:
        where = _relative(stored.folder, root)
        source = imported_from(stored.folder)
        state = f"reuse (imported from {source})" if source else "reuse"
        table.add_row("-", f"{stored.language} adapter", state, "-", "-", where)
    for run_plan in plan.runs:
        phases = "\n".join(f"{p.name}: {p.steps} @ lr {p.learning_rate:g}" for p in run_plan.phases)
        data = "\n".join(
            f"{'+'.join(p.train_languages)} {p.train_examples}/{p.eval_examples}"
            for p in run_plan.phases
        )
        if run_plan.role == "adapter":
            what = f"{run_plan.language} {run_plan.spec.method.name}"
        else:
            what = f"{stages.method_label(run_plan.spec)} over {', '.join(run_plan.adapters)}"
        state = run_plan.state + (f" ({run_plan.note})" if run_plan.note else "")
        store = _relative(run_plan.store, root) if run_plan.store is not None else "-"
        table.add_row(run_plan.run.id, what, state, phases, data, store)
    console.print(table)
    _print_eval_reads(plan, console)

    from advfusion_cli.workflows.plan_notes import keep_best_notes

    for note in keep_best_notes(plan):
        console.print(note, markup=False)

    from advfusion_cli.workflows.retention import plan_lines

    training_runs = [(r.run.id, r.spec) for r in plan.runs if r.state != REUSE]
    for line in plan_lines(training_runs):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    training = plan.spec.training
    console.print(
        f"batch {training.batch_size} x grad-accum {training.grad_accum} x {plan.world_size} "
        "process(es). Nothing was loaded or trained (--dry-run)."
    )
