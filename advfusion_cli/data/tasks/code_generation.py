"""Code generation on xCodeEval program_synthesis: a problem statement in, a solution out.

The reference gives the shape only: "problem statement as a docstring; code up to the last
`\"\"\"`+newline is the prompt" (the authors' `code_gen_processor` in Amirresm/advfusion-cllm,
src/dataset/custom_processors.py, splits a prebuilt `code` field that is not published).
So the prompt here is `\"\"\"\\n<statement>\\n\"\"\"\\n` and the target the solution; the
statement is description, input/output specification, sample tests and notes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from advfusion_cli.data.languages import display_name
from advfusion_cli.data.records import Diagnostics, RecordError, TaskExample
from advfusion_cli.data.sources import RawRow
from advfusion_cli.data.splits import SPLITS, canonical_split
from advfusion_cli.data.stats import DataStats
from advfusion_cli.data.tasks.base import LoadRequest, TaskSpec
from advfusion_cli.data.tasks.xcodeeval import (
    Problem,
    carved_problems,
    iter_xcodeeval,
    select_hub_files,
)
from advfusion_cli.errors import UserError

NAME = "code-generation"
TRAINING_VALIDATION_FRACTION = 0.05  # xCodeEval train: ~7.5k problems -> ~370 for validation
DOCSTRING = '"""\n'


@dataclass(frozen=True)
class CodeGenerationOptions:
    # keep only solutions whose exec_outcome equals this (e.g. "PASSED"); rows without an
    # outcome are kept. None (default) keeps every solution.
    exec_outcome: str | None = None
    # write "Language: <name>" as the docstring's first line (off: the reference has no cue)
    language_header: bool = False
    # raw layout with no solution-row files: the split its problem-only rows belong to
    problems_split: str = "test"
    # When train has solutions but validation has none (xCodeEval: its 106 validation rows are
    # problems only), this fraction of train's problems, grouped by src_uid and chosen by a
    # hash seeded with split_seed, becomes a validation split with targets (replacing the
    # problem-only rows). 0 = off, the dataset as published; training asks for
    # TRAINING_VALIDATION_FRACTION so eval loss and keep-best have targets.
    validation_fraction: float = 0.0
    split_seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "problems_split", canonical_split(self.problems_split))
        if not 0 <= self.validation_fraction < 1:
            raise UserError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}."
            )


def render_statement(problem: Problem) -> str:
    """The problem statement that goes inside the docstring."""
    parts = [problem.description.strip()]
    if problem.input_spec.strip():
        parts.append("Input\n" + problem.input_spec.strip())
    if problem.output_spec.strip():
        parts.append("Output\n" + problem.output_spec.strip())
    samples = zip(problem.sample_inputs, problem.sample_outputs, strict=False)
    for number, (given, expected) in enumerate(samples, start=1):
        parts.append(f"Example {number}\nInput:\n{given.strip()}\nOutput:\n{expected.strip()}")
    if problem.notes.strip():
        parts.append(problem.notes.strip())
    return "\n\n".join(parts)


def render_prompt(
    problem: Problem, language: str, *, language_header: bool = False
) -> tuple[str, tuple[int, int]]:
    """`\"\"\"\\n[Language: X\\n]<statement>\\n\"\"\"\\n`, and the statement's span."""
    head = DOCSTRING + (f"Language: {display_name(language)}\n" if language_header else "")
    statement = render_statement(problem)
    return head + statement + "\n" + DOCSTRING, (len(head), len(head) + len(statement))


def hub_patterns(request: LoadRequest, options: CodeGenerationOptions):
    """Chooses from the repository listing: only the wanted splits' and languages' files."""

    def select(listing: list[str]) -> list[str]:
        return select_hub_files(listing, _read_splits(request, options), request.languages)

    return select


