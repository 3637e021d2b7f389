"""`advfusion evaluate`: generate on a test split, score with the paper's metrics, record everything.

    select items (seeded, --limit) -> load the run as trained -> batched generation, split
    across the processes of `accelerate launch` (evaluate/distributed.py), candidates run in
    the sandbox as their batch finishes (code generation, evaluate/overlap.py)
    -> on the main process: text metrics (exact variants) -> structure (translation)
    -> pass@k -> fusion attention (fusion runs) -> predictions.jsonl + metrics.json

An evaluation lives in `<run>/evals/<split>-<limit>-<decoding>/` (the base model's under
`<workdir>/evals/<method>-<target>-<hash8>/...`) and is reused when asked again with the
same settings, unless `force`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from advfusion_cli.errors import UserError
from advfusion_cli.evaluate.distributed import generate_items
from advfusion_cli.evaluate.execution import ExecutionCache
from advfusion_cli.evaluate.journal import journal_key, remove_journals
from advfusion_cli.evaluate.processes import EvalWorld
from advfusion_cli.evaluate.progress import NullEvalProgress
from advfusion_cli.evaluate.structure import structure_scores
from advfusion_cli.inference.generation import DecodingSettings
from advfusion_cli.inference.precision import autocast_dtype
from advfusion_cli.inference.precision import describe as describe_precision
from advfusion_cli.inference.resolve import RunRef
from advfusion_cli.inference.task_rules import executes_tests, task_stop_rule
from advfusion_cli.spec.schema import JobSpec
from advfusion_cli.workflows import atomic
from advfusion_cli.workflows.runs import Workdir, identity_hash, now_iso

FORMAT_VERSION = 1
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
ATTENTION_FILE = "fusion_attention.json"


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate on and how to decode. Same request -> same items, same folder."""

    split: str = "test"
    limit: int | None = None
    seed: int = 0  # item selection and one-shot demonstrations
    decoding: DecodingSettings = field(default_factory=DecodingSettings)
    execute: bool = True  # run code-generation candidates in the sandbox (pass@k)
    workers: int | None = None  # sandbox processes; None = up to 4
    attention: bool = True  # fusion runs: record fusion attention on the test items
    autocast: bool = True  # CUDA: run in the training compute dtype (bf16 autocast)
    force: bool = False

    def __post_init__(self) -> None:
        from advfusion_cli.data.splits import canonical_split

        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be >= 1, got {self.limit}.")
        if self.workers is not None and self.workers < 1:
            raise UserError(f"--workers must be >= 1, got {self.workers}.")
        canonical_split(self.split)  # an unknown --split fails here, before any work

    def leaf(self) -> str:
        limit = "all" if self.limit is None else str(self.limit)
        seed = f"-seed{self.seed}" if self.seed else ""
        fp32 = "" if self.autocast else "-noautocast"
        return f"{self.split}-{limit}-{self.decoding.label}{seed}{fp32}"


@dataclass
class EvaluationResult:
    folder: Path
    record: dict  # the content of metrics.json
    reused: bool = False

    @property
    def scores(self) -> dict[str, float]:
        return self.record["scores"]

    @property
    def method(self) -> str:
        return self.record["method"]


def base_identity(spec: JobSpec, method: str, target: str) -> str:
    """What makes two base evaluations the same model on the same data."""
    data = spec.data
    return identity_hash(
        {
            "method": method,
            "target": target,
            "model": spec.model.model_dump(mode="json"),
            "data": {
                "task": data.task,
                "source": data.source,
                "subset": data.subset,
                "split_seed": data.split_seed,
                "max_prompt_tokens": data.max_prompt_tokens,
                "exec_outcome_filter": data.exec_outcome_filter,
                **({"custom": data.custom.model_dump(mode="json")} if data.custom else {}),
            },
        }
    )


def evaluation_folder(ref: RunRef, spec: JobSpec, request: EvalRequest) -> Path:
    if ref.run is not None:
        return ref.run.path / "evals" / request.leaf()
    target = ref.target or spec.data.target
    workdir = Workdir(spec.output.workdir)
    name = f"{ref.method}-{target}-{base_identity(spec, ref.method, target)}"
    return workdir.root / "evals" / name / request.leaf()


