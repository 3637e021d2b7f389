"""From evaluations to a results table: mean ± std over seeds, and is it better than noise?

Significance is a paired bootstrap over test items (Koehn 2004) of each method against the
best one of its group (the same value of the varied setting). With several seeds, a method's
per-item score is its mean over seeds and a corpus metric is the mean over seeds of the corpus
metric on the same resampled items, so the bootstrap judges the seed-averaged result.
Standard deviations over seeds are reported beside it: item noise and seed noise both show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from advfusion_cli.errors import UserError
from advfusion_cli.metrics.bootstrap import (
    DEFAULT_RESAMPLES,
    CorpusStatistic,
    ItemScores,
    compare_to_best,
)


@dataclass
class MetricCell:
    mean: float
    std: float | None  # over seeds; None with one seed
    per_seed: list[float]
    low: float | None = None  # 95% bootstrap interval of the seed-averaged metric
    high: float | None = None
    is_best: bool = False
    diff: float | None = None  # this - best
    diff_low: float | None = None
    diff_high: float | None = None
    p_value: float | None = None
    within_noise: bool | None = None

    def to_dict(self) -> dict:
        return {key: _clean(value) for key, value in vars(self).items()}


@dataclass
class ResultRow:
    method: str
    vary_value: str | None
    seeds: list[int]
    runs: list[dict]  # per seed: run id, run dir, evaluation folder
    costs: dict  # trainable_params, total_params, training_s, peak_memory_mb, adapters_training_s
    metrics: dict[str, MetricCell] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "vary": self.vary_value,
            "seeds": self.seeds,
            "runs": self.runs,
            **{k: _clean(v) for k, v in self.costs.items()},
            "metrics": {name: cell.to_dict() for name, cell in self.metrics.items()},
        }


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.floating):
        return float(value)
    return value


def combine_seeds(per_seed: Sequence[ItemScores]) -> ItemScores:
    """One method's item scores averaged over seeds (arrays) or a mean corpus statistic."""
    if len(per_seed) == 1:
        return per_seed[0]
    if all(isinstance(s, CorpusStatistic) for s in per_seed):
        n_items = per_seed[0].n_items
        parts = list(per_seed)
        return CorpusStatistic(
            n_items, lambda idx: float(np.mean([part.compute(idx) for part in parts]))
        )
    arrays = [np.asarray(s, dtype=np.float64) for s in per_seed]
    if len({a.shape for a in arrays}) != 1:
        raise UserError("Evaluations of one method scored different numbers of items.")
    return np.mean(arrays, axis=0)


def summarize(values: list[float]) -> tuple[float, float | None]:
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return mean, std


def fill_group(
    rows: list[ResultRow],
    scores: dict[str, dict[str, list[float]]],
    items: dict[str, dict[str, ItemScores]],
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> None:
    """Fill every row's metrics (one group: the same setting value) with bootstrap verdicts.

    scores[method][metric] = per-seed values; items[method][metric] = seed-combined
    ItemScores. Metrics missing for some method are compared among those that have them.
    """
    metric_names = sorted({name for per in scores.values() for name in per})
    for name in metric_names:
        methods = [r.method for r in rows if name in scores[r.method]]
        for row in rows:
            if name in scores[row.method]:
                mean, std = summarize(scores[row.method][name])
                row.metrics[name] = MetricCell(mean, std, list(scores[row.method][name]))
        comparable = {m: items[m][name] for m in methods if name in items[m]}
        if not comparable:
            continue
        verdicts = compare_to_best(
            comparable, n_resamples=n_resamples, confidence=confidence, seed=seed
        )
        by_method = {v.method: v for v in verdicts}
        for row in rows:
            verdict = by_method.get(row.method)
            if verdict is None:
                continue
            cell = row.metrics[name]
            cell.low, cell.high = verdict.estimate.low, verdict.estimate.high
            cell.is_best = verdict.is_best
            cell.within_noise = verdict.within_noise
            cell.p_value = verdict.p_value
            if verdict.difference is not None:
                cell.diff = verdict.difference.estimate
                cell.diff_low, cell.diff_high = verdict.difference.low, verdict.difference.high
