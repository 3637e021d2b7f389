"""Paired bootstrap: noise is called noise, real gaps are significant, seeds are reproducible,
and corpus statistics are recomputed on each resample."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from advfusion_cli.errors import UserError
from advfusion_cli.metrics import text
from advfusion_cli.metrics.bootstrap import (
    CorpusStatistic,
    bootstrap_interval,
    compare_to_best,
    paired_bootstrap,
)


def _scores(seed: int, n: int = 200) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


def test_identical_methods_are_not_significant():
    a = _scores(0)
    result = paired_bootstrap(a, a.copy(), seed=1)
    assert result.p_value == 1.0
    assert not result.significant
    assert result.difference.low == result.difference.high == 0.0


def test_zero_mean_item_noise_is_within_noise():
    a = _scores(0)
    signs = np.random.default_rng(5).choice([-1.0, 1.0], size=a.size)
    b = a + 0.05 * signs  # items differ, means differ only by chance
    result = paired_bootstrap(a, b, seed=3)
    assert not result.significant
    assert result.difference.low < 0.0 < result.difference.high


def test_clear_difference_is_significant():
    b = _scores(0)
    a = b + 0.2
    result = paired_bootstrap(a, b, seed=3)
    assert result.significant
    assert result.p_value == 0.0
    assert result.difference.estimate == pytest.approx(0.2)
    assert 0.19 < result.difference.low <= result.difference.high < 0.21
    # The reverse direction is just as significant.
    assert paired_bootstrap(b, a, seed=3).significant


def test_same_seed_same_answer_different_seed_different_resamples():
    a, b = _scores(0), _scores(1)
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)
    assert paired_bootstrap(a, b, seed=7).a != paired_bootstrap(a, b, seed=8).a


def test_interval_matches_a_hand_rolled_bootstrap():
    # One chunk (<= 100 resamples): indices are one rng.integers call of shape (R, n).
    values = _scores(2, n=50)
    rng = np.random.default_rng(11)
    idx = rng.integers(0, 50, size=(80, 50))
    means = values[idx].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    interval = bootstrap_interval(values, n_resamples=80, seed=11)
    assert interval.estimate == pytest.approx(values.mean())
    assert (interval.low, interval.high) == pytest.approx((low, high))


def test_corpus_statistic_is_recomputed_per_resample():
    # A ratio of sums is not a mean of per-item ratios: the bootstrap must call `compute`.
    numerators = np.array([1.0, 2.0, 3.0, 4.0])
    denominators = np.array([1.0, 1.0, 1.0, 10.0])
    calls = []

    def ratio(idx: np.ndarray) -> float:
        calls.append(idx)
        return float(numerators[idx].sum() / denominators[idx].sum())

    interval = bootstrap_interval(CorpusStatistic(4, ratio), n_resamples=30, seed=0)
    assert interval.estimate == pytest.approx(10 / 13)
    assert len(calls) == 31  # the full set once, then every resample
    assert all(len(idx) == 4 for idx in calls)


def test_corpus_bleu_bootstrap_through_metrics_report():
    predictions = ["the cat sat on the mat", "a b c d", "x y", "def f ( x ) : return x"]
    references = ["the cat is on the mat", "a b c d", "x z", "def f ( x ) : return x + 1"]
    report = text.evaluate_text(predictions, references)
    statistic = report.resamplable[text.BLEU_CORPUS]
    interval = bootstrap_interval(statistic, n_resamples=200, seed=0)
    assert interval.estimate == pytest.approx(report.scores[text.BLEU_CORPUS])
    assert 0.0 <= interval.low <= interval.high <= 1.0
    # Against itself: not significant.
    assert not paired_bootstrap(statistic, statistic, n_resamples=50).significant


def test_compare_to_best_ranks_and_flags_noise():
    base = _scores(0)
    signs = np.random.default_rng(5).choice([-1.0, 1.0], size=base.size)
    methods = {
        "lora": base - 0.3,  # clearly worse
        "advfusion": base + 0.05 * signs,  # indistinguishable from the best
        "adapterfusion": base,
    }
    rows = compare_to_best(methods, seed=0)
    names = [row.method for row in rows]
    assert names[0] in {"advfusion", "adapterfusion"} and names[-1] == "lora"
    assert rows[0].is_best and rows[0].difference is None and rows[0].within_noise
    by_name = {row.method: row for row in rows}
    close = "adapterfusion" if names[0] == "advfusion" else "advfusion"
    assert by_name[close].within_noise
    assert not by_name["lora"].within_noise
    assert by_name["lora"].difference.estimate == pytest.approx(-0.3, abs=0.05)


def test_compare_to_best_lower_is_better():
    rows = compare_to_best({"slow": _scores(0) + 1.0, "fast": _scores(0)}, higher_is_better=False)
    assert rows[0].method == "fast"
    assert not rows[1].within_noise


def test_mismatched_items_and_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="same items"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(UserError, match="confidence"):
        bootstrap_interval([1.0], confidence=1.5)
    with pytest.raises(UserError, match="at least one test item"):
        bootstrap_interval([])
    with pytest.raises(UserError, match="at least one method"):
        compare_to_best({})


# ---- p-values at intermediate values, against brute force ---------------------------------


def _exact_p_value(a, b) -> float:
    """Enumerate all n^n resamples (equally likely): 2 * P(resampled a - b has the opposite
    sign to the observed difference, or is 0), capped at 1."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = a.size
    observed = a.mean() - b.mean()
    every = np.array(list(itertools.product(range(n), repeat=n)))  # (n^n, n) index rows
    resampled = a[every].mean(axis=1) - b[every].mean(axis=1)  # (n^n,)
    against = np.count_nonzero(np.sign(observed) * resampled <= 0.0)
    return min(1.0, 2.0 * against / n**n)


