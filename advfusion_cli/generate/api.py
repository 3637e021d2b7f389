"""Generate from a trained run in one call: the model loads once, prompts are built as in training.

    from advfusion_cli.generate import Generator, generate

    generate("advfusion/ruby", "code-translation", java_code, source_language="java")
    gen = Generator("advfusion-runs/runs/lora-ruby-49663e5d")   # reusable across calls
    gen.generate(problem, n=5, temperature=0.8)                  # -> five strings

Decoding is `advfusion_cli.inference` (the same batched, left-padded generation and stop
rules as `evaluate`), so what a run generates here is what it was scored on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from advfusion_cli.errors import UserError
from advfusion_cli.generate.inputs import STDIN_NAME, InputText, require_text
from advfusion_cli.generate.prompts import INNER_TEXT, PromptItem, build_items
from advfusion_cli.workflows.runs import DEFAULT_WORKDIR, RunDir


class GenerationWarning(UserWarning):
    """Something the user should know about a generation (skipped files, empty output)."""


class PromptCutWarning(GenerationWarning):
    """An input was longer than the run's prompt budget and its end was cut."""


@dataclass(frozen=True)
class Note:
    """A warning about one input: `cut` (its prompt was cut), `input` or `empty` output."""

    kind: str
    message: str


@dataclass(frozen=True)
class GenerationRecord:
    """One generated sample: what went in, what came out."""

    id: str
    sample: int  # 0-based index among the input's n samples
    task: str
    language: str  # what is generated (the run's target, or --to for translation)
    source_language: str | None
    prompt: str  # as the model saw it, after any cut
    prediction: str
    prompt_tokens: int
    new_tokens: int
    truncated: bool
    run_id: str
    method: str

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "sample": self.sample,
            "task": self.task,
            "language": self.language,
            "source_language": self.source_language,
            "run": self.run_id,
            "method": self.method,
            "prompt": self.prompt,
            "prediction": self.prediction,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "truncated": self.truncated,
        }


@dataclass
class GenerationResult:
    records: list[GenerationRecord]
    max_new_tokens: int
    notes: list[Note] = field(default_factory=list)  # cut prompts, skipped files, empty output

    @property
    def texts(self) -> list[str]:
        return [r.prediction for r in self.records]


class Generator:
    """A finished run for generation: resolved and checked at once, its model (base with its
    quantization, adapters, fusion) loaded on the first generation and kept for the next."""

    def __init__(
        self,
        run: str | Path | RunDir,
        *,
        task: str | None = None,
        workdir: str | Path = DEFAULT_WORKDIR,
        status: Callable[[str], None] | None = None,
    ):
        from advfusion_cli.generate.runs import resolve_generation_run
        from advfusion_cli.spec.loading import load_spec

        self._say = status or (lambda message: None)
        if task is not None:
            task = _task_name(task)
        resolved = resolve_generation_run(run, Path(workdir), task)
        if resolved.how:
            self._say(resolved.how)
        self.run_dir = resolved.run
        self.spec = load_spec(self.run_dir.job_yaml)
        if task is not None and task != self.spec.data.task:
            raise UserError(
                f"Run '{self.run_dir.id}' was trained for {self.spec.data.task}, not {task}; "
                f"use --task {self.spec.data.task} or a {task} run."
            )
        self._loaded = None

    @property
    def loaded(self):
        """The run's model and tokenizer (LoadedRun), loaded on first use and then kept."""
        if self._loaded is None:
            from advfusion_cli.inference.loading import load_run

            model = self.spec.model
            quantized = "" if model.quantization == "none" else f", {model.quantization}"
            self._say(f"loading run {self.run_dir.id} (base {model.name_or_path}{quantized})")
            try:
                self._loaded = load_run(self.run_dir)
            except UserError as err:
                raise UserError(f"Cannot load run '{self.run_dir.id}': {err}") from None
        return self._loaded

    @property
    def task(self) -> str:
        return self.spec.data.task

    @property
    def target(self) -> str:
        return self.spec.data.target

    @property
    def method(self) -> str:
        """The run's method label: lora, task-adapter, advfusion-compacter, ..."""
        from advfusion_cli.workflows.stages import method_label

        return method_label(self.spec)

    def prompts(
        self,
        source: InputText | str,
        *,
        source_language: str | None = None,
        target_language: str | None = None,
        per_file: bool = False,
    ) -> list[PromptItem]:
        """The prompt(s) one input becomes under this run's task, before any cut."""
        if isinstance(source, str):
            source = require_text(InputText(STDIN_NAME, source))
        return build_items(
            self.task,
            source,
            run_target=self.target,
            source_language=source_language,
            target_language=target_language,
            per_file=per_file,
            custom=self.spec.data.custom,
        )

    def run(
        self,
        items: Sequence[PromptItem],
        *,
        n: int = 1,
        temperature: float | None = None,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int = 0,
        max_new_tokens: int | None = None,
        batch_size: int = 8,
        on_batch: Callable[[int], None] | None = None,
    ) -> GenerationResult:
        """n samples per prompt: greedy unless n > 1 or a temperature is given."""
        from advfusion_cli.data.encoding import DroppedExample
        from advfusion_cli.generate.budget import (
            auto_max_new_tokens,
            measure_cut,
            prompt_budget,
            too_long_error,
        )
        from advfusion_cli.inference.generation import (
            DecodingSettings,
            encode_prompts,
            generate_completions,
            model_max_positions,
        )
        from advfusion_cli.inference.task_rules import task_stop_rule

        if not items:
            raise UserError("Nothing to generate from: no prompts.")
        check_decoding(
            n=n,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        )
        model, tokenizer = self.loaded.model, self.loaded.tokenizer
        examples = [item.example for item in items]
        max_prompt = self.spec.data.max_prompt_tokens
        positions = model_max_positions(model)
        if max_new_tokens is None:
            first = encode_prompts(tokenizer, examples, max_prompt, 0, positions)
            lengths = [f["prompt_length"] for f in first if not isinstance(f, DroppedExample)]
            max_new_tokens = auto_max_new_tokens(lengths, positions)
        settings = DecodingSettings(
            max_new_tokens=max_new_tokens,
            n=n,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            batch_size=batch_size,
            seed=seed,
        )
        budget = prompt_budget(max_prompt, positions, max_new_tokens)
        features = encode_prompts(tokenizer, examples, max_prompt, max_new_tokens, positions)
        notes: list[Note] = []
        for item, feature in zip(items, features, strict=True):
            if isinstance(feature, DroppedExample):
                raise too_long_error(item.id, budget, positions)
            notes.extend(Note("input", f"{item.id}: {note}") for note in item.notes)
            if feature["truncated"]:
                what = INNER_TEXT[self.task]
                cut = measure_cut(tokenizer, item.example, feature, budget, what)
                notes.append(Note("cut", cut.message(item.id)))
        completions = generate_completions(
            model,
            tokenizer,
            examples,
            settings,
            task_stop_rule(self.spec.data),
            max_prompt_tokens=max_prompt,
            on_batch=on_batch,
            # samples follow the prompt, not where it came from (a file, stdin, a diff)
            stream_keys=[prompt_key(example.prompt) for example in examples],
        )
        records = []
        for item, feature, completion in zip(items, features, completions, strict=True):
            prompt = tokenizer.decode(feature["input_ids"], skip_special_tokens=True)
            if not feature["truncated"]:
                prompt = item.example.prompt  # exactly the text built, not a decode of it
            for sample, text in enumerate(completion.texts):
                if not text.strip():
                    label = f" (sample {sample + 1})" if settings.n > 1 else ""
                    notes.append(Note("empty", f"{item.id}{label}: the model generated nothing."))
                records.append(
                    GenerationRecord(
                        id=item.id,
                        sample=sample,
                        task=self.task,
                        language=item.example.language,
                        source_language=item.example.source_language,
                        prompt=prompt,
                        prediction=text,
                        prompt_tokens=completion.prompt_tokens,
                        new_tokens=completion.new_tokens[sample] if completion.new_tokens else 0,
                        truncated=completion.truncated_prompt,
                        run_id=self.run_dir.id,
                        method=self.method,
                    )
                )
        return GenerationResult(records, max_new_tokens, notes)

    def generate(
        self,
        text: str,
        *,
        n: int = 1,
        temperature: float | None = None,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int = 0,
        max_new_tokens: int | None = None,
        source_language: str | None = None,
        target_language: str | None = None,
    ) -> list[str]:
        """n generations for one input (a diff's files together in one prompt)."""
        items = self.prompts(text, source_language=source_language, target_language=target_language)
        result = self.run(
            items,
            n=n,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            max_new_tokens=max_new_tokens,
        )
        for note in result.notes:
            category = PromptCutWarning if note.kind == "cut" else GenerationWarning
            warnings.warn(note.message, category, stacklevel=2)
        return result.texts


