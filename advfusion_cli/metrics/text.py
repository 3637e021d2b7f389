"""Text metrics for generated code and commit messages, each named by its exact variant.

The authors' BLEU (smoothed BLEU-4, 13a, corpus and mean of sentences), sacrebleu's corpus BLEU
with its signature, ROUGE-1/2/L F-measure (rouge-score, no stemmer, mean over items) and exact
match. Besides the scores, every metric comes with what a paired bootstrap needs: per-item
scores for metrics that are means, and a recompute-on-a-resample function for corpus metrics.
See docs/metrics.md for the definitions and where they differ from the reference libraries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

from advfusion_cli.errors import UserError
from advfusion_cli.metrics import bleu
from advfusion_cli.metrics.bootstrap import CorpusStatistic, ItemScores

BLEU_CORPUS = "bleu4_smooth_13a_corpus"
BLEU_SENTENCE_MEAN = "bleu4_smooth_13a_sentence_mean"
SACREBLEU_CORPUS = "sacrebleu_corpus"
ROUGE1, ROUGE2, ROUGEL = "rouge1_f", "rouge2_f", "rougeL_f"
EXACT_MATCH = "exact_match"
METRIC_NAMES = (
    BLEU_CORPUS,
    BLEU_SENTENCE_MEAN,
    SACREBLEU_CORPUS,
    ROUGE1,
    ROUGE2,
    ROUGEL,
    EXACT_MATCH,
)
# Scale of each metric: sacrebleu reports 0-100 as its users expect; everything else is 0-1.
METRIC_SCALE = {name: 100.0 if name == SACREBLEU_CORPUS else 1.0 for name in METRIC_NAMES}


@dataclass(frozen=True)
class SacreBleuResult:
    score: float  # 0-100
    signature: str  # e.g. nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0


@dataclass
class TextMetricsReport:
    """Scores, per-item scores, sacrebleu's signature, and per metric what the bootstrap resamples.

    `resamplable[name]` is the per-item score array for metrics that are means of items, and a
    `CorpusStatistic` for corpus metrics; pass it to bootstrap.paired_bootstrap/compare_to_best.
    """

    scores: dict[str, float]
    per_item: dict[str, list[float]]
    signatures: dict[str, str]
    resamplable: dict[str, ItemScores]


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise UserError(
            f"{len(predictions)} predictions but {len(references)} references; "
            "every prediction needs exactly one reference"
        )
    if not predictions:
        raise UserError("no predictions to score (the evaluated split is empty)")


def bleu4_smoothed_corpus(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Authors' corpus BLEU: HF evaluate "bleu", smooth=True, 13a tokens; in [0, 1]."""
    _check_pairs(predictions, references)
    return bleu.corpus_bleu(predictions, references, smooth=True)


def bleu4_smoothed_sentence_mean(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean over items of the same smoothed BLEU-4 computed per item; in [0, 1]."""
    _check_pairs(predictions, references)
    return float(np.mean(bleu.sentence_bleu_scores(predictions, references, smooth=True)))


def _sacrebleu_metric() -> BLEU:
    return BLEU(tokenize="13a")  # sacrebleu defaults: 13a, exp smoothing, mixed case


def sacrebleu_statistics(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """sacrebleu's additive statistics per item: correct[4], total[4], sys_len, ref_len."""
    # effective_order only changes sentence scores, not the counts read here; it silences
    # sacrebleu's per-sentence warning. The corpus metric keeps the default signature.
    metric = BLEU(tokenize="13a", effective_order=True)
    rows = []
    for pred, ref in zip(predictions, references, strict=True):
        # sentence_score extracts the same counts corpus_score sums; its smoothing is unused here.
        item = metric.sentence_score(pred, [ref])
        rows.append([*item.counts, *item.totals, item.sys_len, item.ref_len])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), 2 * bleu.MAX_ORDER + 2)