def read_evaluation(folder: Path) -> dict | None:
    try:
        return json.loads((folder / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None


def _reusable(record: dict | None, request: EvalRequest) -> bool:
    if not record or record.get("format_version") != FORMAT_VERSION:
        return False
    execution = record.get("execution", {})
    # An evaluation made with --no-execute (only tasks that execute record that reason) lacks
    # pass@k that this request wants; so does one made before the toolchain was installed (the
    # demo run again after installing Ruby). One where the toolchain is still missing would
    # come out the same again.
    skipped = execution.get("reason") == "--no-execute"
    language = execution.get("language")
    installed_since = (
        not execution.get("ran")
        and language is not None
        and not execution.get("executable_languages", {}).get(language, True)
        and _executable(language)
    )
    return not (request.execute and (skipped or installed_since))


def _executable(language: str) -> bool:
    from advfusion_cli.sandbox.programs import executable_languages

    return executable_languages().get(language, False)


def _spec_for(ref: RunRef, spec: JobSpec | None) -> JobSpec:
    from advfusion_cli.spec.loading import load_spec

    if ref.run is not None:
        return load_spec(ref.run.job_yaml)
    if spec is None:
        raise UserError("Evaluating the base model needs its spec (model, task, data).")
    if ref.target is not None:
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"target": ref.target})})
    return spec


def evaluate(
    ref: RunRef,
    request: EvalRequest,
    *,
    spec: JobSpec | None = None,
    out: Path | None = None,
    progress=None,
    cache: ExecutionCache | None = None,
) -> EvaluationResult:
    """Evaluate a finished run (or the base model) on `request.split` of its target language."""
    from advfusion_cli.evaluate.examples import one_shot, select_items

    world = EvalWorld.current()
    progress = (progress or NullEvalProgress()) if world.is_main else NullEvalProgress()
    spec = _spec_for(ref, spec)
    from advfusion_cli.evaluate.paths import check_output_folder, check_workdir

    if out is not None:
        folder = check_output_folder(out, "--out")
    else:
        if ref.run is None:
            check_workdir(spec.output.workdir)
        folder = evaluation_folder(ref, spec, request)
        check_output_folder(folder, "Evaluation folder")
    # The main process decides, so every process takes the same path.
    previous = world.broadcast(read_evaluation(folder) if world.is_main else None)
    if not request.force and _reusable(previous, request):
        return EvaluationResult(folder, previous, reused=True)

    data, target = spec.data, spec.data.target
    if world.is_main:  # the main process loads (and prepares) the data first, then the others
        items = select_items(data, target, request.split, request.limit, request.seed)
    world.barrier()
    if not world.is_main:
        items = select_items(data, target, request.split, request.limit, request.seed)
    prompts = one_shot(items, data, target, request.seed) if ref.method == "base-1shot" else items
    loaded = _load(ref, spec)
    world.barrier()  # every process has its model: generation starts together

    timings: dict[str, float] = {}
    started = time.perf_counter()
    rule = task_stop_rule(data)
    device = next(loaded.model.parameters()).device
    autocast = autocast_dtype(spec.training.precision, device.type, enabled=request.autocast)
    key = _journal_key(loaded, items, prompts, request, rule, data.max_prompt_tokens, autocast)
    execution, with_tests = {"ran": False}, []
    if executes_tests(data):
        execution, with_tests = _execution_plan(target, items, request)
    feed_factory = _sandbox_feed(target, items, with_tests, request, cache, world)
    folder.mkdir(parents=True, exist_ok=True)
    outcome = generate_items(
        world,
        folder,
        key,
        [item.id for item in items],
        prompts,
        loaded.model,
        loaded.tokenizer,
        request.decoding,
        rule,
        max_prompt_tokens=data.max_prompt_tokens,
        autocast=autocast,
        progress=progress,
        label=f"{ref.method} -> {target}: generate",
        feed_factory=feed_factory,
    )
    timings["generation_s"] = round(time.perf_counter() - started, 3)
    if not world.is_main:  # the main process scores and writes; the others get its record
        record = world.broadcast(None)
        if record is None:
            raise UserError(
                "The main process stopped before writing the evaluation (its error says why)."
            )
        return EvaluationResult(folder, record)
    generated = _Generated(loaded, items, prompts, rule, autocast, outcome)
    try:
        result = _finish(
            ref, request, spec, folder, generated, execution, with_tests, timings, progress
        )
    except BaseException:
        world.broadcast(None)  # the others stop waiting; this process raises
        raise
    world.broadcast(result.record)
    return result


@dataclass
class _Generated:
    """What generation left for the main process to score."""

    loaded: object
    items: list
    prompts: list
    rule: object
    autocast: object
    outcome: object  # distributed.GenerationOutcome


