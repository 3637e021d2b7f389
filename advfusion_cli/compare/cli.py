"""The `compare` command's glue: flags -> CompareRequest -> compare -> table on stdout."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from advfusion_cli.compare.options import parse_methods, parse_seeds, parse_vary
from advfusion_cli.compare.training import SpecInputs
from advfusion_cli.compare.workflow import CompareRequest, CompareResult


def stdout_console() -> Console:
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=200)


def print_result(result: CompareResult, console: Console) -> None:
    from advfusion_cli.compare.table import legend, rich_table, verdict_lines

    console.print(rich_table(result.rows, result.metrics, result.title, result.vary_label))
    console.print(legend(result.n_items, result.n_resamples, result.seeds), markup=False)
    for line in verdict_lines(result.rows, result.metrics, result.vary_label):
        console.print(f"  {line}", markup=False)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"Results in {result.folder}: {', '.join(result.files)}", markup=False)


def build_request(
    *,
    methods: str,
    langs: str | None,
    seeds: str | None,
    vary: str | None,
    split: str,
    limit: int | None,
    decoding: dict,
    execute: bool,
    workers: int | None,
    metrics: str | None,
    resamples: int,
    out: Path | None,
    force: bool,
    flags: dict,
    spec_path: Path | None,
    sets: list[str] | None,
    preset: str | None,
    title: str | None = None,
    benchmark: dict | None = None,
) -> CompareRequest:
    from advfusion_cli.errors import UserError
    from advfusion_cli.evaluate.workflow import EvalRequest
    from advfusion_cli.inference.generation import DecodingSettings

    if spec_path is not None:
        from advfusion_cli.spec.yaml_io import check_spec_file

        check_spec_file(spec_path)  # missing, or a directory: named either way
    if resamples < 1:
        raise UserError(f"--resamples must be >= 1, got {resamples}.")
    table_metrics = None
    if metrics:
        table_metrics = tuple(m.strip() for m in metrics.split(",") if m.strip())
    inputs = SpecInputs.from_cli(spec_path, preset, sets, flags)
    benchmark_request = _benchmark_request(
        benchmark or {}, decoding, limit, execute, workers, force, flags.get("data.target")
    )
    if benchmark_request is None:
        decoding = {
            **decoding,
            "n": 1 if decoding.get("n") is None else decoding["n"],
            "top_p": 1.0 if decoding.get("top_p") is None else decoding["top_p"],
        }
    else:  # the one decoding of this comparison: the benchmark's
        chosen = benchmark_request.decoding
        decoding = {
            **decoding,
            "n": chosen.n,
            "temperature": chosen.temperature,
            "top_p": chosen.top_p,
            "max_new_tokens": chosen.max_new_tokens,
        }
    return CompareRequest(
        benchmark=benchmark_request,
        methods=tuple(parse_methods(methods)),
        seeds=tuple(parse_seeds(seeds)) if seeds else None,
        vary=parse_vary(vary),
        languages=langs,
        inputs=inputs,
        evaluation=EvalRequest(
            split=split,
            limit=limit,
            decoding=DecodingSettings(**decoding),
            execute=execute,
            workers=workers,
            force=force,
        ),
        table_metrics=table_metrics,
        out=out,
        n_resamples=resamples,
        title=title,
    )


def _benchmark_request(benchmark: dict, decoding, limit, execute, workers, force, target):
    """--benchmark multipl-e's request (the protocol's decoding unless given), or None."""
    from advfusion_cli.errors import UserError

    name = benchmark.get("benchmark")
    if name is None:
        given = [
            flag
            for key, flag in (("lang", "--lang"), ("data", "--benchmark-data"))
            if benchmark.get(key) is not None
        ]
        if given:
            raise UserError(f"{', '.join(given)} needs --benchmark multipl-e.")
        return None
    from advfusion_cli.evaluate.benchmark_cli import BENCHMARKS
    from advfusion_cli.evaluate.multiple import BenchmarkRequest, protocol_decoding
    from advfusion_cli.sandbox.multiple_languages import resolve_multiple_language

    if name.strip().lower() not in BENCHMARKS:
        raise UserError(f"--benchmark must be one of {', '.join(BENCHMARKS)}, got '{name}'.")
    language = benchmark.get("lang") or target
    if language is None:
        raise UserError("--benchmark multipl-e needs --lang (or --target) to name the language.")
    return BenchmarkRequest(
        language=resolve_multiple_language(language).ext,
        dataset=benchmark.get("dataset") or "humaneval",
        data=benchmark.get("data"),
        limit=limit,
        decoding=protocol_decoding(decoding),
        execute=execute,
        workers=workers,
        force=force,
    )


def dry_run_table(request: CompareRequest) -> Table:
    """The jobs and the training runs they would reuse or train; nothing is loaded."""
    from advfusion_cli.compare.training import job_spec
    from advfusion_cli.compare.workflow import plan_jobs, reference_spec
    from advfusion_cli.workflows.plan import plan_adapters, plan_fusion

    base = reference_spec(request)
    seeds = list(request.seeds) if request.seeds else [base.training.seed]
    table = Table(title=f"compare -> {base.data.target} (dry run)", title_justify="left")
    for column in ("method", "seed", "setting", "run", "state"):
        table.add_column(column, overflow="fold")
    for job in plan_jobs(request, seeds):
        spec = job_spec(job, base.data.target, request.languages, request.inputs, request.vary)
        setting = f"{request.vary.label}={job.vary_value}" if request.vary else ""
        if job.is_base:
            table.add_row(job.method, "-", setting, "(no training)", "evaluate only")
            continue
        if spec.is_fusion:
            plan = plan_fusion("compare", spec, False, train_missing=True)
        else:
            plan = plan_adapters("compare", spec, False)
        for run_plan in plan.runs:
            what = (
                job.method
                if run_plan.role != "adapter" or not spec.is_fusion
                else (f"  {run_plan.language} adapter")
            )
            state = run_plan.state + (f" ({run_plan.note})" if run_plan.note else "")
            table.add_row(what, str(job.seed), setting, run_plan.run.id, state)
    return table


def run_compare(*, dry_run: bool, report_to: str | None = None, **options) -> None:
    """`report_to`: the trainings report their curves, and every evaluation and the
    comparison's scores and plots go to these trackers too."""
    from advfusion_cli.workflows import tracking

    console = stdout_console()
    trackers = tracking.parse_report_to(report_to)
    if report_to is not None:  # given (`none` included): it decides for the trainings too
        tracking.check_installed(trackers, "--report-to")  # before any work
        options["flags"] = {**options["flags"], "training.report_to": trackers}
    request = build_request(**options)
    if dry_run:
        console.print(dry_run_table(request))
        console.print("Nothing was trained or evaluated (--dry-run).")
        return
    from advfusion_cli.compare.workflow import compare, reference_spec

    if report_to is None:  # `--set training.report_to=...` or a spec file may ask for them
        trackers = list(reference_spec(request).training.report_to)
        tracking.check_installed(trackers)

    with interrupts_explained():
        result = compare(request)
    print_result(result, console)
    if trackers:
        from advfusion_cli.workflows.tracking_results import report_comparison

        report_comparison(trackers, result, reference_spec(request).output.workdir)
        console.print(f"Reported to {', '.join(trackers)}.")


def interrupts_explained():
    """Ctrl-C during compare/demo: the training commands' message, plus what a rerun reuses."""
    from advfusion_cli.workflows.cli_common import interrupts_explained as explained

    return explained("; finished runs and evaluations are reused")
