"""Code generation on xCodeEval program_synthesis: a problem statement in, a solution out.

The reference gives the shape only: "problem statement as a docstring; code up to the last
`\"\"\"`+newline is the prompt" (the authors' `code_gen_processor` in Amirresm/advfusion-cllm,
src/dataset/custom_processors.py, splits a prebuilt `code` field that is not published).
So the prompt here is `\"\"\"\\n<statement>\\n\"\"\"\\n` and the target the solution; the
statement is description, input/output specification, sample tests and notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from advfusion_cli.data.languages import display_name
from advfusion_cli.data.records import Diagnostics, RecordError, TaskExample
from advfusion_cli.data.sources import RawRow
from advfusion_cli.data.splits import canonical_split
from advfusion_cli.data.stats import DataStats
from advfusion_cli.data.tasks.base import LoadRequest, TaskSpec
from advfusion_cli.data.tasks.xcodeeval import Problem, iter_xcodeeval
from advfusion_cli.errors import UserError

NAME = "code-generation"
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "problems_split", canonical_split(self.problems_split))


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


def hub_patterns(request: LoadRequest, options: CodeGenerationOptions) -> list[str]:
    patterns = ["problem_descriptions.jsonl", "unittest_db.json"]
    return patterns + [f"program_synthesis/{split}/*" for split in request.splits]


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
    for split, row, problem, solution, error in iter_xcodeeval(
        root, request.splits, options.problems_split, diagnostics
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
    for language in {e.language for e in examples}:
        stats.split_method[language] = "dataset"
    return examples


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
