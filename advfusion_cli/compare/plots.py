"""PNG plots with matplotlib's Agg backend: metric bars with 95% intervals, fusion heatmaps.

Bars: one panel per metric, one bar per method (and setting value), whiskers = the paired
bootstrap's 95% interval; the best bar is dark, bars within its noise light, bars
significantly below it grey; a dashed line marks the frozen base (the floor).
Heatmaps: mean fusion attention per layer (rows) × language adapter (columns), one panel per
adapter place, on the test items: which languages the fusion relies on, and where.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from advfusion_cli.compare.aggregate import ResultRow  # noqa: E402
from advfusion_cli.compare.table import best_values  # noqa: E402

BEST, WITHIN, BELOW, FLOOR = "#1f4e79", "#8fb8de", "#c8c8c8", "#b22222"
PLACE_TITLES = {"attn": "after attention", "mlp": "after MLP"}


def _label(row: ResultRow, vary_label: str | None) -> str:
    return f"{row.method} ({vary_label}={row.vary_value})" if vary_label else row.method


def _colour(row: ResultRow, metric: str, best: float | None) -> str:
    cell = row.metrics[metric]
    if best is not None and cell.mean == best:
        return BEST
    return WITHIN if cell.within_noise else BELOW


def metric_bars(
    rows: list[ResultRow],
    metrics: list[str],
    path: Path,
    title: str,
    vary_label: str | None = None,
) -> Path:
    """One horizontal-bar panel per metric; returns `path`. A metric on which every method
    scores the same (exact match 0 everywhere, say) gets no panel: there is nothing to see."""
    metrics = [m for m in metrics if len({r.metrics[m].mean for r in rows if m in r.metrics}) > 1]
    metrics = metrics or metrics_fallback(rows)
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    height = 0.42 * len(rows) + 1.6
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(5.2 * ncols, height * nrows), squeeze=False, layout="constrained"
    )
    labels = [_label(r, vary_label) for r in rows]
    positions = np.arange(len(rows))[::-1]  # first row on top
    for ax, metric in zip(axes.flat, metrics, strict=False):
        shown = [i for i, r in enumerate(rows) if metric in r.metrics]
        group_best = {
            value: best_values([r for r in rows if r.vary_value == value], metric)
            for value in {r.vary_value for r in rows}
        }
        for i in shown:
            row = rows[i]
            cell = row.metrics[metric]
            low = cell.low if cell.low is not None else cell.mean
            high = cell.high if cell.high is not None else cell.mean
            ax.barh(
                positions[i],
                cell.mean,
                color=_colour(row, metric, group_best[row.vary_value]),
                xerr=[[max(cell.mean - low, 0.0)], [max(high - cell.mean, 0.0)]],
                error_kw={"ecolor": "#333333", "capsize": 3, "elinewidth": 1},
                height=0.7,
            )
            ax.text(
                high,
                positions[i],
                f" {cell.mean:.3g}",
                va="center",
                ha="left",
                fontsize=8,
            )
        floors = [rows[i].metrics[metric].mean for i in shown if rows[i].method == "base"]
        for floor in floors:
            ax.axvline(floor, color=FLOOR, linestyle="--", linewidth=1)
        ax.set_yticks(positions, labels, fontsize=9)
        ax.set_title(metric, fontsize=10)
        upper = max(
            max(rows[i].metrics[metric].high or 0.0, rows[i].metrics[metric].mean) for i in shown
        )
        # Room for the value labels; an all-zero metric still gets a readable 0-1 axis.
        ax.set_xlim(0, upper * 1.25 if upper > 0 else 1.0)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=BEST),
        plt.Rectangle((0, 0), 1, 1, color=WITHIN),
        plt.Rectangle((0, 0), 1, 1, color=BELOW),
        plt.Line2D([0], [0], color=FLOOR, linestyle="--"),
    ]
    fig.legend(
        handles,
        ["best", "within noise of best", "significantly below best", "frozen base (floor)"],
        loc="outside lower center",
        ncols=4,
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metrics_fallback(rows: list[ResultRow]) -> list[str]:
    """Some metric to draw when every table metric ties: the first one any row has."""
    for row in rows:
        if row.metrics:
            return [next(iter(row.metrics))]
    return []


def attention_heatmap(attention: dict, path: Path, title: str, target: str | None = None) -> Path:
    """Mean fusion attention (layers × adapters) per place, values written in the cells."""
    mean = np.asarray(attention["mean"], dtype=np.float64)  # (layers, places, N)
    places = attention["places"]
    adapters = [f"{a}\n(target)" if a == target else a for a in attention["adapters"]]
    n_layers = mean.shape[0]
    width = max(6.0, 1.0 * len(adapters) * len(places) + 2.4)
    fig, axes = plt.subplots(
        1,
        len(places),
        figsize=(width, 0.45 * n_layers + 2.2),
        squeeze=False,
        layout="constrained",
    )
    # Uniform attention (1/N) sits mid-scale, so "no preference" never looks saturated.
    peak = float(np.nanmax(mean)) if np.isfinite(mean).any() else 1.0
    vmax = min(1.0, max(peak, 2.0 / len(adapters)))
    image = None
    for ax, (index, place) in zip(axes.flat, enumerate(places), strict=True):
        grid = mean[:, index, :]  # (layers, N)
        image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
        for layer in range(n_layers):
            for slot in range(grid.shape[1]):
                value = grid[layer, slot]
                colour = "black" if value > 0.6 * vmax else "white"
                ax.text(
                    slot, layer, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=8
                )
        ax.set_xticks(range(len(adapters)), adapters, fontsize=8)
        ax.set_yticks(range(n_layers), [f"layer {i}" for i in range(n_layers)], fontsize=8)
        ax.set_title(PLACE_TITLES.get(place, place), fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes.flat), shrink=0.8, label="mean attention")
    fig.suptitle(title, fontsize=10, wrap=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def mean_attention(records: list[dict]) -> dict:
    """Average fusion-attention records of several seeds (same adapters, places, layers)."""
    first = records[0]
    for record in records[1:]:
        if (record["adapters"], record["places"]) != (first["adapters"], first["places"]):
            raise ValueError("fusion attention records over different adapters cannot be averaged")
    stacked = np.stack([np.asarray(r["mean"], dtype=np.float64) for r in records])
    return {
        **first,
        "mean": np.nanmean(stacked, axis=0).tolist(),
        "items": sum(r["items"] for r in records),
        "seeds": len(records),
    }
