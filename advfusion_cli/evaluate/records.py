"""Reading a finished evaluation back: its record, and per-item scores for a paired bootstrap.

Per-item scores are rebuilt from predictions.jsonl, not trusted from a cache: text metrics are
recomputed (corpus BLEU needs each item's n-gram statistics, not a per-item score), pass@k
comes from each item's (n, passed) and the structural metrics from the stored 0/1 values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from advfusion_cli.errors import UserError
from advfusion_cli.evaluate.structure import STRUCTURE_METRICS
from advfusion_cli.evaluate.workflow import (
    METRICS_FILE,
    PREDICTIONS_FILE,
    quiet_sacrebleu,
    read_evaluation,
)
from advfusion_cli.metrics.bootstrap import ItemScores


def read_predictions(folder: Path) -> list[dict]:
    path = Path(folder) / PREDICTIONS_FILE
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    except (OSError, ValueError) as err:
        raise UserError(f"Cannot read {path}: {err}") from None


def require_evaluation(folder: Path) -> dict:
    record = read_evaluation(Path(folder))
    if record is None:
        raise UserError(f"{Path(folder) / METRICS_FILE} is missing or unreadable.")
    return record


def item_scores(folder: Path) -> dict[str, ItemScores]:
    """metric -> what `evaluation.bootstrap` resamples (arrays or corpus statistics).

    Metrics defined only on some items (pass@k on items with tests, structure on references
    that define a function) keep only those items; the selection is the same for every
    method evaluated on the same items, so pairs stay aligned.
    """
    from advfusion_cli.metrics.text import evaluate_text

    quiet_sacrebleu()
    rows = read_predictions(folder)
    if not rows:
        raise UserError(f"{Path(folder) / PREDICTIONS_FILE} has no items.")
    report = evaluate_text([r["prediction"] for r in rows], [r["reference"] for r in rows])
    scores: dict[str, ItemScores] = dict(report.resamplable)
    partial = set(STRUCTURE_METRICS)
    partial.update(name for r in rows for name in r.get("scores", {}) if name.startswith("pass@"))
    for name in sorted(partial):
        values = [r.get("scores", {}).get(name) for r in rows]
        if any(v is not None for v in values):
            scores[name] = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return scores
