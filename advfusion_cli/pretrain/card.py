"""The model card of the embedded model: `card.json` (what tests read) and README.md (people).

Both are written from one dict so the numbers in the prose can never drift from the
numbers the tests check.
"""

from __future__ import annotations

import json
from pathlib import Path

CARD_FILE = "card.json"
README_FILE = "README.md"


def write_card(out_dir: Path, card: dict) -> None:
    """Write `card.json` and the README rendered from it."""
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    (out_dir / README_FILE).write_text(render_readme(card))


def read_card(model_dir: Path) -> dict:
    return json.loads((model_dir / CARD_FILE).read_text())


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: object, metric: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        # BLEU is on a 0-100 scale; the other scores are shares in [0, 1].
        return f"{value:.1f}" if metric == "bleu" else f"{value:.3f}"
    return str(value)


def _scores_table(scores: dict[str, dict[str, dict]]) -> str:
    """Rows (task, language) of the metrics each task reports."""
    metrics: list[str] = []
    for per_language in scores.values():
        for values in per_language.values():
            metrics += [m for m in values if m not in metrics]
    rows = [
        [task, language] + [_fmt(values.get(m), m) for m in metrics]
        for task, per_language in scores.items()
        for language, values in per_language.items()
    ]
    return _table(["task", "language", *metrics], rows)


def render_readme(card: dict) -> str:
    arch = card["architecture"]
    train = card["training"]
    corpus = card["corpus"]
    parts = [
        "---",
        "license: apache-2.0",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [code, tiny, synthetic, advfusion]",
        "---",
        "",
        f"# {card['model_id']}",
        "",
        "A tiny Llama-architecture code model pretrained from scratch on the advfusion "
        "testbed: a generated corpus of the same programs in "
        f"{', '.join(corpus['languages'])}, with `{corpus['target_language']}` as the "
        "low-resource target. It is the offline default base model of `advfusion`: every "
        "command runs against it through the ordinary `from_pretrained` path. It is a "
        "test bed for comparing adapter methods, not a useful code assistant.",
        "",
        "## How it was made",
        "",
        _table(
            ["item", "value"],
            [
                [
                    "architecture",
                    f"{arch['model_type']}, hidden {arch['hidden_size']}, "
                    f"{arch['num_layers']} layers, {arch['num_heads']} heads "
                    f"({arch['num_kv_heads']} key/value), MLP {arch['intermediate_size']}, "
                    f"tied embeddings",
                ],
                ["parameters", f"{card['parameters']:,}"],
                ["weights", f"{card['dtype']}, folder {card['size_bytes'] / 1e6:.1f} MB"],
                [
                    "tokenizer",
                    f"byte-level BPE, {card['tokenizer']['vocab_size']} tokens, "
                    "camelCase/snake_case split into word pieces before BPE",
                ],
                [
                    "corpus",
                    f"{corpus['documents']:,} documents, {corpus['total_tokens']:,} "
                    f"tokens; {corpus['task_formatted_share']:.0%} of tokens task-formatted",
                ],
                [
                    "training",
                    f"{train['steps']} steps x {train['batch_size']} windows of "
                    f"{train['seq_len']} tokens, AdamW lr {train['lr']} (warmup "
                    f"{train['warmup_steps']}, cosine to {train['min_lr_ratio']}x), seed "
                    f"{train['seed']}",
                ],
                [
                    "tokens trained",
                    f"{train['tokens']:,} ({train['tokens_per_second']:.0f} tokens/s)",
                ],
                [
                    "time",
                    f"{train['minutes']:.1f} min training ({train['total_minutes']:.1f} min "
                    f"in all) on {card['provenance']['machine']}",
                ],
                ["final training loss", _fmt(train["final_loss"])],
            ],
        ),
        "",
        "### Pretraining mix",
        "",
        corpus["mix_description"],
        "",
        _table(
            ["documents (kind/language)", "tokens"],
            [[k, f"{v:,}"] for k, v in corpus["tokens_by_kind_language"].items()],
        ),
        "",
        "Only the testbed's train splits feed pretraining; validation and test items never "
        "do, so the evaluations below are clean.",
        "",
        "## Held-out perplexity",
        "",
        f"Per language, on {card['heldout']['documents_per_language']} single-language "
        f"documents per language regenerated from the testbed with seed "
        f"{card['heldout']['seed']} (never trained on). "
        "`tests/test_pretrain_embedded.py` recomputes them from the shipped weights.",
        "",
        _table(
            ["language", "perplexity"],
            [[lang, f"{ppl:.3f}"] for lang, ppl in card["heldout_perplexity"].items()],
        ),
        "",
    ]
    if card.get("floor"):
        floor = card["floor"]
        parts += [
            f"## Floor: the base model with no adapter on the {corpus['target_language']} tasks",
            "",
            f"Greedy decoding, {floor['split']} split, up to {floor['items_per_task']} items "
            f"per task, max {floor['max_new_tokens']} new tokens. Any adapter method has to "
            "beat these numbers. BLEU is smoothed BLEU-4 (13a) over the corpus, x100; pass@1 "
            "runs each program on its tests (n/a where a task has none or no toolchain).",
            "",
            "The code-generation prompt names no language (the authors' format), so without "
            "an adapter the base picks the language itself: per-language code-generation "
            "scores measure which language it chooses as much as what it writes.",
            "",
            _scores_table(floor["scores"]),
            "",
        ]
    if card.get("gate"):
        gate = card["gate"]
        parts += [
            "## Gate: high-resource languages vs the target (validation split)",
            "",
            gate["rule"],
            "",
            _scores_table(gate["scores"]),
            "",
            f"Result: **{'passed' if gate['passed'] else 'failed'}**. " + " ".join(gate["checks"]),
            "",
        ]
    parts += [
        "## Regenerate",
        "",
        "```bash",
        card["command"],
        "```",
        "",
        "Same seed, same library versions and the same thread count give the same weights; "
        "other versions give a model of the same quality, not the same bits.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in card["provenance"].items()) + ".",
        "",
    ]
    return "\n".join(parts)
