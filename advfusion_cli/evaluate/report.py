"""How evaluation results are shown: every metric under its exact name, with what it means."""

from __future__ import annotations

from rich.table import Table

from advfusion_cli.evaluate.structure import FUNCTION_NAME, PARAMETER_NAMES

# name -> (short column label, what exactly it is)
METRIC_INFO: dict[str, tuple[str, str]] = {
    "bleu4_smooth_13a_corpus": (
        "BLEU-4 corpus",
        "smoothed BLEU-4 (add-one on every order), 13a tokens, corpus statistics: the "
        "authors' BLEU (HF evaluate 'bleu', smooth=True); 0-1",
    ),
    "bleu4_smooth_13a_sentence_mean": (
        "BLEU-4 sent.",
        "the same smoothed BLEU-4 per item, averaged (the authors' sentence-level figure); 0-1",
    ),
    "sacrebleu_corpus": ("sacreBLEU", "sacrebleu corpus BLEU (exp smoothing, 13a); 0-100"),
    "rouge1_f": ("ROUGE-1", "ROUGE-1 F-measure (rouge-score, no stemmer), mean over items; 0-1"),
    "rouge2_f": ("ROUGE-2", "ROUGE-2 F-measure (rouge-score, no stemmer), mean over items; 0-1"),
    "rougeL_f": ("ROUGE-L", "ROUGE-L F-measure (rouge-score, no stemmer), mean over items; 0-1"),
    "exact_match": ("exact", "prediction == reference up to trailing whitespace; 0-1"),
    FUNCTION_NAME: (
        "fn name",
        "the reference's entry function is defined under the same name; 0-1",
    ),
    PARAMETER_NAMES: (
        "params",
        "that function has the reference's parameter names, in order; 0-1",
    ),
}


def metric_info(name: str) -> tuple[str, str]:
    if name.startswith("pass@"):
        k = name.split("@")[1]
        return (
            name,
            f"unbiased pass@{k} (Chen et al. 2021): candidates run against the stdin/stdout "
            "tests in the sandbox; 0-1",
        )
    return METRIC_INFO.get(name, (name, name))


def metric_order(names) -> list[str]:
    """Known metrics in a fixed order, pass@k by k, anything else after."""
    known = list(METRIC_INFO)
    passk = sorted((n for n in names if n.startswith("pass@")), key=lambda n: int(n[5:]))
    rest = sorted(n for n in names if n not in known and not n.startswith("pass@"))
    return [n for n in known if n in names] + passk + rest


def format_value(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if name == "sacrebleu_corpus" else f"{value:.4f}"


def evaluation_table(record: dict, folder) -> Table:
    """One evaluation: metric name, value, exact variant; provenance in the caption."""
    title = (
        f"{record['method']} -> {record['target']} ({record['task']}): "
        f"{record['n_items']} {record['split']} items, {record['decoding']['mode']}"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_column("what it is", overflow="fold")
    for name in metric_order(record["scores"]):
        table.add_row(name, format_value(name, record["scores"][name]), metric_info(name)[1])
    execution = record.get("execution", {})
    if not execution.get("ran") and "reason" in execution:  # a task that executes, skipped
        table.add_row("pass@k", "-", f"not run: {execution.get('reason', 'unknown')}")
    notes = []
    if record.get("signatures"):
        notes += [f"{k}: {v}" for k, v in record["signatures"].items()]
    structure = record.get("structure")
    if structure and structure.get("n_items") and structure["n_items"] < record["n_items"]:
        notes.append(
            f"structure scored on {structure['n_items']} items whose reference defines a function"
        )
    if execution.get("ran"):
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(execution["statuses"].items()))
        notes.append(f"execution ({execution['language']}, n={execution['n_samples']}): {statuses}")
    if record.get("dropped_prompts"):
        notes.append(f"{record['dropped_prompts']} prompts did not fit and score as empty")
    notes.append(f"files: {folder}")
    table.caption = "\n".join(notes)
    table.caption_justify = "left"
    return table