def _finish(
    ref, request, spec, folder, generated: _Generated, execution, with_tests, timings, progress
) -> EvaluationResult:
    """The main process: score the gathered completions, write the files."""
    from advfusion_cli.evaluate.examples import ids_digest

    loaded, items, prompts = generated.loaded, generated.items, generated.prompts
    rule, autocast, outcome = generated.rule, generated.autocast, generated.outcome
    data, target = spec.data, spec.data.target
    completions = outcome.completions
    references = [e.target for e in items]
    scores, per_item, extra = score_items(data.task, target, completions, references)
    if with_tests:
        started = time.perf_counter()  # what execution still took after generation ended
        ks = _add_pass_at_k(items, with_tests, outcome.executions, scores, per_item)
        execution = _pass_at_k(execution, with_tests, outcome.executions, request, ks)
        timings["execution_s"] = round(time.perf_counter() - started, 3)

    attention = None
    if request.attention and loaded.is_fusion:
        from advfusion_cli.inference.attention import fusion_attention

        started = time.perf_counter()
        progress.begin(f"{ref.method} -> {target}: fusion attention", len(items))
        attention = fusion_attention(
            loaded,
            items,
            batch_size=request.decoding.batch_size,
            on_batch=progress.advance,
            autocast=autocast,
        )
        progress.end()
        timings["attention_s"] = round(time.perf_counter() - started, 3)

    record = {
        "format_version": FORMAT_VERSION,
        "method": ref.method,
        "target": target,
        "task": data.task,
        "split": request.split,
        "limit": request.limit,
        "n_items": len(items),
        "selection": {"seed": request.seed, "ids_sha256": ids_digest(items)},
        "decoding": request.decoding.to_dict(),
        "stop_rule": rule.description,
        "max_prompt_tokens": data.max_prompt_tokens,
        "scores": scores,
        **extra,
        "execution": execution,
        "dropped_prompts": sum(c.dropped is not None for c in completions),
        "truncated_prompts": sum(c.truncated_prompt for c in completions),
        "mean_new_tokens": _mean([n for c in completions for n in c.new_tokens]),
        "timings": timings,
        "precision": describe_precision(autocast),
        "generation": outcome.stats,
        "provenance": _provenance(loaded, spec),
    }
    folder.mkdir(parents=True, exist_ok=True)
    _write_predictions(folder, items, prompts, completions, per_item)
    if attention is not None:
        atomic.write_json(folder / ATTENTION_FILE, attention)
    atomic.write_json(folder / METRICS_FILE, record)  # last: its presence marks a finished eval
    remove_journals(folder)
    return EvaluationResult(folder, record)


def _journal_key(loaded, items, prompts, request, rule, max_prompt_tokens, autocast) -> str:
    """Same key -> the journal's generations are what this evaluation would generate."""
    from advfusion_cli.evaluate.examples import ids_digest

    prompt_digest = hashlib.sha256()
    for prompt in prompts:
        prompt_digest.update(hashlib.sha256(prompt.prompt.encode("utf-8")).digest())
    return journal_key(
        {
            "items": ids_digest(items),
            "prompts": prompt_digest.hexdigest(),
            "decoding": request.decoding.to_dict(),
            "stop_rule": rule.description,
            "max_prompt_tokens": max_prompt_tokens,
            "precision": describe_precision(autocast),
            "model": loaded.provenance(),
            "sampling_streams": "per-candidate",  # inference/sampling.py
        }
    )


def _load(ref: RunRef, spec: JobSpec):
    from advfusion_cli.inference.loading import load_base_model, load_run

    if ref.run is not None:
        return load_run(ref.run)
    return load_base_model(spec, ref.method)


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def quiet_sacrebleu() -> None:
    """sacrebleu warns once per item that sentence BLEU wants effective_order; the per-item
    statistics it is asked for here are summed into corpus BLEU, where that does not apply."""
    logging.getLogger("sacrebleu").setLevel(logging.ERROR)


def score_items(task: str, language: str, completions, references):
    """(scores, per-item scores, extra metrics.json fields) of the first candidates."""
    from advfusion_cli.metrics.text import METRIC_SCALE, evaluate_text

    quiet_sacrebleu()
    predictions = [c.texts[0] for c in completions]
    report = evaluate_text(predictions, references)
    scores = dict(report.scores)
    per_item: dict[str, list] = {name: list(values) for name, values in report.per_item.items()}
    extra: dict = {"signatures": report.signatures, "scales": dict(METRIC_SCALE)}
    if task == "code-translation":
        structure = structure_scores(language, predictions, references)
        if structure is not None:
            scored = [v for v in next(iter(structure.values())) if v is not None]
            extra["structure"] = {"language": language, "n_items": len(scored)}
            for name, values in structure.items():
                per_item[name] = values
                kept = [v for v in values if v is not None]
                if kept:
                    scores[name] = sum(kept) / len(kept)
                    extra["scales"][name] = 1.0
        else:
            extra["structure"] = {"language": language, "n_items": 0, "reason": "no reader"}
    return scores, per_item, extra


