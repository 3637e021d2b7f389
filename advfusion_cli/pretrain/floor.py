"""Scores of the frozen base model with no adapter: the floor methods must beat, and the gate.

The floor is the base on the target language's test items; the gate compares the
high-resource languages with the target on validation items, to check the base already
knows the tasks where data is plentiful (so transfer has something to carry) while the
target stays clearly weaker (so methods have room to differ). Greedy decoding and the
authors' prompts, as everywhere else in the project.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from advfusion_cli.data import TaskExample, load_task
from advfusion_cli.data.encoding import Collator, DroppedExample, encode_prompt_for_generation
from advfusion_cli.metrics.text import BLEU_CORPUS, EXACT_MATCH, ROUGEL, evaluate_text

TASKS = ("code-translation", "code-generation", "commit-message")


@dataclass(frozen=True)
class FloorSettings:
    split: str = "test"
    items_per_task: int = 100
    max_new_tokens: int = 320
    batch_size: int = 32
    seed: int = 0


def sample_examples(
    task: str, language: str, split: str, n: int, seed: int, source: str = "testbed"
) -> list[TaskExample]:
    """A seeded sample of `n` examples (target side `language`), the same on every call."""
    examples = list(load_task(task, source=source, languages=[language], split=split))
    examples.sort(key=lambda e: e.id)
    random.Random(f"{seed}/{task}/{language}/{split}").shuffle(examples)
    return examples[:n]


@torch.no_grad()
def generate_greedy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[TaskExample],
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Greedy completions, left-padded in batches; prompts cut (inner text first) to fit."""
    max_total = model.config.max_position_embeddings
    collate = Collator.for_tokenizer(tokenizer, padding_side="left")
    model.eval()
    features: list[dict | None] = []
    for example in examples:
        try:
            features.append(
                encode_prompt_for_generation(
                    tokenizer, example, max_total_tokens=max_total, max_new_tokens=max_new_tokens
                )
            )
        except DroppedExample:
            features.append(None)  # a prompt the model cannot take scores as an empty answer
    # Batches of similar prompt lengths waste little on left padding.
    order = sorted(
        (i for i, f in enumerate(features) if f is not None),
        key=lambda i: len(features[i]["input_ids"]),
    )
    outputs = [""] * len(examples)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = collate([features[i] for i in chunk])
        generated = model.generate(
            input_ids=batch["input_ids"],  # (B, T)
            attention_mask=batch["attention_mask"],
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new_tokens = generated[:, batch["input_ids"].size(1) :]  # (B, new)
        for i, text in zip(
            chunk, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True
        ):
            outputs[i] = text
    # Targets are trained as `target + "\n" + EOS`: drop that one trailing newline.
    return [text[:-1] if text.endswith("\n") else text for text in outputs]


def _execution_pass_rate(language: str, examples: Sequence[TaskExample], outputs: list[str]):
    """Share of programs passing all their tests, or None where no sandbox/toolchain exists."""
    from advfusion_cli.sandbox.programs import executable_languages, run_tests

    if not executable_languages().get(language, False):
        return None
    passed = 0
    for example, program in zip(examples, outputs, strict=True):
        if example.tests and run_tests(language, program, example.tests).passed:
            passed += 1
    return passed / max(1, len(examples))


def score_task(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: str,
    language: str,
    settings: FloorSettings,
    execute: bool = True,
) -> dict:
    """BLEU (x100, smoothed BLEU-4 13a corpus), ROUGE-L, exact match, and pass@1 for code gen."""
    examples = sample_examples(
        task, language, settings.split, settings.items_per_task, settings.seed
    )
    outputs = generate_greedy(
        model, tokenizer, examples, settings.max_new_tokens, settings.batch_size
    )
    report = evaluate_text(outputs, [e.target for e in examples])
    scores = {
        "items": len(examples),
        "bleu": round(100 * report.scores[BLEU_CORPUS], 2),
        "rougeL": round(report.scores[ROUGEL], 4),
        "exact_match": round(report.scores[EXACT_MATCH], 4),
    }
    if task == "code-generation" and execute:
        rate = _execution_pass_rate(language, examples, outputs)
        scores["pass@1"] = None if rate is None else round(rate, 4)
    return scores


def evaluate_base(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    languages: Sequence[str],
    settings: FloorSettings,
    tasks: Sequence[str] = TASKS,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, dict]]:
    """{task: {language: scores}} for the frozen base."""
    results: dict[str, dict[str, dict]] = {}
    for task in tasks:
        results[task] = {}
        for language in languages:
            scores = score_task(model, tokenizer, task, language, settings)
            results[task][language] = scores
            log(f"{settings.split} {task} {language}: {scores}")
    return results


GATE_MARGIN_BLEU = 5.0
# Tasks whose output is code in the target language, so knowing the language matters. A
# commit subject is an English summary of the diff's edit (rename, guard, off-by-one ...):
# in the testbed it reads the same whatever language the diff is in, so no gap is expected
# there; it is measured and reported, not gated.
GATED_TASKS = ("code-translation", "code-generation")


def gate_rule(target_language: str) -> str:
    return (
        f"Code translation and code generation pass when the mean BLEU over the high-resource "
        f"languages exceeds {target_language}'s by at least {GATE_MARGIN_BLEU:g} points (the "
        "noise between two seeds at 100 items was 3-5 BLEU in an earlier experiment). Commit "
        "messages are reported, not gated: a subject summarises the diff's edit in English, "
        "which the testbed words the same in every language."
    )


def check_gate(scores: dict[str, dict[str, dict]], target_language: str) -> tuple[bool, list[str]]:
    """(passed, one sentence per task) for the high-resource-vs-target rule."""
    checks = []
    passed = True
    for task, per_language in scores.items():
        high = [v["bleu"] for lang, v in per_language.items() if lang != target_language]
        if target_language not in per_language or not high:
            continue
        mean_high = sum(high) / len(high)
        target = per_language[target_language]["bleu"]
        gap_ok = mean_high - target >= GATE_MARGIN_BLEU
        if task in GATED_TASKS:
            passed &= gap_ok
            verdict = "ok" if gap_ok else "too close"
        else:
            verdict = "reported only" + ("" if gap_ok else "; no gap")
        checks.append(
            f"{task}: high-resource mean {mean_high:.1f} vs {target_language} {target:.1f} "
            f"({verdict})."
        )
    return passed, checks
