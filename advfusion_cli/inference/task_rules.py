"""Per-task rules that a job spec's data section decides: where an answer stops, whether
candidates are executed for pass@k. Built-in tasks keep their fixed rules; a custom task
takes them from its `data.custom` block."""

from __future__ import annotations

from advfusion_cli.inference.generation import StopRule, stop_rule_for
from advfusion_cli.spec.schema import DataSpec


def task_stop_rule(data: DataSpec) -> StopRule:
    if data.custom is None:
        return stop_rule_for(data.task)
    stops = tuple(data.custom.stop)
    if not stops:
        return StopRule((), "EOS")
    return StopRule(stops, "EOS or " + " or ".join(repr(s) for s in stops))


def executes_tests(data: DataSpec) -> bool:
    """Whether an evaluation runs candidates against the items' stdin/stdout tests."""
    if data.custom is not None:
        return "pass@k" in data.custom.metrics
    return data.task == "code-generation"
