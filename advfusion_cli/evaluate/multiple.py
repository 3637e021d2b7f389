"""`advfusion evaluate --benchmark multipl-e`: the field's yardstick, in the run's own terms.

    problems (prompt as given) -> generate n samples, cut exactly at the row's stop_tokens
    -> program = prompt + completion + "\\n" + tests -> official verdict per program
    -> unbiased pass@k -> <name>.results.json.gz (MultiPL-E's format) + metrics.json

It plugs into evaluate's flow (load the run as trained, journaled generation, sandboxed
execution) with its own items, stop rule and scoring. `score_completion_files` is the other
half of the generate/execute split: it executes completion files made elsewhere, as given.

An evaluation lives in `<run>/evals/multipl-e-<dataset>-<ext>-<limit>-<decoding>-<problems8>`
(the base model's under the workdir's evals/, as for task evaluations), or in `--out`; it is
reused when asked again with the same settings, unless `force`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from advfusion_cli.errors import UserError
from advfusion_cli.evaluate.multiple_data import LoadedProblems, Problem, load_problems
from advfusion_cli.evaluate.multiple_execution import ExecutionJournal, execute_programs
from advfusion_cli.evaluate.progress import NullEvalProgress
from advfusion_cli.inference.generation import DecodingSettings, StopRule
from advfusion_cli.metrics.passk import mean_pass_at_k, per_problem_pass_at_k
from advfusion_cli.sandbox.multiple_languages import MultiplELanguage, resolve_multiple_language
from advfusion_cli.workflows import atomic

BENCHMARK = "multipl-e"
BENCHMARK_FORMAT_VERSION = 1
RESULTS_SUFFIX = ".results.json.gz"
COMPLETIONS_FOLDER = "completions"
BENCHMARK_KS = (1, 10, 100)

# The benchmark's protocol (MultiPL-E, Cassano et al. 2023): pass@1 from 20 samples at
# temperature 0.2, pass@10 and pass@100 from 200 samples at temperature 0.8; top-p 0.95.
PROTOCOL_N = 20
PROTOCOL_TEMPERATURE = 0.2
PROTOCOL_TOP_P = 0.95
PROTOCOL_HIGH_K_TEMPERATURE = 0.8
PROTOCOL_MAX_NEW_TOKENS = 512


def protocol_decoding(overrides: dict) -> DecodingSettings:
    """The benchmark's decoding, with whatever the user gave explicitly (not None) on top."""
    values = {
        "n": PROTOCOL_N,
        "temperature": PROTOCOL_TEMPERATURE,
        "top_p": PROTOCOL_TOP_P,
        "max_new_tokens": PROTOCOL_MAX_NEW_TOKENS,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return DecodingSettings(**values)


def protocol_notes(decoding: dict | None, ks: list[int]) -> list[str]:
    """Where this evaluation's pass@k does not follow the convention it is compared with."""
    notes = []
    if decoding is None:
        return ["completions made elsewhere: their decoding is not known here"]
    temperature = decoding.get("temperature") if decoding.get("mode") == "sampling" else None
    n = decoding.get("n", 1)
    if temperature is None:
        notes.append("greedy decoding: pass@1 is the greedy pass rate, not the sampled estimate")
    elif 1 in ks and temperature != PROTOCOL_TEMPERATURE:
        notes.append(
            f"pass@1 is conventionally reported at temperature {PROTOCOL_TEMPERATURE}; "
            f"this used {temperature:g}"
        )
    high_k = temperature is not None and any(k > 1 for k in ks)
    if high_k and temperature != PROTOCOL_HIGH_K_TEMPERATURE:
        notes.append(
            f"pass@10/100 are conventionally reported at temperature "
            f"{PROTOCOL_HIGH_K_TEMPERATURE}; this used {temperature:g}"
        )
    if n < PROTOCOL_N:
        notes.append(f"n = {n} samples per problem (the protocol uses {PROTOCOL_N}): noisier")
    if decoding.get("top_p") != PROTOCOL_TOP_P and temperature is not None:
        notes.append(f"top-p {decoding.get('top_p'):g} (the protocol uses {PROTOCOL_TOP_P})")
    return notes


@dataclass(frozen=True)
class ExactStopRule(StopRule):
    """MultiPL-E's cut: before the first occurrence of any stop token, else the text as is
    (EOS already ended it); unlike the task rules, a final newline is kept."""

    def apply(self, text: str) -> str:
        found = [p for p in (text.find(stop) for stop in self.stop_strings) if p != -1]
        return text[: min(found)] if found else text


def stop_rule(stop_tokens: tuple[str, ...]) -> ExactStopRule:
    shown = " or ".join(repr(s) for s in stop_tokens)
    return ExactStopRule(stop_tokens, f"EOS or the row's stop_tokens ({shown})" if shown else "EOS")


@dataclass(frozen=True)
class BenchmarkRequest:
    """What to evaluate on and how; the same request scores the same problems the same way."""

    language: str  # MultiPL-E extension (lua, rkt, ...)
    dataset: str = "humaneval"
    data: str | None = None  # local folder/JSONL or hub:nuprl/MultiPL-E[@revision]
    limit: int | None = None
    decoding: DecodingSettings = field(default_factory=lambda: protocol_decoding({}))
    execute: bool = True
    workers: int | None = None
    autocast: bool = True
    force: bool = False

    def leaf(self, problems_sha256: str) -> str:
        limit = "all" if self.limit is None else str(self.limit)
        fp32 = "" if self.autocast else "-noautocast"
        seed = f"-seed{self.decoding.seed}" if self.decoding.seed else ""
        return (
            f"{BENCHMARK}-{self.dataset}-{self.language}-{limit}-{self.decoding.label}"
            f"{seed}{fp32}-{problems_sha256[:8]}"
        )


@dataclass(frozen=True)
class _Leaf:
    """evaluation_folder's view of a request: only its leaf name."""

    name: str

    def leaf(self) -> str:
        return self.name


def check_executable(row: MultiplELanguage) -> None:
    """One line naming what to install, before any generation: never a silent zero."""
    from advfusion_cli.sandbox.multiple_runner import find_multiple_toolchain, install_hint

    if find_multiple_toolchain(row.ext) is None:
        raise UserError(install_hint(row) + "; or pass --no-execute to only generate.")


def _reusable(
    record: dict | None, loaded: LoadedProblems, request: BenchmarkRequest, method: str
) -> bool:
    if not record or record.get("format_version") != BENCHMARK_FORMAT_VERSION:
        return False
    if record.get("method") != method:
        return False
    benchmark = record.get("benchmark", {})
    if benchmark.get("problems_sha256") != loaded.source["problems_sha256"]:
        return False
    if record.get("decoding") != request.decoding.to_dict():  # --out reused with other settings
        return False
    return record.get("execution", {}).get("ran", False) or not request.execute


def benchmark_evaluation_state(ref, request: BenchmarkRequest, spec) -> tuple[Path, bool]:
    """Where `evaluate_benchmark` writes for `ref` (without --out), and whether what is there
    would be reused as finished: a grid's job graph skips such a stage."""
    from advfusion_cli.evaluate.workflow import _spec_for, read_evaluation

    row = resolve_multiple_language(request.language)
    loaded = load_problems(request.data, request.dataset, row.ext, request.limit)
    spec = _spec_for(ref, spec)
    folder = _folder(ref, spec, _Leaf(request.leaf(loaded.source["problems_sha256"])))
    done = not request.force and _reusable(read_evaluation(folder), loaded, request, ref.method)
    return folder, done


def evaluate_benchmark(
    ref, request: BenchmarkRequest, *, spec=None, out: Path | None = None, progress=None
):
    """Generate with the run (or base model) on MultiPL-E problems, execute, score."""
    from advfusion_cli.evaluate.journal import GenerationJournal, journal_key
    from advfusion_cli.evaluate.paths import check_output_folder, check_workdir
    from advfusion_cli.evaluate.workflow import (
        EvaluationResult,
        _load,
        _provenance,
        _spec_for,
        read_evaluation,
    )
    from advfusion_cli.inference.generation import GenerationStats, generate_completions
    from advfusion_cli.inference.precision import autocast_dtype
    from advfusion_cli.inference.precision import describe as describe_precision

    progress = progress or NullEvalProgress()
    row = resolve_multiple_language(request.language)
    if request.execute:
        check_executable(row)
    loaded_problems = load_problems(request.data, request.dataset, row.ext, request.limit)
    problems = loaded_problems.problems
    spec = _spec_for(ref, spec)
    leaf = _Leaf(request.leaf(loaded_problems.source["problems_sha256"]))
    if out is not None:
        folder = check_output_folder(out, "--out")
    else:
        if ref.run is None:
            check_workdir(spec.output.workdir)
        folder = check_output_folder(_folder(ref, spec, leaf), "Evaluation folder")
    previous = read_evaluation(folder)
    if not request.force and _reusable(previous, loaded_problems, request, ref.method):
        return EvaluationResult(folder, previous, reused=True)

    examples = [_example(problem, row) for problem in problems]
    loaded = _load(ref, spec)
    device = next(loaded.model.parameters()).device
    autocast = autocast_dtype(spec.training.precision, device.type, enabled=request.autocast)
    decoding = request.decoding
    timings: dict[str, float] = {}
    started = time.perf_counter()
    journal = GenerationJournal.open(
        folder,
        journal_key(
            {
                "benchmark": loaded_problems.source["problems_sha256"],
                "decoding": decoding.to_dict(),
                "stop": "multipl-e exact",
                "precision": describe_precision(autocast),
                "model": loaded.provenance(),
                "max_prompt_tokens": spec.data.max_prompt_tokens,
            }
        ),
        [p.name for p in problems],
    )
    resumed_items = len(journal.done)
    stats = GenerationStats(decoding.batch_size)
    completions: list = [None] * len(problems)
    progress.begin(f"{ref.method} -> MultiPL-E {row.ext}: generate", len(problems))
    # The stop tokens are one list per language in MultiPL-E; rows that differ still get
    # exactly their own, one generation call per distinct list.
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, problem in enumerate(problems):
        groups.setdefault(problem.stop_tokens, []).append(index)
    for stops, indices in groups.items():
        done = {j: journal.done[i] for j, i in enumerate(indices) if i in journal.done}

        def record(finished, indices=indices):
            journal.append([(indices[j], completion) for j, completion in finished])

        got = generate_completions(
            loaded.model,
            loaded.tokenizer,
            [examples[i] for i in indices],
            decoding,
            stop_rule(stops),
            max_prompt_tokens=spec.data.max_prompt_tokens,
            on_batch=progress.advance,
            done=done,
            on_results=record,
            autocast=autocast,
            stats=stats,
        )
        for j, completion in zip(indices, got, strict=True):
            completions[j] = completion
    progress.end()
    timings["generation_s"] = round(time.perf_counter() - started, 3)

    texts = [c.texts for c in completions]
    scored, per_problem, executions = _execute_and_score(
        row, problems, texts, folder, request.execute, request.workers, progress
    )
    timings.update(scored.pop("timings"))
    record = {
        "format_version": BENCHMARK_FORMAT_VERSION,
        "method": ref.method,
        "target": row.ext,
        "task": "code-generation",
        "benchmark": {"name": BENCHMARK, **loaded_problems.source},
        "n_items": len(problems),
        # The keys a task evaluation has, so that compare reads both alike.
        "split": "test",
        "limit": request.limit,
        "selection": {"seed": 0, "ids_sha256": loaded_problems.source["problems_sha256"]},
        "decoding": decoding.to_dict(),
        "stop_rule": "the row's stop_tokens, exactly (MultiPL-E), or EOS",
        "max_prompt_tokens": spec.data.max_prompt_tokens,
        **scored,
        "protocol": {
            "program": "prompt + completion + '\\n' + tests",
            "pass": "status OK and exit code 0",
            "notes": protocol_notes(decoding.to_dict(), scored.get("ks", [])),
        },
        "dropped_prompts": sum(c.dropped is not None for c in completions),
        "truncated_prompts": sum(c.truncated_prompt for c in completions),
        "timings": timings,
        "precision": describe_precision(autocast),
        "generation": {**stats.to_dict(), "resumed_items": resumed_items},
        "provenance": _provenance(loaded, spec),
    }
    _write(folder, row, problems, texts, per_problem, record)
    if executions is not None:
        executions.remove()
    journal.remove()
    return EvaluationResult(folder, record)


def _folder(ref, spec, leaf: _Leaf) -> Path:
    """A run's benchmark evaluations live in its evals/; the base model's in the workdir's,
    named by the model alone (the task data plays no part in a benchmark)."""
    from advfusion_cli.workflows.runs import Workdir, identity_hash

    if ref.run is not None:
        return ref.run.path / "evals" / leaf.leaf()
    identity = identity_hash({"method": ref.method, "model": spec.model.model_dump(mode="json")})
    return Workdir(spec.output.workdir).root / "evals" / f"{ref.method}-{identity}" / leaf.leaf()


def _example(problem: Problem, row: MultiplELanguage):
    from advfusion_cli.data.records import TaskExample

    # The prompt as given: no template, no cutting span (a prompt too long is dropped).
    return TaskExample(
        id=problem.name, task="code-generation", language=row.ext, prompt=problem.prompt, target=""
    )


def _execute_and_score(
    row: MultiplELanguage,
    problems: list[Problem],
    completions: list[list[str]],
    folder: Path,
    execute: bool,
    workers: int | None,
    progress=None,
) -> tuple[dict, list[list[dict]] | None, ExecutionJournal | None]:
    """(the metrics.json part: scores, per-problem pass@k, statuses; the results of each
    problem's programs; the execution journal to remove once everything is written)."""
    from advfusion_cli.sandbox.programs import sandbox_info

    progress = progress or NullEvalProgress()
    if not execute:
        reason = "--no-execute"
        summary = {"scores": {}, "execution": {"ran": False, "reason": reason}, "timings": {}}
        return summary, None, None
    started = time.perf_counter()
    programs = [p.program(c) for p, texts in zip(problems, completions, strict=True) for c in texts]
    journal = ExecutionJournal(folder)
    progress.begin(f"execute {row.ext} programs", 1)
    results, runs = execute_programs(
        row.ext, programs, journal, workers=workers, on_progress=progress.progress_to
    )
    progress.end()
    per_problem: list[list[dict]] = []
    position = 0
    for texts in completions:
        per_problem.append(results[position : position + len(texts)])
        position += len(texts)
    from advfusion_cli.sandbox.multiple_runner import find_multiple_toolchain, is_pass

    counts = [(len(r), sum(is_pass(x) for x in r)) for r in per_problem]
    n_min = min(n for n, _ in counts)
    ks = [k for k in BENCHMARK_KS if k <= n_min]
    scores = mean_pass_at_k(counts, ks)
    statuses: dict[str, int] = {}
    for result in results:
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
    ready = find_multiple_toolchain(row.ext)
    isolation = {k: v for k, v in sandbox_info().items() if k != "executable_languages"}
    summary = {
        "scores": scores,
        "ks": ks,
        "per_problem": {
            p.name: {
                "n": n,
                "passed": c,
                **{f"pass@{k}": v for k, v in zip(ks, _per_problem(n, c, ks), strict=True)},
            }
            for p, (n, c) in zip(problems, counts, strict=True)
        },
        "execution": {
            "ran": True,
            "language": row.ext,
            "n_samples": min((len(c) for c in completions), default=0),
            "programs": len(programs),
            "sandbox_runs": runs,
            "resumed_runs": journal.resumed,
            "statuses": statuses,
            "toolchain": ready.tools if ready else {},
            "timeout_s": row.timeout_s,
            "sandbox": isolation,
        },
        "timings": {"execution_s": round(time.perf_counter() - started, 3)},
    }
    return summary, per_problem, journal


def _per_problem(n: int, c: int, ks: list[int]) -> list[float]:
    return [per_problem_pass_at_k([(n, c)], k)[0] for k in ks]


def _gzip_json(value: object) -> bytes:
    # mtime=0: the same results give the same bytes.
    return gzip.compress(json.dumps(value, ensure_ascii=False).encode("utf-8"), mtime=0)


def _problem_row(problem: Problem, row: MultiplELanguage, completions: list[str]) -> dict:
    return {
        "name": problem.name,
        "language": problem.language or row.ext,
        "prompt": problem.prompt,
        "tests": problem.tests,
        "stop_tokens": list(problem.stop_tokens),
        "completions": completions,
    }


def _write(folder, row, problems, completions, per_problem, record) -> None:
    """Completion files, results files (when executed), predictions, then metrics.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / COMPLETIONS_FOLDER).mkdir(exist_ok=True)
    lines = []
    for index, problem in enumerate(problems):
        base = _problem_row(problem, row, completions[index])
        atomic.write_bytes(
            folder / COMPLETIONS_FOLDER / f"{problem.name}.json.gz", _gzip_json(base)
        )
        line = {
            "id": problem.name,
            "language": row.ext,
            "prompt_sha256": hashlib.sha256(problem.prompt.encode("utf-8")).hexdigest(),
            "reference": "",  # MultiPL-E scores by execution; it has no reference solution
            "prediction": completions[index][0] if completions[index] else "",
            "predictions": completions[index],
        }
        if per_problem is not None:
            results = per_problem[index]
            atomic.write_bytes(
                folder / f"{problem.name}{RESULTS_SUFFIX}", _gzip_json({**base, "results": results})
            )
            line["statuses"] = [r["status"] for r in results]
            line["scores"] = {
                k: v for k, v in record["per_problem"][problem.name].items() if k.startswith("pass")
            }
        lines.append(json.dumps(line, ensure_ascii=False))
    from advfusion_cli.evaluate.workflow import METRICS_FILE, PREDICTIONS_FILE

    atomic.write_text(folder / PREDICTIONS_FILE, "\n".join(lines) + "\n")
    atomic.write_json(folder / METRICS_FILE, record)  # last: its presence marks a finished eval


def read_completion_files(folder: Path, language: str | None) -> tuple[MultiplELanguage, list]:
    """MultiPL-E completion files `<name>.json[.gz]` in `folder`: (language row, [(problem,
    completions)]) sorted by name; results files and other JSON are not completion files."""
    from advfusion_cli.evaluate.multiple_data import problem_from_row

    if not folder.is_dir():
        raise UserError(f"--completions '{folder}' is not a folder.")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and (p.name.endswith(".json") or p.name.endswith(".json.gz"))
        and ".results.json" not in p.name
    )
    wanted = resolve_multiple_language(language) if language else None
    entries = []
    rows: dict[str, MultiplELanguage] = {}
    for path in files:
        try:
            raw = path.read_bytes()
            data = json.loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw)
        except (OSError, ValueError, EOFError) as err:
            raise UserError(f"--completions: cannot read '{path}': {err}.") from err
        if not isinstance(data, dict) or "completions" not in data:
            continue  # not a completion file (e.g. metrics.json)
        problem = problem_from_row(data, str(path))
        completions = data["completions"]
        if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
            raise UserError(f"--completions: '{path}': completions must be a list of strings.")
        if not completions:
            raise UserError(f"--completions: '{path}' has no completions.")
        row = resolve_multiple_language(problem.language or (language or ""))
        if wanted is not None and row.ext != wanted.ext:
            continue
        rows[row.ext] = row
        entries.append((problem, completions))
    if not entries:
        which = f" in language {wanted.ext}" if wanted else ""
        raise UserError(f"--completions '{folder}' holds no MultiPL-E completion files{which}.")
    if len(rows) > 1:
        raise UserError(
            f"--completions '{folder}' mixes languages ({', '.join(sorted(rows))}); pick one "
            "with --lang."
        )
    return next(iter(rows.values())), entries


def score_completion_files(
    completions_dir: Path,
    *,
    language: str | None,
    out: Path,
    workers: int | None = None,
    force: bool = False,
    progress=None,
):
    """Execute completion files made elsewhere, as given (no cutting), and score them."""
    from advfusion_cli.evaluate.paths import check_output_folder
    from advfusion_cli.evaluate.workflow import EvaluationResult, read_evaluation
    from advfusion_cli.workflows.runs import now_iso

    row, entries = read_completion_files(completions_dir, language)
    check_executable(row)
    folder = check_output_folder(out, "--out")
    problems = [problem for problem, _ in entries]
    completions = [list(c) for _, c in entries]
    from advfusion_cli.evaluate.multiple_data import digest

    sha = digest(problems)
    previous = read_evaluation(folder)
    completions_sha = hashlib.sha256(
        json.dumps(completions, ensure_ascii=False).encode("utf-8")
    ).hexdigest()
    if (
        not force
        and previous
        and previous.get("format_version") == BENCHMARK_FORMAT_VERSION
        and previous.get("benchmark", {}).get("completions_sha256") == completions_sha
        and previous.get("benchmark", {}).get("problems_sha256") == sha
    ):
        return EvaluationResult(folder, previous, reused=True)
    scored, per_problem, executions = _execute_and_score(
        row, problems, completions, folder, True, workers, progress
    )
    timings = scored.pop("timings")
    record = {
        "format_version": BENCHMARK_FORMAT_VERSION,
        "method": "completions",
        "target": row.ext,
        "task": "code-generation",
        "benchmark": {
            "name": BENCHMARK,
            "kind": "completions",
            "source": str(completions_dir),
            "language": row.ext,
            "problems": len(problems),
            "problems_sha256": sha,
            "completions_sha256": completions_sha,
        },
        "n_items": len(problems),
        "decoding": None,
        **scored,
        "protocol": {
            "program": "prompt + completion + '\\n' + tests (completions executed as given)",
            "pass": "status OK and exit code 0",
            "notes": protocol_notes(None, scored.get("ks", [])),
        },
        "timings": timings,
        "provenance": {"evaluated": now_iso()},
    }
    _write(folder, row, problems, completions, per_problem, record)
    executions.remove()
    return EvaluationResult(folder, record)


def summary_lines(record: dict, folder: Path) -> list[str]:
    """What the command prints: pass@k with the protocol that produced it."""
    benchmark = record["benchmark"]
    decoding = record.get("decoding")
    if decoding is None:
        how = "completions as given"
    elif decoding.get("mode") == "sampling":
        how = (
            f"n={decoding['n']}, temperature {decoding['temperature']:g}, top-p "
            f"{decoding['top_p']:g}, max {decoding['max_new_tokens']} new tokens"
        )
    else:
        how = f"greedy, max {decoding['max_new_tokens']} new tokens"
    where = benchmark.get("config") or (
        f"{benchmark['dataset']}-{record['target']}"
        if benchmark.get("dataset")
        else f"{record['target']} completion files"
    )
    revision = f" @ {benchmark['revision']}" if benchmark.get("revision") else ""
    lines = [
        f"MultiPL-E {where}{revision}: {record['n_items']} problems, {record['method']}, {how}"
    ]
    execution = record.get("execution", {})
    if not execution.get("ran"):
        lines.append(f"not executed ({execution.get('reason', 'no execution')}): no pass@k")
    else:
        scores = "  ".join(f"{name} = {value:.4f}" for name, value in record["scores"].items())
        lines.append(scores)
        statuses = ", ".join(f"{s} {c}" for s, c in sorted(execution["statuses"].items()))
        lines.append(
            f"programs: {execution['programs']} ({execution['sandbox_runs']} distinct runs; "
            f"{statuses}); pass = status OK and exit code 0"
        )
    for note in record.get("protocol", {}).get("notes", []):
        lines.append(f"note: {note}")
    lines.append(f"results: {folder}")
    return lines