def _execution_plan(language, items, request) -> tuple[dict, list[int]]:
    """Before generation: the metrics.json execution part when nothing will run (with the
    reason), and the indices of the items whose candidates run (empty when none will)."""
    from advfusion_cli.sandbox.programs import executable_languages

    executable = executable_languages()
    summary: dict = {"ran": False, "language": language, "executable_languages": executable}
    if not request.execute:
        summary["reason"] = "--no-execute"
        return summary, []
    if not executable.get(language, False):
        from advfusion_cli.sandbox.toolchain_setup import install_command

        summary["reason"] = (
            f"{language} is not executable on this machine (toolchain missing; "
            f"install it with: {install_command(language)}, then run again)"
        )
        return summary, []
    with_tests = [i for i, item in enumerate(items) if item.tests]
    if not with_tests:
        summary["reason"] = "the test items carry no stdin/stdout tests"
    return summary, with_tests


def _sandbox_feed(language, items, with_tests, request, cache, world):
    """The execution feed of this process's share (None when nothing executes): candidates
    run in the sandbox while the next batches generate (evaluate/overlap.py)."""
    if not with_tests:
        return None
    from advfusion_cli.evaluate.execution import default_workers
    from advfusion_cli.evaluate.overlap import SandboxFeed

    tests = {i: items[i].tests for i in with_tests}
    # The machine's cores are shared by the processes of one evaluation.
    workers = request.workers or max(1, default_workers() // world.size)

    def factory(on_executed):
        return SandboxFeed(language, tests, workers=workers, cache=cache, on_executed=on_executed)

    return factory


def _pass_at_k(summary, with_tests, results, request, ks: list[int]) -> dict:
    """The metrics.json execution part once every candidate ran."""
    from advfusion_cli.sandbox.programs import sandbox_info

    statuses: dict[str, int] = {}
    for index in with_tests:
        for status in results[index].statuses:
            statuses[status] = statuses.get(status, 0) + 1
    isolation = {k: v for k, v in sandbox_info().items() if k != "executable_languages"}
    n = request.decoding.n
    return {
        **summary,
        "ran": True,
        "n_samples": n,
        "ks": ks,
        "items_with_tests": len(with_tests),
        "statuses": statuses,
        "sandbox": isolation,
    }


def _add_pass_at_k(items, with_tests, results, scores, per_item) -> list[int]:
    """pass@k (mean and per item) and each item's execution record; the ks reported."""
    from advfusion_cli.metrics.passk import DEFAULT_KS, mean_pass_at_k, per_problem_pass_at_k

    counts = [(results[i].n, results[i].passed) for i in with_tests]
    means = mean_pass_at_k(counts, DEFAULT_KS)
    scores.update(means)
    for name in means:
        k = int(name.split("@")[1])
        values: list = [None] * len(items)
        for index, value in zip(with_tests, per_problem_pass_at_k(counts, k), strict=True):
            values[index] = value
        per_item[name] = values
    per_item["_execution"] = [None] * len(items)
    for index in with_tests:
        per_item["_execution"][index] = results[index].to_dict()
    return sorted(int(name.split("@")[1]) for name in means)


def _write_predictions(folder: Path, items, prompts, completions, per_item) -> None:
    lines = []
    for index, (item, prompt, completion) in enumerate(
        zip(items, prompts, completions, strict=True)
    ):
        row = {
            "id": item.id,
            "language": item.language,
            "source_language": item.source_language,
            "prompt_sha256": hashlib.sha256(prompt.prompt.encode("utf-8")).hexdigest(),
            "reference": item.target,
            "prediction": completion.texts[0],
        }
        if len(completion.texts) > 1:
            row["predictions"] = completion.texts
        row["prompt_tokens"] = completion.prompt_tokens
        row["new_tokens"] = completion.new_tokens
        if completion.truncated_prompt:
            row["truncated_prompt"] = True
        if completion.dropped:
            row["dropped"] = completion.dropped
        if "one_shot_id" in prompt.meta:
            row["one_shot_id"] = prompt.meta["one_shot_id"]
        execution = per_item.get("_execution")
        if execution is not None and execution[index] is not None:
            row["execution"] = execution[index]
        row["scores"] = {
            name: values[index]
            for name, values in per_item.items()
            if not name.startswith("_") and values[index] is not None
        }
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic.write_text(folder / PREDICTIONS_FILE, "\n".join(lines) + "\n")


def _provenance(loaded, spec: JobSpec) -> dict:
    from advfusion_cli.spec.loading import dump_spec
    from advfusion_cli.workflows.runs import environment_info

    env = environment_info()
    return {
        **loaded.provenance(),
        "spec": dump_spec(spec),
        "packages": env["packages"],
        "python": env["python"],
        "device": env["device"],
        "git": env["git"],
        "argv": env["argv"],
        "evaluated": now_iso(),
    }