# Per-item differences (1, 0, 1, 0, 0): a resample is <= 0 exactly when it draws none of the
# two winning items, (3/5)^5 of the time, and then it is a tie (0), never negative.
TIES_ONLY = ([1, 1, 1, 0, 1], [0, 1, 0, 0, 1])
# Differences (1, -1, 1, 0, 1, 0): resamples fall on both sides and on 0.
BOTH_SIDES = ([1, 0, 1, 1, 1, 0], [0, 1, 0, 1, 0, 0])


def test_p_value_counts_ties_against_and_is_two_sided():
    assert _exact_p_value(*TIES_ONLY) == pytest.approx(2 * (3 / 5) ** 5)  # 0.156
    result = paired_bootstrap(*TIES_ONLY, n_resamples=20_000, seed=0)
    # 20000 resamples: the standard error of p is ~0.004.
    assert result.p_value == pytest.approx(2 * (3 / 5) ** 5, abs=0.015)
    assert not result.significant


@pytest.mark.parametrize("order", [1, -1])
def test_p_value_matches_full_enumeration(order):
    a, b = BOTH_SIDES[::order]  # and reversed: a negative observed difference
    exact = _exact_p_value(a, b)
    assert 0.05 < exact < 0.9  # an intermediate value, not the 0 or 1 the other tests see
    assert paired_bootstrap(a, b, n_resamples=20_000, seed=1).p_value == pytest.approx(
        exact, abs=0.02
    )


def test_p_value_equals_a_hand_count_over_the_same_resamples():
    a, b = (np.asarray(x, dtype=np.float64) for x in BOTH_SIDES)
    rng = np.random.default_rng(4)  # the implementation's draws: chunks of at most 100
    rows = np.concatenate([rng.integers(0, 6, size=(r, 6)) for r in (100, 100, 50)])
    observed = a.mean() - b.mean()
    against = sum(1 for row in rows if (a[row].mean() - b[row].mean()) * np.sign(observed) <= 0)
    result = paired_bootstrap(a, b, n_resamples=250, seed=4)
    assert 0 < against < 125
    assert result.p_value == 2 * against / 250