def sacrebleu_from_totals(totals: np.ndarray) -> float:
    """sacrebleu corpus BLEU (exp smoothing, 0-100) from summed statistics."""
    order = bleu.MAX_ORDER
    return BLEU.compute_bleu(
        correct=[int(x) for x in totals[:order]],
        total=[int(x) for x in totals[order : 2 * order]],
        sys_len=int(totals[2 * order]),
        ref_len=int(totals[2 * order + 1]),
        smooth_method="exp",
    ).score


def sacrebleu_corpus(predictions: Sequence[str], references: Sequence[str]) -> SacreBleuResult:
    """sacrebleu.metrics.BLEU() corpus score with its reproducibility signature."""
    _check_pairs(predictions, references)
    metric = _sacrebleu_metric()
    score = metric.corpus_score(list(predictions), [list(references)]).score
    return SacreBleuResult(score=score, signature=str(metric.get_signature()))


def rouge_f_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, list[float]]:
    """Per-item ROUGE-1/2/L F-measure with rouge-score's defaults as HF evaluate uses them.

    use_stemmer=False (HF evaluate's default); rouge-score's tokenizer lowercases and keeps
    only [a-z0-9] runs, so text made only of other characters scores 0.
    """
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    per_item: dict[str, list[float]] = {ROUGE1: [], ROUGE2: [], ROUGEL: []}
    for pred, ref in zip(predictions, references, strict=True):
        scores = scorer.score(ref, pred)  # rouge-score's order is (target, prediction)
        per_item[ROUGE1].append(float(scores["rouge1"].fmeasure))
        per_item[ROUGE2].append(float(scores["rouge2"].fmeasure))
        per_item[ROUGEL].append(float(scores["rougeL"].fmeasure))
    return per_item


def exact_match_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """1.0 where prediction and reference are equal after removing trailing whitespace.

    Leading whitespace is kept: indentation is meaningful in code.
    """
    return [float(p.rstrip() == r.rstrip()) for p, r in zip(predictions, references, strict=True)]


def evaluate_text(predictions: Sequence[str], references: Sequence[str]) -> TextMetricsReport:
    """Every text metric at once, with per-item scores and bootstrap resampling functions."""
    _check_pairs(predictions, references)
    bleu_stats = bleu.corpus_statistics(predictions, references)  # (n_items, 10)
    sacre_stats = sacrebleu_statistics(predictions, references)  # (n_items, 10)
    sacre = sacrebleu_corpus(predictions, references)

    per_item: dict[str, list[float]] = {
        BLEU_SENTENCE_MEAN: [bleu.bleu_from_totals(row) for row in bleu_stats],
        **rouge_f_scores(predictions, references),
        EXACT_MATCH: exact_match_scores(predictions, references),
    }
    scores = {
        BLEU_CORPUS: bleu.bleu_from_totals(bleu_stats.sum(axis=0)),
        BLEU_SENTENCE_MEAN: float(np.mean(per_item[BLEU_SENTENCE_MEAN])),
        SACREBLEU_CORPUS: sacre.score,
        ROUGE1: float(np.mean(per_item[ROUGE1])),
        ROUGE2: float(np.mean(per_item[ROUGE2])),
        ROUGEL: float(np.mean(per_item[ROUGEL])),
        EXACT_MATCH: float(np.mean(per_item[EXACT_MATCH])),
    }
    n_items = len(predictions)
    resamplable: dict[str, ItemScores] = {
        name: np.asarray(values, dtype=np.float64) for name, values in per_item.items()
    }
    # Corpus metrics are not means of item scores: recompute them from the resampled statistics.
    resamplable[BLEU_CORPUS] = CorpusStatistic(
        n_items, lambda idx: bleu.bleu_from_totals(bleu_stats[idx].sum(axis=0))
    )
    resamplable[SACREBLEU_CORPUS] = CorpusStatistic(
        n_items, lambda idx: sacrebleu_from_totals(sacre_stats[idx].sum(axis=0))
    )
    return TextMetricsReport(
        scores=scores,
        per_item=per_item,
        signatures={SACREBLEU_CORPUS: sacre.signature},
        resamplable=resamplable,
    )


def compute_text_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """{metric name: score} for METRIC_NAMES (sacrebleu_corpus 0-100, the others 0-1)."""
    return evaluate_text(predictions, references).scores
