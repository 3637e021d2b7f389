"""`advfusion compare`: train what is missing, evaluate every method on the same items, judge noise.

jobs = methods × seeds × values of --vary (the base once per value)
-> train or reuse each run (workflows) -> evaluate on the same seeded test items
-> mean ± std over seeds, paired bootstrap against the best of each group
-> results.json / .csv / .md, metric bars, a fusion-attention heatmap per fusion method
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from advfusion_cli.compare.aggregate import ResultRow, combine_seeds, fill_group
from advfusion_cli.compare.options import ADAPTER_METHODS, FUSION_METHODS, Vary
from advfusion_cli.compare.training import (
    Job,
    JobTrainer,
    SpecInputs,
    TrainedJob,
    check_adapter_geometry,
    job_spec,
)
from advfusion_cli.errors import UserError
from advfusion_cli.evaluate.workflow import ATTENTION_FILE, EvalRequest, EvaluationResult
from advfusion_cli.metrics.bootstrap import DEFAULT_RESAMPLES
from advfusion_cli.workflows.runs import Workdir, identity_hash, now_iso

TABLE_METRICS = {
    "code-translation": (
        "bleu4_smooth_13a_corpus",
        "bleu4_smooth_13a_sentence_mean",
        "rougeL_f",
        "exact_match",
        "function_name_preserved",
        "parameter_names_preserved",
    ),
    "code-generation": (
        "pass@1",
        "pass@5",
        "pass@10",
        "bleu4_smooth_13a_corpus",
        "rougeL_f",
        "exact_match",
    ),
    "commit-message": (
        "bleu4_smooth_13a_corpus",
        "bleu4_smooth_13a_sentence_mean",
        "rougeL_f",
        "exact_match",
    ),
}


@dataclass(frozen=True)
class CompareRequest:
    methods: tuple[str, ...]
    seeds: tuple[int, ...] | None = None  # None: the spec's training.seed
    vary: Vary | None = None
    languages: str | None = None  # fused languages, comma-separated; None = the spec's
    inputs: SpecInputs = field(default_factory=SpecInputs)
    evaluation: EvalRequest = field(default_factory=EvalRequest)
    table_metrics: tuple[str, ...] | None = None
    out: Path | None = None
    n_resamples: int = DEFAULT_RESAMPLES
    title: str | None = None
    # --benchmark multipl-e: every run is evaluated on the benchmark instead of the task's
    # test split (an evaluate.multiple.BenchmarkRequest).
    benchmark: object | None = None


BENCHMARK_TABLE_METRICS = ("pass@1", "pass@10", "pass@100")


@dataclass
class CompareResult:
    folder: Path
    task: str
    target: str
    rows: list[ResultRow]
    metrics: list[str]  # shown in the table
    title: str
    vary_label: str | None
    seeds: list[int]
    n_items: int
    n_resamples: int
    files: dict[str, Path]
    notes: list[str]
    elapsed_s: float = 0.0


def _ordered(methods: tuple[str, ...]) -> list[str]:
    """Training order: single adapters, then fusions (which may reuse them), then the base."""
    rank = {m: 0 for m in ADAPTER_METHODS} | {m: 1 for m in FUSION_METHODS}
    return sorted(methods, key=lambda m: rank.get(m, 2))


def plan_jobs(request: CompareRequest, seeds: list[int]) -> list[Job]:
    values = list(request.vary.values) if request.vary else [None]
    jobs = []
    for value in values:
        for method in _ordered(request.methods):
            if method.startswith("base"):
                jobs.append(Job(method, seeds[0], value))
                continue
            jobs.extend(Job(method, seed, value) for seed in seeds)
    return jobs


def compare_folder(request: CompareRequest, spec, seeds: list[int]) -> Path:
    if request.out is not None:
        return Path(request.out)
    identity = {
        "methods": list(request.methods),
        "seeds": seeds,
        "vary": [request.vary.key, list(request.vary.values)] if request.vary else None,
        "languages": request.languages,
        "evaluation": request.evaluation.leaf(),
        **({"benchmark": repr(request.benchmark)} if request.benchmark is not None else {}),
        "spec": str(request.inputs.spec_path) if request.inputs.spec_path else None,
        "sets": list(request.inputs.sets),
        "model": spec.model.name_or_path,
        "data": spec.data.source,
    }
    prefix = f"{spec.data.task}-{spec.data.target}"
    if request.benchmark is not None:
        prefix = f"multipl-e-{request.benchmark.dataset}-{request.benchmark.language}"
    name = f"{prefix}-{identity_hash(identity)}"
    return Workdir(spec.output.workdir).root / "compare" / name


def reference_spec(request: CompareRequest):
    """The spec the comparison is about (target, task, data, seed, workdir), no method yet."""
    return job_spec(
        Job("base", None, None), _target_flag(request), request.languages, request.inputs, None
    )


def _target_flag(request: CompareRequest) -> str | None:
    return request.inputs.flags.get("data.target")


def metrics_for(task: str, n: int, custom=None) -> list[str]:
    """Every metric an evaluation of `task` (its data.custom block for a custom task) with n
    candidates per item can report."""
    from advfusion_cli.evaluate.structure import STRUCTURE_METRICS
    from advfusion_cli.metrics.passk import DEFAULT_KS
    from advfusion_cli.metrics.text import METRIC_NAMES

    names = list(METRIC_NAMES)
    if task == "code-translation":
        names += STRUCTURE_METRICS
    if task == "code-generation" or (custom is not None and "pass@k" in custom.metrics):
        names += [f"pass@{k}" for k in DEFAULT_KS if k <= n]
    return names


def default_table_metrics(data, n: int) -> tuple[str, ...]:
    """The table's columns when --metrics is not given: the task's, or data.custom.metrics."""
    if data.custom is not None:
        return tuple(data.custom.table_metrics(n))
    return TABLE_METRICS.get(data.task, ())


def check_table_metrics(request: CompareRequest, task: str, custom=None) -> None:
    """--metrics names must exist for this task (and n), before anything is trained."""
    from advfusion_cli.errors import unknown_name_error

    known = metrics_for(task, request.evaluation.decoding.n, custom)
    for name in request.table_metrics or ():
        if name not in known:
            raise unknown_name_error(
                f"metric for {task} (n={request.evaluation.decoding.n})", name, known
            )


def _check_benchmark(request: CompareRequest) -> None:
    """--benchmark: the language's toolchain is here and --metrics names its pass@k."""
    from advfusion_cli.errors import unknown_name_error
    from advfusion_cli.evaluate.multiple import check_executable
    from advfusion_cli.sandbox.multiple_languages import resolve_multiple_language

    benchmark = request.benchmark
    if benchmark.execute:
        check_executable(resolve_multiple_language(benchmark.language))
    known = [m for m in BENCHMARK_TABLE_METRICS if int(m.split("@")[1]) <= benchmark.decoding.n]
    for name in request.table_metrics or ():
        if name not in known:
            raise unknown_name_error(f"MultiPL-E metric (n={benchmark.decoding.n})", name, known)


