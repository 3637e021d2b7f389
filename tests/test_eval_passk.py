"""pass@k: the unbiased estimator against hand-computed values and the binomial formula."""

from __future__ import annotations

import math

import pytest

from advfusion_cli.errors import UserError
from advfusion_cli.metrics.passk import mean_pass_at_k, pass_at_k, per_problem_pass_at_k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),  # c/n
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 0, 1, 0.0),  # nothing passes
        (5, 0, 5, 0.0),
        (5, 4, 2, 1.0),  # n - c = 1 < k: every pair holds a pass
        (5, 5, 1, 1.0),
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5) = 11/12
        (200, 1, 1, 0.005),
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_product_form_equals_binomial_ratio():
    for n in range(1, 25):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_large_n_stays_finite():
    # C(1000, 500) overflows a float; the product form does not need it.
    value = pass_at_k(1000, 7, 500)
    assert 0.99 < value <= 1.0


def test_mean_over_problems_and_unreachable_k():
    results = [(5, 2), (5, 0), (5, 5)]
    assert per_problem_pass_at_k(results, 1) == pytest.approx([0.4, 0.0, 1.0])
    averaged = mean_pass_at_k(results, ks=(1, 2, 10))
    assert averaged == pytest.approx({"pass@1": 1.4 / 3, "pass@2": 1.7 / 3})  # 10 > n: left out


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_invalid_counts_raise(n, c, k):
    with pytest.raises(UserError):
        pass_at_k(n, c, k)


def test_mean_needs_problems():
    with pytest.raises(UserError, match="at least one problem"):
        mean_pass_at_k([])
