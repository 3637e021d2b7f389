"""results.json (everything), results.csv (one row per method × metric) and results.md."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from advfusion_cli.compare.aggregate import ResultRow
from advfusion_cli.compare.table import legend, markdown_table, metric_legend, verdict_lines
from advfusion_cli.workflows import atomic

CSV_COLUMNS = (
    "method",
    "vary",
    "metric",
    "mean",
    "std",
    "n_seeds",
    "low",
    "high",
    "is_best",
    "diff_vs_best",
    "diff_low",
    "diff_high",
    "p_value",
    "within_noise",
    "trainable_params",
    "training_s",
    "peak_memory_mb",
)


def write_json(path: Path, payload: dict) -> Path:
    atomic.write_json(path, payload)
    return path


def write_csv(path: Path, rows: list[ResultRow]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        for name, cell in row.metrics.items():
            writer.writerow(
                [
                    row.method,
                    row.vary_value or "",
                    name,
                    cell.mean,
                    "" if cell.std is None else cell.std,
                    len(cell.per_seed),
                    "" if cell.low is None else cell.low,
                    "" if cell.high is None else cell.high,
                    cell.is_best,
                    "" if cell.diff is None else cell.diff,
                    "" if cell.diff_low is None else cell.diff_low,
                    "" if cell.diff_high is None else cell.diff_high,
                    "" if cell.p_value is None else cell.p_value,
                    "" if cell.within_noise is None else cell.within_noise,
                    row.costs.get("trainable_params", 0),
                    row.costs.get("training_s") or 0.0,
                    row.costs.get("peak_memory_mb") or 0.0,
                ]
            )
    atomic.write_text(path, buffer.getvalue())
    return path


def write_markdown(
    path: Path,
    *,
    title: str,
    rows: list[ResultRow],
    metrics: list[str],
    vary_label: str | None,
    n_items: int,
    n_resamples: int,
    seeds: list[int],
    notes: list[str],
    images: list[Path],
) -> Path:
    parts = [
        f"# {title}",
        "",
        markdown_table(rows, metrics, vary_label),
        "",
        legend(n_items, n_resamples, seeds),
        "",
        "## Is it noise?",
        "",
        *[f"- {line}" for line in verdict_lines(rows, metrics, vary_label)],
        "",
        "## Metrics",
        "",
        *metric_legend(metrics),
        "",
    ]
    if notes:
        parts += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    if images:
        parts += ["## Plots", ""]
        parts += [f"![{image.stem}]({image.name})" for image in images]
        parts.append("")
    atomic.write_text(path, "\n".join(parts))
    return path
