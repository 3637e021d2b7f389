"""Paired bootstrap resampling over test items (Koehn 2004): is a difference between methods noise?

Every resample draws n item indices with replacement and recomputes each method's metric on
the *same* indices, so the per-item correlation between methods is kept. A metric that is a
mean of item scores is resampled as a mean; a corpus metric (corpus BLEU) is recomputed from
the resampled items through a `CorpusStatistic`.

Interval: percentile interval of the resampled statistic around the full-data estimate.
p-value: two-sided sign-flip count, p = min(1, 2 · #{resamples where a − b has the opposite
sign to the observed a − b, or is 0} / R); p = 1 when the observed difference is exactly 0.
"Significant" means p < 1 − confidence, which matches the difference interval excluding 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from advfusion_cli.errors import UserError

DEFAULT_RESAMPLES = 1000
_CHUNK = 100  # resamples drawn at once; bounds memory at 100 × n_items indices


@dataclass(frozen=True)
class CorpusStatistic:
    """A metric recomputed from a set of item indices (shape (n_items,), repeats allowed)."""

    n_items: int
    compute: Callable[[np.ndarray], float]


ItemScores = Sequence[float] | np.ndarray | CorpusStatistic


@dataclass(frozen=True)
class Interval:
    estimate: float  # the statistic on all items
    low: float
    high: float


@dataclass(frozen=True)
class PairedComparison:
    a: Interval
    b: Interval
    difference: Interval  # a − b
    p_value: float
    significant: bool
    n_resamples: int
    confidence: float
    seed: int


@dataclass(frozen=True)
class MethodVsBest:
    method: str
    estimate: Interval
    is_best: bool
    difference: Interval | None  # method − best; None for the best itself
    p_value: float | None
    within_noise: bool  # True for the best and for every method not significantly different


def _n_items(scores: ItemScores) -> int:
    return scores.n_items if isinstance(scores, CorpusStatistic) else len(scores)


def _full_estimate(scores: ItemScores) -> float:
    if isinstance(scores, CorpusStatistic):
        return float(scores.compute(np.arange(scores.n_items)))
    return float(np.mean(np.asarray(scores, dtype=np.float64)))


def _index_chunks(n_items: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, _CHUNK):
        yield rng.integers(0, n_items, size=(min(_CHUNK, n_resamples - start), n_items))


def _resampled(scores: ItemScores, idx: np.ndarray) -> np.ndarray:
    """The statistic on each resample; idx (r, n_items) -> (r,)."""
    if isinstance(scores, CorpusStatistic):
        return np.array([scores.compute(row) for row in idx], dtype=np.float64)
    return np.asarray(scores, dtype=np.float64)[idx].mean(axis=1)


def _check(n_resamples: int, confidence: float, *sizes: int) -> None:
    if n_resamples < 1:
        raise UserError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence must be in (0, 1), got {confidence}")
    if min(sizes) < 1:
        raise UserError("bootstrap needs at least one test item")
    if len(set(sizes)) > 1:
        raise UserError(f"paired bootstrap needs scores on the same items, got sizes {sizes}")


def _interval(estimate: float, samples: np.ndarray, confidence: float) -> Interval:
    alpha = 1.0 - confidence
    low, high = np.quantile(samples, [alpha / 2, 1.0 - alpha / 2])
    return Interval(estimate=estimate, low=float(low), high=float(high))


def bootstrap_interval(
    scores: ItemScores,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of one method's metric."""
    n = _n_items(scores)
    _check(n_resamples, confidence, n)
    samples = np.concatenate(
        [_resampled(scores, idx) for idx in _index_chunks(n, n_resamples, seed)]
    )
    return _interval(_full_estimate(scores), samples, confidence)


def paired_bootstrap(
    a: ItemScores,
    b: ItemScores,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Intervals of a, b and a − b on shared resamples, with the sign-flip p-value."""
    n = _n_items(a)
    _check(n_resamples, confidence, n, _n_items(b))
    a_parts, b_parts = [], []
    for idx in _index_chunks(n, n_resamples, seed):
        a_parts.append(_resampled(a, idx))
        b_parts.append(_resampled(b, idx))
    a_samples, b_samples = np.concatenate(a_parts), np.concatenate(b_parts)
    diff_samples = a_samples - b_samples

    a_est, b_est = _full_estimate(a), _full_estimate(b)
    observed = a_est - b_est
    if observed == 0.0:
        p_value = 1.0
    else:
        flips = np.count_nonzero(np.sign(observed) * diff_samples <= 0.0)
        p_value = min(1.0, 2.0 * flips / n_resamples)
    return PairedComparison(
        a=_interval(a_est, a_samples, confidence),
        b=_interval(b_est, b_samples, confidence),
        difference=_interval(observed, diff_samples, confidence),
        p_value=p_value,
        significant=p_value < 1.0 - confidence,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )


def compare_to_best(
    methods: Mapping[str, ItemScores],
    higher_is_better: bool = True,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[MethodVsBest]:
    """Each method against the best one (by full-data estimate), best first.

    Ties for best go to the method listed first. All comparisons share one seed, so they use
    the same resamples.
    """
    if not methods:
        raise UserError("compare_to_best needs at least one method")
    estimates = {name: _full_estimate(scores) for name, scores in methods.items()}
    sign = 1.0 if higher_is_better else -1.0
    ranked = sorted(methods, key=lambda name: -sign * estimates[name])  # stable: ties keep order
    best = ranked[0]

    rows = [
        MethodVsBest(
            method=best,
            estimate=bootstrap_interval(methods[best], n_resamples, confidence, seed),
            is_best=True,
            difference=None,
            p_value=None,
            within_noise=True,
        )
    ]
    for name in ranked[1:]:
        comparison = paired_bootstrap(methods[name], methods[best], n_resamples, confidence, seed)
        rows.append(
            MethodVsBest(
                method=name,
                estimate=comparison.a,
                is_best=False,
                difference=comparison.difference,
                p_value=comparison.p_value,
                within_noise=not comparison.significant,
            )
        )
    return rows