def check_outputs(request: CompareRequest, base, folder: Path) -> None:
    """The workdir and the results folder must be writable, before anything is trained."""
    from advfusion_cli.evaluate.paths import check_output_folder, check_workdir

    check_workdir(base.output.workdir)
    check_output_folder(folder, "--out" if request.out is not None else "Results folder")


def check_same_items(request: CompareRequest, jobs: list[Job], specs: list) -> None:
    """A --vary of a data key must keep the test items (a paired comparison), checked up front."""
    from advfusion_cli.evaluate.examples import ids_digest, select_items

    if request.vary is None or not request.vary.key.startswith("data."):
        return
    evaluation = request.evaluation
    digests: dict[str, str] = {}
    for job, spec in zip(jobs, specs, strict=True):
        value = str(job.vary_value)
        if value in digests:
            continue
        items = select_items(
            spec.data, spec.data.target, evaluation.split, evaluation.limit, evaluation.seed
        )
        digests[value] = ids_digest(items)
    if len(set(digests.values())) > 1:
        raise UserError(
            f"--vary {request.vary.label}={','.join(request.vary.values)}: the values select "
            f"different {evaluation.split} items, but a paired comparison needs the same items; "
            "vary a setting that keeps the data (e.g. training.lr, model.quantization)."
        )


