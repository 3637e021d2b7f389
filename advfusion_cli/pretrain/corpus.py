"""The pretraining mix: task-formatted documents of the high-resource languages plus source files.

Why task-formatted documents: a base model that never saw two languages of one program side
by side has no "read the source, rewrite it" skill, and an adapter cannot install it in a
few hundred steps (testbed notes, round 1). Real code LLMs have seen such data, so the base
sees translation pairs, problem -> solution and diff -> subject, rendered with exactly the
authors' prompts the evaluation uses. The target language stays rare on both sides: its
task documents are kept at `target_task_keep`, and the testbed writes its source files
for only about a tenth of the programs. Only train splits are read; source files come from the
testbed's own pretraining stream, which excludes every evaluation program.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, model_validator

from advfusion_cli.data import TaskExample, load_task

TASKS = ("code-translation", "code-generation", "commit-message")
KINDS = {
    "code-translation": "translation",
    "code-generation": "generation",
    "commit-message": "commit",
}


class PretrainMix(BaseModel):
    """What the pretraining corpus is made of."""

    model_config = ConfigDict(extra="forbid")

    languages: tuple[str, ...] = Field(
        ("python", "javascript", "java", "go", "ruby"), description="Testbed languages."
    )
    target_language: str = Field("ruby", description="The low-resource target language.")
    task_token_share: float = Field(
        0.6, gt=0, le=1, description="Share of corpus characters in task-formatted documents."
    )
    target_task_keep: float = Field(
        0.02, ge=0, le=1, description="Share of target-language task documents kept."
    )
    max_task_examples_per_language: int | None = Field(
        None, ge=1, description="Cap per task and language (tiny test runs)."
    )
    source_seed: int = Field(0, description="Testbed seed of the single-language source files.")

    @model_validator(mode="after")
    def _target_is_a_language(self) -> PretrainMix:
        if self.target_language not in self.languages:
            raise ValueError(
                f"target_language '{self.target_language}' is not in languages {self.languages}"
            )
        return self

    @property
    def high_resource(self) -> tuple[str, ...]:
        return tuple(lang for lang in self.languages if lang != self.target_language)


@dataclass(frozen=True)
class Document:
    """One pretraining document; task documents keep their example for exact encoding."""

    kind: str  # translation | generation | commit | source
    language: str  # the target side for task documents
    text: str  # what the tokenizer is trained on: prompt + target + "\n" for tasks
    example: TaskExample | None = None
    source_language: str | None = None


@dataclass
class PretrainCorpus:
    documents: list[Document]
    dropped_target: Counter = field(default_factory=Counter)

    def stats(self) -> dict:
        return {
            "documents": len(self.documents),
            "documents_by_kind_language": dict(
                sorted(Counter(f"{d.kind}/{d.language}" for d in self.documents).items())
            ),
            "target_task_documents_dropped": dict(self.dropped_target),
        }

    def describe(self) -> str:
        counts = Counter(d.kind for d in self.documents)
        return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))


def involves_target(example: TaskExample, target: str) -> bool:
    return example.language == target or example.source_language == target


def task_documents(mix: PretrainMix, seed: int) -> tuple[list[Document], Counter]:
    """Train-split task examples rendered as documents; target ones thinned to the keep rate."""
    rng = random.Random(f"pretrain-tasks/{seed}")
    documents: list[Document] = []
    dropped: Counter = Counter()
    for task in TASKS:
        loaded = load_task(task, source="testbed", languages=list(mix.languages), split="train")
        for language in mix.languages:
            examples = sorted((e for e in loaded if e.language == language), key=lambda e: e.id)
            if mix.max_task_examples_per_language is not None:
                examples = examples[: mix.max_task_examples_per_language]
            for example in examples:
                if involves_target(example, mix.target_language) and (
                    rng.random() >= mix.target_task_keep
                ):
                    dropped[KINDS[task]] += 1
                    continue
                documents.append(
                    Document(
                        kind=KINDS[task],
                        language=example.language,
                        text=example.prompt + example.target + "\n",
                        example=example,
                        source_language=example.source_language,
                    )
                )
    return documents, dropped


def source_documents(mix: PretrainMix, char_budget: int) -> list[Document]:
    """The testbed's pretraining files, in its order, until `char_budget` characters.

    The testbed already writes the target language for only `target_train_ratio` (about a
    tenth) of its programs, so taking files in order keeps the target rare.
    """
    from advfusion_cli.testbed import TestbedConfig, iter_corpus

    config = TestbedConfig(seed=mix.source_seed)
    documents: list[Document] = []
    used = 0
    # 4x the train pool (the testbed's default) is ~13 M characters: far more than needed.
    for doc in iter_corpus(config):
        if used >= char_budget:
            break
        if doc.language not in mix.languages:
            continue
        documents.append(Document(kind="source", language=doc.language, text=doc.text))
        used += len(doc.text)
    return documents


def build_pretraining_corpus(mix: PretrainMix, seed: int) -> PretrainCorpus:
    """Task documents first; source files fill the rest up to `task_token_share`."""
    tasks, dropped = task_documents(mix, seed)
    task_chars = sum(len(d.text) for d in tasks)
    source_budget = int(task_chars * (1 - mix.task_token_share) / mix.task_token_share)
    sources = source_documents(mix, source_budget) if source_budget > 0 else []
    return PretrainCorpus(documents=tasks + sources, dropped_target=dropped)


def describe_mix(mix: PretrainMix) -> str:
    """One paragraph for the model card."""
    return (
        f"Task-formatted documents (translation pairs, problem -> solution, diff -> subject) "
        f"from the testbed's train splits, rendered with the authors' prompts, make about "
        f"{mix.task_token_share:.0%} of the text; the rest is single-language source files "
        f"of every language from the testbed's pretraining stream (which excludes every "
        f"validation and test program). The target language ({mix.target_language}) is rare on "
        f"both sides: {mix.target_task_keep:.0%} of its task documents (as source or target) "
        f"are kept, and the testbed writes its source files for about a tenth of the programs. "
        f"Documents are packed whole into windows, never split."
    )
