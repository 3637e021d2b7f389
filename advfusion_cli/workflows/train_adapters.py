"""`train-adapters`: one adapter per language on a frozen base (task adapter, Compacter or LoRA).

With one language this is also the paper's single-language baseline
(`train-adapters --langs ruby --kind lora|compacter|task-adapter`). Each language is its own
run, so `fuse` and `adv-fuse` find and reuse the same adapters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from advfusion_cli.spec.methods import LoraMethod
from advfusion_cli.spec.schema import JobSpec
from advfusion_cli.workflows.execute import RunOutcome, Session, execute_run, open_session
from advfusion_cli.workflows.methods import Trainable, setup_adapter, setup_lora
from advfusion_cli.workflows.models import adapter_dtype
from advfusion_cli.workflows.plan import Plan, RunPlan, plan_adapters
from advfusion_cli.workflows.trainer import Phase, PhaseResult, Trainer


@dataclass
class CommandResult:
    """A command's plan and, unless it was a dry run, what each of its runs produced."""

    plan: Plan
    outcomes: list[RunOutcome] = field(default_factory=list)
    dry_run: bool = False


def single_phase(trainer: Trainer, trainable: Trainable, phases: list[Phase]) -> list[PhaseResult]:
    return [trainer.run_phase(phases[0])]


def run_adapter(run_plan: RunPlan, session: Session) -> RunOutcome:
    """Train (or resume, or reuse) one language's adapter and publish it to the store."""
    spec, language = run_plan.spec, run_plan.language
    method = spec.method
    checkpointing = spec.model.gradient_checkpointing

    def setup(model) -> Trainable:
        if isinstance(method, LoraMethod):
            return setup_lora(model, method, checkpointing)
        return setup_adapter(model, method, language, adapter_dtype(spec.model), checkpointing)

    return execute_run(run_plan, session, setup, single_phase)


def train_adapters(spec: JobSpec, *, force: bool = False, dry_run: bool = False) -> CommandResult:
    """Train the adapter of every language in `spec.data.languages` with `spec.method`."""
    plan = plan_adapters("train-adapters", spec, force)
    if dry_run:
        return CommandResult(plan, dry_run=True)
    plan.workdir.ensure_writable()
    training = spec.training
    session = open_session(
        training.precision, training.report_to, spec.output.workdir, training.timeout_minutes
    )
    return CommandResult(plan, [run_adapter(run_plan, session) for run_plan in plan.runs])