def prepare(request: CompareRequest):
    """(reference spec, seeds, jobs, their specs, results folder), every input checked before
    anything is trained; the in-process comparison and a grid's job graph both start here."""
    base = reference_spec(request)
    if request.benchmark is None:
        check_table_metrics(request, base.data.task, base.data.custom)
    else:
        _check_benchmark(request)  # toolchain and metrics, before anything is trained
    target = base.data.target
    seeds = list(request.seeds) if request.seeds else [base.training.seed]
    jobs = plan_jobs(request, seeds)
    specs = [job_spec(job, target, request.languages, request.inputs, request.vary) for job in jobs]
    for job, spec in zip(jobs, specs, strict=True):
        check_adapter_geometry(job, spec)
    folder = compare_folder(request, base, seeds)
    check_outputs(request, base, folder)
    check_same_items(request, jobs, specs)
    return base, seeds, jobs, specs, folder


def compare(request: CompareRequest, progress=None) -> CompareResult:
    """Run the whole comparison; `progress` is a PipelineProgress (one display)."""
    from advfusion_cli.compare.progress import PipelineProgress
    from advfusion_cli.evaluate.execution import ExecutionCache

    # bitsandbytes announces optional CPU kernels it could not find when peft imports it:
    # harmless, and a log line would tear the one live display.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    started = time.perf_counter()
    base, seeds, jobs, specs, folder = prepare(request)
    target = base.data.target
    stages = sum(1 if job.is_base else 2 for job in jobs) + 1
    owns_progress = progress is None
    if progress is None:
        progress = PipelineProgress(stages, f"compare -> {target}")
    else:
        progress.add_stages(stages)
    progress.open()
    trainer = JobTrainer(progress)
    cache = ExecutionCache()
    trained: list[TrainedJob] = []
    evaluations: list[EvaluationResult] = []
    try:
        for job, spec in zip(jobs, specs, strict=True):
            trained_job, evaluation = _run_job(job, spec, request, trainer, cache, progress)
            trained.append(trained_job)
            evaluations.append(evaluation)
        progress.stage("tables and plots")
        result = _report(request, base, seeds, folder, trained, evaluations)
        progress.stage_done()
    finally:
        if owns_progress:
            progress.close()
    result.elapsed_s = time.perf_counter() - started
    return result


def _run_job(job: Job, spec, request, trainer, cache, progress):
    from advfusion_cli.evaluate.workflow import evaluate
    from advfusion_cli.inference.resolve import RunRef

    name = job.method + (f" seed {job.seed}" if not job.is_base else "")
    if job.vary_value is not None and request.vary is not None:
        name += f" {request.vary.label}={job.vary_value}"
    if not job.is_base:
        progress.stage(f"train {name}")
        trained = trainer.train(job, spec)
        progress.stage_done(f"{'reused' if trained.reused else 'trained'} {name}: {trained.run.id}")
        ref = RunRef(job.method, trained.run, spec.data.target)
    else:
        trained = TrainedJob(job, spec, None)
        ref = RunRef(job.method, None, spec.data.target)
    progress.stage(f"evaluate {name}")
    if request.benchmark is not None:
        from advfusion_cli.evaluate.multiple import evaluate_benchmark

        evaluation = evaluate_benchmark(ref, request.benchmark, spec=spec, progress=progress)
    else:
        evaluation = evaluate(ref, request.evaluation, spec=spec, progress=progress, cache=cache)
    progress.stage_done(f"{'reused' if evaluation.reused else 'evaluated'} {name}")
    return trained, evaluation


def _check_same_items(evaluations: list[EvaluationResult]) -> int:
    digests = {e.record["selection"]["ids_sha256"] for e in evaluations}
    if len(digests) != 1:
        raise UserError(
            "The evaluations scored different test items (different data or split); "
            "a paired comparison needs the same items."
        )
    return evaluations[0].record["n_items"]


def _adapters_training_s(workdir: Workdir, adapter_runs: dict[str, str]) -> float:
    total = 0.0
    for run_id in adapter_runs.values():
        try:
            summary = json.loads(workdir.run(run_id).summary_json.read_text())
        except (OSError, ValueError):
            continue
        total += float(summary.get("training_s") or summary.get("elapsed_s") or 0.0)
    return total


