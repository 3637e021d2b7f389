"""The comparison table, as rich (terminal) and Markdown: metrics, noise verdicts, costs.

Each metric cell is `mean ± std` over seeds with the 95% bootstrap interval under it and a
verdict against the best method of its group: best (bold), ≈ (within noise of the best) or
▼ (significantly below it, p < 0.05 in a paired bootstrap over test items).
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from advfusion_cli.compare.aggregate import MetricCell, ResultRow
from advfusion_cli.evaluate.report import metric_info

WITHIN, BELOW = "≈", "▼"


def _number(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if name == "sacrebleu_corpus" else f"{value:.3f}"


def best_values(rows: list[ResultRow], metric: str) -> float | None:
    """The best mean of a metric in a group, or None when every method ties (nothing to bold)."""
    means = [r.metrics[metric].mean for r in rows if metric in r.metrics]
    if not means or max(means) == min(means):
        return None
    return max(means)


def cell_text(name: str, cell: MetricCell | None, best: float | None) -> tuple[str, str, bool]:
    """(value line, interval line, bold)."""
    if cell is None:
        return "-", "", False
    value = _number(name, cell.mean)
    if cell.std is not None:
        value += f" ± {_number(name, cell.std)}"
    bold = best is not None and cell.mean == best
    if best is not None and not bold and cell.within_noise is not None:
        value += f" {WITHIN if cell.within_noise else BELOW}"
    interval = ""
    if cell.low is not None:
        interval = f"[{_number(name, cell.low)}, {_number(name, cell.high)}]"
    return value, interval, bold


def format_params(count: int | None) -> str:
    if not count:
        return "0"
    if count >= 1_000_000:
        return f"{count / 1e6:.2f} M"
    if count >= 1_000:
        return f"{count / 1e3:.1f} k"
    return str(count)


def format_seconds(seconds: float | None) -> str:
    if not seconds:
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def format_memory(mb: float | None) -> str:
    if not mb:
        return "-"
    return f"{mb / 1024:.2f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def groups(rows: list[ResultRow]) -> list[tuple[str | None, list[ResultRow]]]:
    order: list[str | None] = []
    for row in rows:
        if row.vary_value not in order:
            order.append(row.vary_value)
    return [(value, [r for r in rows if r.vary_value == value]) for value in order]


def rich_table(rows: list[ResultRow], metrics: list[str], title: str, vary_label: str | None):
    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("method", style="bold")
    if vary_label:
        table.add_column(vary_label)
    for name in metrics:
        table.add_column(name, justify="right")
    for column in ("trainable", "train time", "peak mem"):
        table.add_column(column, justify="right")
    for _, group in groups(rows):
        best = {name: best_values(group, name) for name in metrics}
        for row in group:
            cells = [row.method]
            if vary_label:
                cells.append(row.vary_value or "")
            for name in metrics:
                value, interval, bold = cell_text(name, row.metrics.get(name), best[name])
                text = Text(value, style="bold" if bold else "")
                if interval:
                    text.append("\n" + interval, style="dim")
                cells.append(text)
            cells += [
                format_params(row.costs.get("trainable_params")),
                format_seconds(row.costs.get("training_s")),
                format_memory(row.costs.get("peak_memory_mb")),
            ]
            table.add_row(*cells)
    return table


def verdict_lines(rows: list[ResultRow], metrics: list[str], vary_label: str | None) -> list[str]:
    """Plain sentences: per metric, the best method(s) and who is within their noise."""
    lines = []
    for value, group in groups(rows):
        prefix = f"[{vary_label}={value}] " if vary_label else ""
        for name in metrics:
            scored = [r for r in group if name in r.metrics]
            best = best_values(group, name)
            if best is None:
                if scored:
                    lines.append(f"{prefix}{name}: every method scores the same.")
                continue
            tops = [r.method for r in scored if r.metrics[name].mean == best]
            within = [
                r.method for r in scored if r.method not in tops and r.metrics[name].within_noise
            ]
            lead = f"{tops[0]} is best" if len(tops) == 1 else f"{' and '.join(tops)} tie as best"
            if within:
                verb = "is" if len(within) == 1 else "are"
                them = "it" if len(tops) == 1 else "them"
                lines.append(
                    f"{prefix}{name}: {lead}, but {', '.join(within)} {verb} within noise of {them}."
                )
            else:
                lines.append(f"{prefix}{name}: {lead}, significantly above every other method.")
    return lines


def legend(n_items: int, n_resamples: int, seeds: list[int]) -> str:
    seeds_text = (
        f"mean ± std over {len(seeds)} seeds ({', '.join(map(str, seeds))})"
        if len(seeds) > 1
        else f"one seed ({seeds[0]})"
    )
    return (
        f"{seeds_text}; [low, high] = 95% paired-bootstrap interval over the {n_items} test "
        f"items ({n_resamples} resamples). bold = best; {WITHIN} = within noise of the best; "
        f"{BELOW} = significantly below the best (p < 0.05)."
    )


def markdown_table(rows: list[ResultRow], metrics: list[str], vary_label: str | None) -> str:
    header = ["method"] + ([vary_label] if vary_label else []) + metrics
    header += ["trainable", "train time", "peak mem"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, group in groups(rows):
        best = {name: best_values(group, name) for name in metrics}
        for row in group:
            cells = [row.method] + ([row.vary_value or ""] if vary_label else [])
            for name in metrics:
                value, interval, bold = cell_text(name, row.metrics.get(name), best[name])
                value = f"**{value}**" if bold else value
                cells.append(f"{value} {interval}".strip())
            cells += [
                format_params(row.costs.get("trainable_params")),
                format_seconds(row.costs.get("training_s")),
                format_memory(row.costs.get("peak_memory_mb")),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metric_legend(metrics: list[str]) -> list[str]:
    return [f"- `{name}`: {metric_info(name)[1]}" for name in metrics]
