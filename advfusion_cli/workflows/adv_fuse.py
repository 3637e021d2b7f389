"""`adv-fuse`: AdvFusion (arXiv 2511.02869) - fusion trained with the target adapter masked, then restored.

Phase 1 masks the target's adapter (a zeroed null slot, or removed from the softmax) so the
fusion must learn from the other languages; phase 2 restores it and trains again. Phase-1
data is the target's (authors' code) or every language's (original paper). The LR schedule
restarts for phase 2 while the optimizer state carries over (unless reset), and each phase
ends with its best weights by eval loss.
"""

from __future__ import annotations

from advfusion_cli.spec.methods import AdvFusionMethod
from advfusion_cli.spec.schema import JobSpec
from advfusion_cli.workflows.execute import RunOutcome, Session, execute_run
from advfusion_cli.workflows.fuse import execute_plan, fusion_setup
from advfusion_cli.workflows.methods import Trainable
from advfusion_cli.workflows.plan import RunPlan, plan_fusion
from advfusion_cli.workflows.train_adapters import CommandResult
from advfusion_cli.workflows.trainer import Phase, PhaseResult, Trainer


def advfusion_phases(target: str, method: AdvFusionMethod):
    """The two-phase schedule, given the target language and the method's options."""

    def run(trainer: Trainer, trainable: Trainable, phases: list[Phase]) -> list[PhaseResult]:
        masked, restored = phases
        trainable.host.mask(target)
        first = trainer.run_phase(masked)
        trainable.host.unmask(target)
        # Handed over, never kept here: phase 2 must hold the only copy of the moments.
        carry, first.optimizer_state = first.optimizer_state, None
        if method.reset_optimizer_between_phases:
            carry = None
        second = trainer.run_phase(restored, carry_optimizer=carry)
        return [first, second]

    return run


def run_advfusion(run_plan: RunPlan, session: Session) -> RunOutcome:
    spec = run_plan.spec
    schedule = advfusion_phases(spec.data.target, spec.method)
    return execute_run(run_plan, session, fusion_setup(run_plan), schedule)


def adv_fuse(
    spec: JobSpec, *, force: bool = False, train_missing: bool = True, dry_run: bool = False
) -> CommandResult:
    """Train AdvFusion for `spec.data.target` over the adapters of `spec.data.languages`."""
    plan = plan_fusion("adv-fuse", spec, force, train_missing)
    if dry_run:
        return CommandResult(plan, dry_run=True)
    return execute_plan(plan, run_advfusion)