def _costs(trained: list[TrainedJob]) -> dict:
    if trained[0].run is None:
        return {"trainable_params": 0, "total_params": None, "training_s": 0.0}
    summaries = [t.summary for t in trained]
    workdir = Workdir(trained[0].spec.output.workdir)
    costs = {
        "trainable_params": summaries[0].get("trainable_params", 0),
        "total_params": summaries[0].get("total_params"),
        "training_s": sum(s.get("training_s") or 0.0 for s in summaries) / len(summaries),
        "peak_memory_mb": max(s.get("peak_memory_mb") or 0.0 for s in summaries),
    }
    if trained[0].adapter_runs:
        costs["adapters_training_s"] = sum(
            _adapters_training_s(workdir, t.adapter_runs) for t in trained
        ) / len(trained)
        costs["fused_adapters"] = list(trained[0].adapter_runs)
    return costs


def _report(request, base, seeds, folder, trained, evaluations) -> CompareResult:
    from advfusion_cli.compare import outputs

    n_items = _check_same_items(evaluations)
    vary_label = request.vary.label if request.vary else None
    rows, attention = _rows(request, trained, evaluations)
    task = base.data.task
    present = {name for row in rows for name in row.metrics}
    if request.benchmark is not None:
        wanted = request.table_metrics or BENCHMARK_TABLE_METRICS
    else:
        wanted = request.table_metrics or default_table_metrics(
            base.data, request.evaluation.decoding.n
        )
    metrics = [m for m in wanted if m in present]
    notes = _notes(rows, trained, evaluations)
    missing = [m for m in (request.table_metrics or ()) if m not in present]
    if missing:
        notes.append(f"Not computed in this comparison: {', '.join(missing)}.")
    title = request.title or (
        f"{task} -> {base.data.target}: {len(request.methods)} methods, "
        f"{n_items} {request.evaluation.split} items"
    )
    if request.benchmark is not None and request.title is None:
        benchmark = request.benchmark
        title = (
            f"MultiPL-E {benchmark.dataset}-{benchmark.language}: {len(request.methods)} "
            f"methods trained on {task} -> {base.data.target}, {n_items} problems"
        )
    folder.mkdir(parents=True, exist_ok=True)
    images = _plots(request, base.data.target, folder, rows, metrics, attention, title)
    files = {
        "results.json": outputs.write_json(
            folder / "results.json",
            _payload(request, base, seeds, n_items, rows, metrics, evaluations, notes, images),
        ),
        "results.csv": outputs.write_csv(folder / "results.csv", rows),
        "results.md": outputs.write_markdown(
            folder / "results.md",
            title=title,
            rows=rows,
            metrics=metrics,
            vary_label=vary_label,
            n_items=n_items,
            n_resamples=request.n_resamples,
            seeds=seeds,
            notes=notes,
            images=images,
        ),
    }
    files.update({image.name: image for image in images})
    return CompareResult(
        folder,
        task,
        base.data.target,
        rows,
        metrics,
        title,
        vary_label,
        seeds,
        n_items,
        request.n_resamples,
        files,
        notes,
    )


def _rows(request, trained, evaluations):
    """One ResultRow per (value of --vary, method), filled group by group; fusion attention."""
    from advfusion_cli.evaluate.records import item_scores

    rows: list[ResultRow] = []
    attention: dict[tuple[str, str | None], list[dict]] = {}
    for value in list(request.vary.values) if request.vary else [None]:
        group: list[ResultRow] = []
        scores: dict[str, dict[str, list[float]]] = {}
        items: dict[str, dict] = {}
        for method in request.methods:
            pairs = [
                (t, e)
                for t, e in zip(trained, evaluations, strict=True)
                if t.job.method == method and t.job.vary_value == value
            ]
            jobs = [t for t, _ in pairs]
            group.append(
                ResultRow(
                    method=method,
                    vary_value=value,
                    seeds=[t.job.seed for t in jobs] if jobs[0].run else [],
                    runs=[
                        {
                            "seed": t.job.seed,
                            "run_id": t.run.id if t.run else None,
                            "run_dir": str(t.run.path) if t.run else None,
                            "evaluation": str(e.folder),
                        }
                        for t, e in pairs
                    ],
                    costs=_costs(jobs),
                )
            )
            per_seed = [item_scores(e.folder) for _, e in pairs]
            names = set.intersection(*(set(e.scores) for _, e in pairs))
            scores[method] = {n: [e.scores[n] for _, e in pairs] for n in names}
            items[method] = {
                n: combine_seeds([s[n] for s in per_seed])
                for n in names
                if all(n in s for s in per_seed)
            }
            records = [_read_attention(e.folder) for _, e in pairs]
            if records and all(records):
                attention[(method, value)] = records
        fill_group(group, scores, items, n_resamples=request.n_resamples)
        rows.extend(group)
    return rows, attention


