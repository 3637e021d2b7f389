"""One stage of a grid, run by `advfusion grid-stage STAGE_FILE` (in the job's child process).

Each kind does what compare does for that step, through the same workflows: an adapter or a
fusion is planned and trained (or resumed, or reused) like `train-adapters`/`fuse`/`adv-fuse`
would; an evaluation is `evaluate`; a table is compare itself, which finds every run and
evaluation finished and writes its files; the summary reads the tables.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from advfusion_cli.errors import UserError


def load_payload(path: Path) -> dict:
    try:
        return pickle.loads(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"Stage file '{path}' does not exist.") from None
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as err:
        raise UserError(f"Stage file '{path}' cannot be read: {err}.") from None


def execute(payload: dict) -> None:
    kind = payload["kind"]
    if kind == "adapter":
        _train_adapter(payload["spec"])
    elif kind == "fusion":
        _train_fusion(payload["spec"])
    elif kind == "evaluate":
        _evaluate(payload)
    elif kind == "table":
        _table(payload["request"])
    elif kind == "summary":
        from advfusion_cli.grid.summary import write_summary

        for path in write_summary(Path(payload["folder"]), payload["cells"]):
            print(f"wrote {path}")
    else:
        raise UserError(f"Unknown stage kind '{kind}'.")


def _session(spec):
    from advfusion_cli.workflows.execute import open_session
    from advfusion_cli.workflows.runs import Workdir

    Workdir(spec.output.workdir).ensure_writable()
    training = spec.training
    return open_session(training.precision, training.report_to, spec.output.workdir)


def _train_adapter(spec) -> None:
    from advfusion_cli.workflows.plan import plan_adapters
    from advfusion_cli.workflows.train_adapters import run_adapter

    plan = plan_adapters("compare", spec, False)
    session = _session(spec)
    for run_plan in plan.runs:
        outcome = run_adapter(run_plan, session)
        print(f"{'reused' if outcome.reused else 'trained'} {run_plan.run.id}")


def _train_fusion(spec) -> None:
    """The fusion alone: its adapters were trained by the stages it waited for (a missing one
    is an error naming the command that trains it)."""
    from advfusion_cli.workflows.adv_fuse import run_advfusion
    from advfusion_cli.workflows.fuse import run_adapterfusion
    from advfusion_cli.workflows.plan import plan_fusion

    plan = plan_fusion("compare", spec, False, train_missing=False)
    session = _session(spec)
    (run_plan,) = plan.runs
    train = run_advfusion if spec.method.name == "advfusion" else run_adapterfusion
    outcome = train(run_plan, session)
    print(f"{'reused' if outcome.reused else 'trained'} {run_plan.run.id}")


def _evaluate(payload: dict) -> None:
    from advfusion_cli.evaluate.execution import ExecutionCache
    from advfusion_cli.evaluate.workflow import evaluate
    from advfusion_cli.inference.resolve import RunRef, require_finished
    from advfusion_cli.workflows.runs import Workdir

    spec = payload["spec"]
    run = None
    if payload["run_id"] is not None:
        run = require_finished(Workdir(spec.output.workdir).run(payload["run_id"]))
    ref = RunRef(payload["method"], run, payload["target"])
    if payload.get("benchmark") is not None:
        from advfusion_cli.evaluate.multiple import evaluate_benchmark

        result = evaluate_benchmark(ref, payload["benchmark"], spec=spec)
    else:
        result = evaluate(ref, payload["evaluation"], spec=spec, cache=ExecutionCache())
    print(f"{'reused' if result.reused else 'evaluated'} {result.folder}")


def _table(request) -> None:
    from advfusion_cli.compare.cli import print_result, stdout_console
    from advfusion_cli.compare.workflow import compare, reference_spec

    result = compare(request)
    print_result(result, stdout_console())
    trackers = reference_spec(request).training.report_to  # --report-to: as compare does
    if trackers:
        from advfusion_cli.workflows.tracking_results import report_comparison

        report_comparison(list(trackers), result, reference_spec(request).output.workdir)
