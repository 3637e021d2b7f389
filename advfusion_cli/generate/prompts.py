"""A user's input rendered into the task's training prompt, by the data package's own renderers.

- commit-message: a diff (any number of files) -> difflib's shape (diffs.py) -> the
  `### Diff:` prompt. By default all files go into one prompt, one after the other, as one
  commit; `per_file=True` makes one prompt (and one message) per file, the shape of every
  training example (CommitPackFT commits change one file).
- code-translation: a source file -> `### Code written in {src}:` prompt; the source
  language comes from `--from` or the file's extension, the target from `--to` or the run.
- code-generation: a problem statement -> the docstring prompt. The whole text is the
  statement's description (its input/output/examples parts are just more text of it).

Input of the wrong kind for the task (text that is not a diff for commit messages, a diff
or a source file where a problem statement is expected) is a one-line UserError.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from advfusion_cli.data.languages import canonical_language, display_name
from advfusion_cli.data.records import TaskExample
from advfusion_cli.errors import UserError
from advfusion_cli.generate.diffs import looks_like_diff, parse_diff
from advfusion_cli.generate.extensions import language_of_path
from advfusion_cli.generate.inputs import InputText

TASKS = ("commit-message", "code-translation", "code-generation", "custom")
# What truncation cuts in each task's prompt (for the warning that says how much).
INNER_TEXT = {
    "commit-message": "diff",
    "code-translation": "source code",
    "code-generation": "problem statement",
    "custom": "input",
}
PROSE_EXTENSIONS = {".md", ".markdown", ".txt", ".rst", ""}


@dataclass(frozen=True)
class PromptItem:
    """One prompt to generate from, and what the user should hear about how it was built."""

    example: TaskExample
    notes: tuple[str, ...] = field(default=())  # e.g. files of a diff that had no text hunks

    @property
    def id(self) -> str:
        return self.example.id


def _language_option(value: str | None, flag: str) -> str | None:
    if value is None:
        return None
    try:
        return canonical_language(value)
    except UserError as err:
        raise UserError(f"{flag}: {err}") from None


def commit_message_items(
    source: InputText, language: str, *, per_file: bool = False
) -> list[PromptItem]:
    from advfusion_cli.data.tasks.commit_message import render_prompt

    parsed = parse_diff(source.text)
    if not parsed.files:
        if parsed.skipped:
            raise UserError(
                f"The diff on {source.described} has no text changes (only "
                f"{', '.join(parsed.skipped)}: binary files, renames or mode changes)."
            )
        raise UserError(
            f"{source.described.capitalize()} is not a unified diff (no '@@ -a,b +c,d @@' hunk); "
            "commit-message takes `git diff` output or a .diff/.patch file."
        )
    notes = ()
    if parsed.skipped:
        notes = (
            f"skipped {len(parsed.skipped)} file(s) without text changes: "
            f"{', '.join(parsed.skipped)}",
        )
    groups = [[f] for f in parsed.files] if per_file else [parsed.files]
    items = []
    for files in groups:
        diff = "\n".join(f.render() for f in files)
        prompt, span = render_prompt(diff)
        ends, offset = [], span[0]  # where each file's diff ends in the prompt (cut report)
        for number, file in enumerate(files):
            offset += len(file.render()) + (1 if number else 0)  # "\n" between files
            ends.append(offset)
        item_id = f"{source.name}:{files[0].path}" if per_file else source.name
        meta = {
            "inner_span": span,
            "input": source.name,
            "files": [f.path for f in files],
            "file_ends": ends,
        }
        example = TaskExample(item_id, "commit-message", language, prompt, "", meta=meta)
        items.append(PromptItem(example, notes))
    return items


def translation_item(
    source: InputText, source_language: str | None, target_language: str
) -> PromptItem:
    from advfusion_cli.data.tasks.code_translation import render_prompt

    if looks_like_diff(source.text):
        raise UserError(
            f"{source.described.capitalize()} looks like a diff; code-translation takes a "
            "source file (a commit message from a diff is --task commit-message)."
        )
    language = _language_option(source_language, "--from")
    if language is None:
        if source.path is None:
            raise UserError(
                "Reading code from standard input: pass --from to name its language "
                "(e.g. --from java)."
            )
        language = language_of_path(source.path)
        if language is None:
            suffix = source.path.suffix or "no extension"
            raise UserError(
                f"Cannot tell the language of '{source.name}' from its extension ({suffix}); "
                "pass --from (e.g. --from java)."
            )
    if language == target_language:
        raise UserError(
            f"'{source.name}' is already {display_name(language)} (the target language); "
            "pass --to to translate it into another language."
        )
    prompt, span = render_prompt(language, source.text, target_language)
    example = TaskExample(
        source.name,
        "code-translation",
        target_language,
        prompt,
        "",
        source_language=language,
        meta={"inner_span": span, "input": source.name},
    )
    return PromptItem(example)


def generation_item(source: InputText, language: str) -> PromptItem:
    from advfusion_cli.data.tasks.code_generation import render_prompt
    from advfusion_cli.data.tasks.xcodeeval import Problem

    if looks_like_diff(source.text):
        raise UserError(
            f"{source.described.capitalize()} looks like a diff; code-generation takes a "
            "problem statement (a commit message from a diff is --task commit-message)."
        )
    if source.path is not None and source.path.suffix.lower() not in PROSE_EXTENSIONS:
        code_language = language_of_path(source.path)
        if code_language is not None:
            raise UserError(
                f"'{source.name}' looks like {display_name(code_language)} source code; "
                "code-generation takes a problem statement (plain text or Markdown, e.g. "
                "problem.md)."
            )
    problem = Problem(
        src_uid=source.name,
        description=source.text,
        input_spec="",
        output_spec="",
        notes="",
        sample_inputs=(),
        sample_outputs=(),
        tests=(),
    )
    prompt, span = render_prompt(problem, language)  # no language header, as in training
    meta = {"inner_span": span, "input": source.name}
    return PromptItem(TaskExample(source.name, "code-generation", language, prompt, "", meta=meta))


def build_items(
    task: str,
    source: InputText,
    *,
    run_target: str,
    source_language: str | None = None,
    target_language: str | None = None,
    per_file: bool = False,
    custom=None,
) -> list[PromptItem]:
    """The prompt(s) for one input under `task`, for a run trained on `run_target`;
    `custom` is the run's data.custom block (a custom task's template)."""
    if task not in TASKS:
        from advfusion_cli.errors import unknown_name_error

        raise unknown_name_error("task", task, TASKS)
    if source_language is not None and task != "code-translation":
        raise UserError(f"--from applies to code-translation only, not {task}.")
    if per_file and task != "commit-message":
        raise UserError(f"--per-file applies to commit-message only, not {task}.")
    target = _language_option(target_language, "--to")
    if task == "code-translation":
        return [translation_item(source, source_language, target or run_target)]
    if target is not None and target != run_target:
        raise UserError(
            f"--to {target}: this {task} run was trained for {run_target} and its prompt "
            "names no language; use a run trained for the language you want."
        )
    if task == "commit-message":
        return commit_message_items(source, run_target, per_file=per_file)
    if task == "custom":
        from advfusion_cli.generate.custom_prompt import custom_item

        return [custom_item(source, custom, run_target)]
    return [generation_item(source, run_target)]