def _plots(request, target, folder, rows, metrics, attention, title) -> list[Path]:
    from advfusion_cli.compare import plots

    vary_label = request.vary.label if request.vary else None
    images = []
    if metrics:
        images.append(plots.metric_bars(rows, metrics, folder / "metrics.png", title, vary_label))
    for (method, value), records in attention.items():
        setting = f" ({vary_label}={value})" if value is not None else ""
        suffix = f"-{vary_label}-{value}" if value is not None else ""
        seeds_text = f", mean of {len(records)} seeds" if len(records) > 1 else ""
        heat_title = (
            f"{method} -> {target}{setting}: fusion attention on {records[0]['items']} "
            f"test items{seeds_text}"
        )
        path = folder / f"attention-{method}{suffix}.png"
        images.append(
            plots.attention_heatmap(plots.mean_attention(records), path, heat_title, target)
        )
    return images


def _read_attention(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / ATTENTION_FILE).read_text())
    except (OSError, ValueError):
        return None


def _notes(rows: list[ResultRow], trained, evaluations) -> list[str]:
    notes = []
    fusion_rows = [r for r in rows if r.costs.get("fused_adapters")]
    if fusion_rows:
        notes.append(
            "Fusion rows count only the fusion's own training; the frozen language adapters it "
            "fuses cost "
            + "; ".join(
                f"{r.method}: {r.costs.get('adapters_training_s', 0.0):.0f} s "
                f"({', '.join(r.costs['fused_adapters'])})"
                for r in fusion_rows
            )
            + " (adapters trained outside this workdir count 0 s)."
        )
    if any(r.costs.get("peak_memory_mb") for r in rows):
        notes.append(
            "Peak memory: CUDA allocations on GPU; on CPU the process's peak resident size, "
            "which includes everything the process loaded before the run."
        )
    execution = evaluations[0].record.get("execution", {})
    if execution.get("ran") or "reason" in execution:  # a task whose candidates execute
        if execution.get("ran"):
            notes.append(
                f"pass@k: candidates executed in the sandbox ({execution['language']}, "
                f"{execution['n_samples']} sample(s) per item)."
            )
        else:
            notes.append(f"pass@k not computed: {execution.get('reason', 'unknown')}.")
    dropped = max(e.record.get("dropped_prompts", 0) for e in evaluations)
    if dropped:
        notes.append(f"Up to {dropped} prompts did not fit the model and score as empty answers.")
    return notes


def _payload(request, base, seeds, n_items, rows, metrics, evaluations, notes, images) -> dict:
    from advfusion_cli.workflows.runs import environment_info

    env = environment_info()
    first = evaluations[0].record
    return {
        "format_version": 1,
        "created": now_iso(),
        "task": base.data.task,
        "target": base.data.target,
        "data": base.data.source,
        "model": base.model.name_or_path,
        "methods": list(request.methods),
        "seeds": seeds,
        "vary": {
            "key": request.vary.key,
            "label": request.vary.label,
            "values": list(request.vary.values),
        }
        if request.vary
        else None,
        "evaluation": {
            "split": first["split"],
            "limit": first["limit"],
            "n_items": n_items,
            "selection": first["selection"],
            "decoding": first["decoding"],
            "stop_rule": first["stop_rule"],
        },
        "bootstrap": {"resamples": request.n_resamples, "confidence": 0.95, "seed": 0},
        "table_metrics": metrics,
        "rows": [row.to_dict() for row in rows],
        "notes": notes,
        "plots": [image.name for image in images],
        "packages": env["packages"],
        "git": env["git"],
        "device": env["device"],
    }
