"""Smoothed BLEU-4 exactly as the AdvFusion authors computed it (HF `evaluate` "bleu", smooth=True).

BLEU = BP · exp(¼ Σ_{n=1..4} log p_n),  p_n = (m_n + 1) / (t_n + 1),  BP = min(1, exp(1 − r/c))

That is tensorflow/nmt's `compute_bleu` with Lin & Och (2004) add-one smoothing on every
n-gram order, clipped counts against the element-wise maximum over references, `r` the
*shortest* reference length, and text split by sacrebleu's 13a tokenizer. The n-gram maths is
ours; only the tokenizer is sacrebleu's. Scores are in [0, 1].

Every item is reduced to ten additive sufficient statistics (matches and possible n-grams per
order, prediction length, reference length), so corpus BLEU over any resample of items is a
sum and one formula — that is what the paired bootstrap needs.

Edge cases where the reference implementation divides by zero (documented in docs/metrics.md):
an empty prediction scores BP = 0 (the limit of exp(1 − r/c) as c → 0) unless the reference is
empty too, in which case BP = 1; a non-empty prediction against an empty reference has BP = 1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

MAX_ORDER = 4
# Columns of a statistics row: matches[0:4], possible[4:8], prediction length, reference length.
N_STATS = 2 * MAX_ORDER + 2
_PRED_LEN = 2 * MAX_ORDER
_REF_LEN = 2 * MAX_ORDER + 1

_TOKENIZER_13A = Tokenizer13a()


def tokenize_13a(text: str) -> list[str]:
    """mteval-v13a tokens, as HF evaluate's Tokenizer13a returns them."""
    return _TOKENIZER_13A(text).split()


def ngram_counts(tokens: Sequence[str], max_order: int = MAX_ORDER) -> Counter[tuple[str, ...]]:
    """Counts of every n-gram of order 1..max_order."""
    counts: Counter[tuple[str, ...]] = Counter()
    for order in range(1, max_order + 1):
        for start in range(len(tokens) - order + 1):
            counts[tuple(tokens[start : start + order])] += 1
    return counts


def bleu_statistics(prediction: str, references: Sequence[str]) -> np.ndarray:
    """The ten additive statistics of one item; shape (N_STATS,)."""
    if not references:
        raise ValueError("each prediction needs at least one reference")
    pred_tokens = tokenize_13a(prediction)
    ref_token_lists = [tokenize_13a(ref) for ref in references]

    # A prediction n-gram is credited at most as often as it occurs in any single reference.
    max_ref_counts: Counter[tuple[str, ...]] = Counter()
    for ref_tokens in ref_token_lists:
        max_ref_counts |= ngram_counts(ref_tokens)
    clipped = ngram_counts(pred_tokens) & max_ref_counts

    stats = np.zeros(N_STATS, dtype=np.float64)
    for ngram, count in clipped.items():
        stats[len(ngram) - 1] += count
    for order in range(1, MAX_ORDER + 1):
        stats[MAX_ORDER + order - 1] = max(0, len(pred_tokens) - order + 1)
    stats[_PRED_LEN] = len(pred_tokens)
    stats[_REF_LEN] = min(len(tokens) for tokens in ref_token_lists)
    return stats


def corpus_statistics(
    predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]
) -> np.ndarray:
    """Statistics of every item; shape (n_items, N_STATS). A reference may be a str or a list."""
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; they must pair up"
        )
    rows = [
        bleu_statistics(pred, [ref] if isinstance(ref, str) else list(ref))
        for pred, ref in zip(predictions, references, strict=True)
    ]
    return np.stack(rows) if rows else np.zeros((0, N_STATS), dtype=np.float64)


def bleu_from_totals(totals: np.ndarray, smooth: bool = True) -> float:
    """BLEU from summed statistics (shape (N_STATS,)); smooth=False is the unsmoothed nmt BLEU."""
    matches = totals[:MAX_ORDER]
    possible = totals[MAX_ORDER : 2 * MAX_ORDER]
    pred_len, ref_len = float(totals[_PRED_LEN]), float(totals[_REF_LEN])

    if smooth:
        precisions = (matches + 1.0) / (possible + 1.0)
    else:
        safe_possible = np.where(possible > 0, possible, 1.0)
        precisions = np.where(possible > 0, matches / safe_possible, 0.0)
    if precisions.min() <= 0.0:
        return 0.0
    geometric_mean = math.exp(float(np.log(precisions).sum()) / MAX_ORDER)

    if pred_len == 0.0:
        brevity_penalty = 1.0 if ref_len == 0.0 else 0.0
    elif pred_len > ref_len:
        brevity_penalty = 1.0
    else:
        brevity_penalty = math.exp(1.0 - ref_len / pred_len)
    return geometric_mean * brevity_penalty


def corpus_bleu(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    smooth: bool = True,
) -> float:
    """Corpus-level BLEU-4: statistics summed over items, then one score."""
    return bleu_from_totals(corpus_statistics(predictions, references).sum(axis=0), smooth)


def sentence_bleu_scores(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    smooth: bool = True,
) -> list[float]:
    """One BLEU-4 per item (what the authors average for the sentence-level figure)."""
    return [bleu_from_totals(row, smooth) for row in corpus_statistics(predictions, references)]
