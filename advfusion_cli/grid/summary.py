"""The grid summary in the paper's layout: per model and task, methods as rows and target
languages as columns, one table per metric (`mean ± std` over seeds, the best of each column
in bold), read from each comparison's results.json.

    summary.md   one section per (model, task), one table per metric
    summary.csv  model, task, metric, method, vary, then one column of means per language
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from advfusion_cli.workflows import atomic


def _number(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if metric == "sacrebleu_corpus" else f"{value:.3f}"


def _row_key(row: dict) -> str:
    return row["method"] + (f" ({row['vary']})" if row.get("vary") is not None else "")


def read_results(cells: list[dict]) -> list[dict]:
    """Each cell with its results.json loaded (`results`: None when it is missing)."""
    loaded = []
    for cell in cells:
        try:
            results = json.loads((Path(cell["results"]) / "results.json").read_text())
        except (OSError, ValueError):
            results = None
        loaded.append({**cell, "data": results})
    return loaded


def summary_tables(cells: list[dict]) -> list[dict]:
    """One table per (model, task, metric): {model, task, metric, targets, rows: [(label,
    {target: cell dict})]}, in the grid's order."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for cell in read_results(cells):
        groups.setdefault((cell["model"], cell["task"]), []).append(cell)
    tables = []
    for (model, task), cells_here in groups.items():
        targets = [m["target"] for m in cells_here]  # a target without results stays a column
        members = [m for m in cells_here if m["data"] is not None]
        metrics: list[str] = []
        for member in members:
            metrics += [m for m in member["data"]["table_metrics"] if m not in metrics]
        for metric in metrics:
            rows: dict[str, dict[str, dict]] = {}
            for member in members:
                for row in member["data"]["rows"]:
                    cell = row["metrics"].get(metric)
                    if cell is not None:
                        rows.setdefault(_row_key(row), {})[member["target"]] = cell
            tables.append(
                {
                    "model": model,
                    "task": task,
                    "metric": metric,
                    "targets": targets,
                    "rows": list(rows.items()),
                }
            )
    return tables


def markdown(tables: list[dict], missing: list[dict]) -> str:
    parts = ["# Grid summary", ""]
    parts.append(
        "Methods as rows, target languages as columns: mean ± std over seeds; **bold** = the "
        "best of its column. Each comparison's own table (noise verdicts, intervals, costs) is "
        "in its results.md."
    )
    parts.append("")
    section = None
    for table in tables:
        if (table["model"], table["task"]) != section:
            section = (table["model"], table["task"])
            parts += [f"## {table['model']}: {table['task']}", ""]
        metric, targets = table["metric"], table["targets"]
        parts += [f"### {metric}", "", "| method | " + " | ".join(targets) + " |"]
        parts.append("|---|" + "---|" * len(targets))
        best = {
            t: max((c[t]["mean"] for _, c in table["rows"] if t in c), default=None)
            for t in targets
        }
        for label, by_target in table["rows"]:
            cells = []
            for target in targets:
                cell = by_target.get(target)
                if cell is None:
                    cells.append("-")
                    continue
                text = _number(metric, cell["mean"])
                if cell.get("std") is not None:
                    text += f" ± {_number(metric, cell['std'])}"
                means = [c[target]["mean"] for _, c in table["rows"] if target in c]
                if cell["mean"] == best[target] and len(set(means)) > 1:
                    text = f"**{text}**"
                cells.append(text)
            parts.append(f"| {label} | " + " | ".join(cells) + " |")
        parts.append("")
    if missing:
        parts += ["## Missing", ""]
        parts += [
            f"- {m['model']}: {m['task']} -> {m['target']}: no results.json in {m['results']}"
            for m in missing
        ]
        parts.append("")
    return "\n".join(parts)


def csv_text(tables: list[dict]) -> str:
    targets: list[str] = []
    for table in tables:
        targets += [t for t in table["targets"] if t not in targets]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "task", "metric", "method", *targets])
    for table in tables:
        for label, by_target in table["rows"]:
            writer.writerow(
                [
                    table["model"],
                    table["task"],
                    table["metric"],
                    label,
                    *[by_target[t]["mean"] if t in by_target else "" for t in targets],
                ]
            )
    return buffer.getvalue()


def write_summary(folder: Path, cells: list[dict]) -> list[Path]:
    """summary.md and summary.csv in the grid's folder."""
    tables = summary_tables(cells)
    missing = [c for c in read_results(cells) if c["data"] is None]
    folder.mkdir(parents=True, exist_ok=True)
    md, table_csv = folder / "summary.md", folder / "summary.csv"
    atomic.write_text(md, markdown(tables, missing))
    atomic.write_text(table_csv, csv_text(tables))
    return [md, table_csv]
