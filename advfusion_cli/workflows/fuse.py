"""`fuse`: AdapterFusion (arXiv 2005.00247) over frozen language adapters, trained on the target.

The adapters come from the workdir's store (same base, task and kind); missing ones are
trained first (`--train-missing`, the default) or reported with the command that trains them.
"""

from __future__ import annotations

from advfusion_cli.spec.schema import JobSpec
from advfusion_cli.workflows import sharding
from advfusion_cli.workflows.execute import RunOutcome, Session, execute_run, open_session
from advfusion_cli.workflows.methods import Trainable, setup_fusion
from advfusion_cli.workflows.models import adapter_dtype
from advfusion_cli.workflows.plan import Plan, RunPlan, plan_fusion
from advfusion_cli.workflows.train_adapters import CommandResult, run_adapter, single_phase


def fusion_setup(run_plan: RunPlan):
    """Setup for a fusion run: load the planned adapters (slot order = language order)."""
    spec = run_plan.spec

    def setup(model) -> Trainable:
        from accelerate import PartialState

        # Under FSDP the fusion is built on the meta device and sharded before it exists.
        kind = sharding.resolve_distributed(spec.training.distributed, PartialState().num_processes)
        return setup_fusion(
            model,
            spec.method,
            run_plan.adapters,
            adapter_dtype(spec.model),
            spec.model.gradient_checkpointing,
            sharded=kind == sharding.FSDP,
        )

    return setup


def execute_plan(plan: Plan, run_fusion) -> CommandResult:
    """Adapters first (each trained, resumed or reused), then the fusion run."""
    plan.workdir.ensure_writable()
    training = plan.spec.training
    session = open_session(
        training.precision, training.report_to, plan.spec.output.workdir, training.timeout_minutes
    )
    outcomes: list[RunOutcome] = []
    for run_plan in plan.runs:
        if run_plan.role == "adapter":
            outcomes.append(run_adapter(run_plan, session))
        else:
            outcomes.append(run_fusion(run_plan, session))
    return CommandResult(plan, outcomes)


def run_adapterfusion(run_plan: RunPlan, session: Session) -> RunOutcome:
    return execute_run(run_plan, session, fusion_setup(run_plan), single_phase)


def fuse(
    spec: JobSpec, *, force: bool = False, train_missing: bool = True, dry_run: bool = False
) -> CommandResult:
    """Train AdapterFusion for `spec.data.target` over the adapters of `spec.data.languages`.

    `force` retrains the fusion even when a finished run exists (adapters are reused)."""
    plan = plan_fusion("fuse", spec, force, train_missing)
    if dry_run:
        return CommandResult(plan, dry_run=True)
    return execute_plan(plan, run_adapterfusion)
