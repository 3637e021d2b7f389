"""Unbiased pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").

pass@k = E_problems[ 1 − C(n−c, k) / C(n, k) ]  for n samples per problem of which c pass.

C(n−c, k)/C(n, k) is evaluated as the product Π_{i=n−c+1..n} (1 − k/i), which never forms the
huge binomial coefficients, so it is exact to float precision for any n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from advfusion_cli.errors import UserError

DEFAULT_KS = (1, 5, 10)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n passes."""
    if n < 1 or not 0 <= c <= n:
        raise UserError(f"pass@k needs n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise UserError(f"pass@{k} needs 1 <= k <= n (samples per problem), got n={n}")
    if n - c < k:
        return 1.0  # every k-subset contains a passing sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def per_problem_pass_at_k(results: Sequence[tuple[int, int]], k: int) -> list[float]:
    """pass@k of each problem from its (n, c): the per-item scores a paired bootstrap resamples."""
    return [pass_at_k(n, c, k) for n, c in results]


def mean_pass_at_k(
    results: Sequence[tuple[int, int]], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """{"pass@k": mean over problems} for (n, c) per problem.

    A k larger than the smallest n is left out (as HF evaluate's code_eval does) rather than
    estimated from too few samples.
    """
    if not results:
        raise UserError("pass@k needs at least one problem")
    min_n = min(n for n, _ in results)
    return {
        f"pass@{k}": sum(pass_at_k(n, c, k) for n, c in results) / len(results)
        for k in ks
        if k <= min_n
    }