def _read_splits(request: LoadRequest, options: CodeGenerationOptions) -> tuple[str, ...]:
    """With a carve-out asked for, train and validation are read together: whether validation
    is carved out of train depends on both, and so does what is left of train."""
    wanted = set(request.splits)
    if options.validation_fraction > 0 and wanted & {"train", "validation"}:
        wanted |= {"train", "validation"}
    return tuple(s for s in SPLITS if s in wanted)


def read(
    root: Path,
    request: LoadRequest,
    options: CodeGenerationOptions,
    diagnostics: Diagnostics,
    stats: DataStats,
) -> list[TaskExample]:
    examples: list[TaskExample] = []
    problem_only: list[tuple[str, RawRow, Problem]] = []
    seen_languages: set[str] = set()
    solved: dict[str, set[str]] = {"train": set(), "validation": set()}  # split -> src_uids
    for split, row, problem, solution, error in iter_xcodeeval(
        root, _read_splits(request, options), options.problems_split, diagnostics
    ):
        if error is not None:
            diagnostics.malformed(error, row.where)
            continue
        assert problem is not None and solution is not None
        if solution.language is None:
            if not problem.tests:
                diagnostics.malformed(RecordError("empty target"), row.where)
                continue
            problem_only.append((split, row, problem))
            continue
        seen_languages.add(solution.language)
        if split in solved:
            solved[split].add(problem.src_uid)  # every language: the carve-out is shared
        if not request.wants(solution.language):
            continue
        wanted = options.exec_outcome
        if wanted and solution.exec_outcome and solution.exec_outcome != wanted:
            diagnostics.filtered(f"exec_outcome is not {wanted}")
            continue
        uid = solution.code_uid or f"{problem.src_uid}:{solution.language}:{row.line}"
        examples.append(
            _example(uid, split, row, problem, solution.language, solution.code, options)
        )

    carved: set[str] = set()
    if solved["train"] and not solved["validation"]:
        carved = carved_problems(solved["train"], options.validation_fraction, options.split_seed)
    if carved:
        examples = [_carve(e, carved) for e in examples]
        replaced = sum(1 for entry in problem_only if entry[0] == "validation")
        problem_only = [entry for entry in problem_only if entry[0] != "validation"]
        if replaced:  # a carved validation split has targets; problem-only rows are not mixed in
            reason = "validation problem without solutions (carved out of train)"
            diagnostics.filtered(reason, replaced)
    if problem_only:
        languages = sorted(request.languages) if request.languages else sorted(seen_languages)
        if not languages:
            raise UserError(
                f"{root}: the code-generation rows are problems without solutions or a language "
                "(evaluation rows); choose the language(s) to generate in (--lang)."
            )
        for split, row, problem in problem_only:
            for language in languages:
                uid = f"{problem.src_uid}:{language}"
                examples.append(_example(uid, split, row, problem, language, "", options))
    method = "dataset, validation carved out of train by problem" if carved else "dataset"
    for language in {e.language for e in examples}:
        stats.split_method[language] = method
    return examples


def _carve(example: TaskExample, carved: set[str]) -> TaskExample:
    """A train solution of a carved problem moves to validation."""
    if example.split != "train" or example.meta["src_uid"] not in carved:
        return example
    return replace(example, meta={**example.meta, "split": "validation"})


def _example(
    uid: str,
    split: str,
    row: RawRow,
    problem: Problem,
    language: str,
    code: str,
    options: CodeGenerationOptions,
) -> TaskExample:
    prompt, span = render_prompt(problem, language, language_header=options.language_header)
    return TaskExample(
        id=uid,
        task=NAME,
        language=language,
        prompt=prompt,
        target=code,
        tests=problem.tests,
        meta={
            "split": split,
            "inner_span": span,
            "src_uid": problem.src_uid,
            "problem_only": not code,
            "file": str(row.file),
            "line": row.line,
        },
    )


SPEC = TaskSpec(
    name=NAME,
    summary="xCodeEval program_synthesis: problem statement (docstring) -> solution",
    hub_id="NTU-NLP-sg/xCodeEval",
    options=CodeGenerationOptions,
    hub_patterns=hub_patterns,
    read=read,
)