def check_decoding(*, max_new_tokens: int | None = None, **settings) -> None:
    """The decoding flags' one-line errors (n, temperature, top-p, ...) before anything loads."""
    from advfusion_cli.inference.generation import DecodingSettings

    DecodingSettings(max_new_tokens=1 if max_new_tokens is None else max_new_tokens, **settings)


def _task_name(task: str) -> str:
    from advfusion_cli.errors import unknown_name_error
    from advfusion_cli.generate.prompts import TASKS

    key = task.strip().lower().replace("_", "-")
    if key not in TASKS:
        raise unknown_name_error("task", task, TASKS)
    return key


_CACHE: dict[tuple, Generator] = {}


def _cached(run: str | Path | RunDir, task: str | None, workdir: str | Path) -> Generator:
    """The last Generator used by `generate`, kept while the same finished run is asked for."""
    from advfusion_cli.generate.runs import resolve_generation_run

    task = _task_name(task) if task is not None else None
    resolved = resolve_generation_run(run, Path(workdir), task)
    finished = (resolved.run.status() or {}).get("finished")
    key = (str(resolved.run.path.resolve()), finished)
    if key not in _CACHE:
        _CACHE.clear()  # one model in memory at a time
        _CACHE[key] = Generator(resolved.run, workdir=workdir)
    generator = _CACHE[key]
    if task is not None and task != generator.task:
        raise UserError(
            f"Run '{generator.run_dir.id}' was trained for {generator.task}, not {task}."
        )
    return generator


def generate(
    run: str | Path | RunDir,
    task: str | None,
    text: str,
    *,
    n: int = 1,
    temperature: float | None = None,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    max_new_tokens: int | None = None,
    source_language: str | None = None,
    target_language: str | None = None,
    workdir: str | Path = DEFAULT_WORKDIR,
) -> list[str]:
    """n generations for `text` from `run` (a folder, a run id, method/target or best).

    The run's model is loaded on the first call and kept for the next calls with the same
    run. `task` None means the run's own task. A cut prompt is reported as a
    PromptCutWarning, an empty generation as a GenerationWarning.
    """
    generator = _cached(run, task, workdir)
    return generator.generate(
        text,
        n=n,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
        max_new_tokens=max_new_tokens,
        source_language=source_language,
        target_language=target_language,
    )


def prompt_key(prompt: str) -> str:
    """The key of a prompt's sampling streams: its text's SHA-256."""
    import hashlib

    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()
