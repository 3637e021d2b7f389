"""Notes a plan prints under its table: settings that will not do what the spec says.

keep-best reloads the weights with the lowest eval loss; a phase with no validation examples
has no eval loss, so it keeps its last step's weights. The plan says so instead of leaving
the user to find out from a missing best checkpoint.
"""

from __future__ import annotations


def keep_best_notes(plan) -> list[str]:
    """One line per phase where training.keep_best is on but nothing can be evaluated."""
    notes = []
    for run_plan in plan.runs:
        if not run_plan.spec.training.keep_best:
            continue
        for phase in run_plan.phases:
            if phase.eval_examples == 0:
                languages = ", ".join(phase.eval_languages) or "its languages"
                notes.append(
                    f"keep-best is off for {run_plan.run.id} ({phase.name}): no validation "
                    f"examples for {languages}, so no eval loss; the last step's weights are kept."
                )
    return notes
