"""Text metrics: the authors' smoothed BLEU-4 against hand-worked values, sacrebleu parity where
the definitions coincide, ROUGE against hand-worked values with HF evaluate's defaults, exact
match, and the edge cases (empty strings, unicode) the reference implementations trip over.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from advfusion_cli.errors import UserError
from advfusion_cli.metrics import bleu, text
from advfusion_cli.metrics.bootstrap import CorpusStatistic

# Case A: pred "the cat sat on the mat" / ref "the cat is on the mat" (6 tokens each).
#   1-grams: the×2, cat, on, mat match -> 5/6     2-grams: the cat, on the, the mat -> 3/5
#   3-grams: on the mat -> 1/4                     4-grams: none -> 0/3
#   smoothed p = 6/7, 4/6, 2/5, 1/4; product = 2/35; BP = 1 (c = r = 6)
CASE_A = ("the cat sat on the mat", "the cat is on the mat")
CASE_A_SMOOTHED = (2 / 35) ** 0.25
# Case B: pred "the cat" / ref "the cat sat on the mat": 1-grams 2/2, 2-grams 1/1, no 3/4-grams.
#   smoothed p = 3/3, 2/2, 1/1, 1/1 -> 1; BP = exp(1 - 6/2) = e^-2
CASE_B = ("the cat", "the cat sat on the mat")
CASE_B_SMOOTHED = math.exp(-2.0)
# Case C (13a splits punctuation): "Hello, world!" -> Hello , world ! (4); "Hello world!" (3).
#   1-grams 3/4; 2-grams (world !) 1/3; 3-grams 0/2; 4-grams 0/1
#   smoothed p = 4/5, 2/4, 1/3, 1/2; product = 1/15; BP = 1 (c = 4 > r = 3)
CASE_C = ("Hello, world!", "Hello world!")
CASE_C_SMOOTHED = (1 / 15) ** 0.25


@pytest.mark.parametrize(
    ("pair", "expected"),
    [(CASE_A, CASE_A_SMOOTHED), (CASE_B, CASE_B_SMOOTHED), (CASE_C, CASE_C_SMOOTHED)],
)
def test_sentence_bleu_matches_hand_computed_values(pair, expected):
    prediction, reference = pair
    assert bleu.sentence_bleu_scores([prediction], [reference]) == pytest.approx([expected])
    assert text.bleu4_smoothed_corpus([prediction], [reference]) == pytest.approx(expected)


def test_corpus_bleu_sums_statistics_before_scoring():
    # Case A + case B: matches 7, 4, 1, 0 of 8, 6, 4, 3; c = 8, r = 12.
    # smoothed p = 8/9, 5/7, 2/5, 1/4 -> product 4/63; BP = exp(1 - 12/8) = e^-0.5
    predictions, references = [CASE_A[0], CASE_B[0]], [CASE_A[1], CASE_B[1]]
    expected_corpus = (4 / 63) ** 0.25 * math.exp(-0.5)
    assert text.bleu4_smoothed_corpus(predictions, references) == pytest.approx(expected_corpus)
    expected_mean = (CASE_A_SMOOTHED + CASE_B_SMOOTHED) / 2
    assert text.bleu4_smoothed_sentence_mean(predictions, references) == pytest.approx(
        expected_mean
    )


def test_statistics_row_layout():
    row = bleu.bleu_statistics(*CASE_A[:1], [CASE_A[1]])
    np.testing.assert_array_equal(row, [5, 3, 1, 0, 6, 5, 4, 3, 6, 6])


def test_unsmoothed_bleu_is_zero_without_a_matching_4gram():
    assert bleu.corpus_bleu([CASE_A[0]], [CASE_A[1]], smooth=False) == 0.0


def test_multiple_references_use_max_counts_and_shortest_length():
    # "a b c" against "a b c d e" and "a b": every n-gram is in the first reference, so
    # smoothed p = 4/4, 3/3, 2/2, 1/1 = 1; r = min(5, 2) = 2 < c = 3 -> BP = 1.
    assert bleu.corpus_bleu(["a b c"], [["a b c d e", "a b"]]) == pytest.approx(1.0)
    row = bleu.bleu_statistics("a b c", ["a b c d e", "a b"])
    assert row[bleu.N_STATS - 1] == 2  # reference length is the shortest one


def test_empty_strings_do_not_crash_and_follow_documented_limits():
    assert bleu.sentence_bleu_scores([""], ["the cat"]) == [0.0]  # BP -> 0 as c -> 0
    assert bleu.sentence_bleu_scores([""], [""]) == [1.0]  # nothing to say, nothing said
    # "a b" against "": no matches; possible 2, 1, 0, 0 -> p = 1/3, 1/2, 1, 1; BP = 1.
    assert bleu.sentence_bleu_scores(["a b"], [""]) == pytest.approx([(1 / 6) ** 0.25])
    scores = text.compute_text_metrics(["", "x"], ["", ""])
    assert set(scores) == set(text.METRIC_NAMES)
    assert all(math.isfinite(value) for value in scores.values())


def test_unicode_tokens_are_compared_exactly():
    assert bleu.sentence_bleu_scores(["naïve café 你好"], ["naïve café 你好"]) == [1.0]
    # naïve/naive and café/cafe differ: 1-grams 1/3, 2-grams 0/2, 3-grams 0/1, no 4-grams.
    # smoothed p = 2/4, 1/3, 1/2, 1/1 -> product 1/12; BP = 1.
    assert bleu.sentence_bleu_scores(["naïve café 你好"], ["naive cafe 你好"]) == pytest.approx(
        [(1 / 12) ** 0.25]
    )


def _random_corpus(seed: int, n: int = 12) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    vocab = ["def", "f", "(", "x", ")", ":", "return", "x", "+", "1", "if", "else", "y"]

    def sentence() -> str:
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 15)))

    references = [sentence() for _ in range(n)]
    # Predictions copy parts of the reference so that 4-grams match.
    predictions = [ref[: len(ref) * 2 // 3] + " " + sentence() for ref in references]
    return predictions, references


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_unsmoothed_bleu_equals_sacrebleu_without_smoothing(seed):
    # With one reference and no smoothing both are Papineni's BLEU on 13a tokens (sacrebleu's
    # "closest" reference length equals nmt's "shortest" with a single reference). With
    # smoothing they differ by definition: nmt adds one to every order's matches and totals,
    # sacrebleu's default "exp" halves a zero-match order's precision geometrically and
    # leaves unigrams alone, so only the unsmoothed pair can be compared.
    predictions, references = _random_corpus(seed)
    ours = bleu.corpus_bleu(predictions, references, smooth=False)
    theirs = BLEU(tokenize="13a", smooth_method="none").corpus_score(predictions, [references])
    assert ours > 0.0
    assert ours * 100 == pytest.approx(theirs.score, rel=1e-9)


def test_sacrebleu_corpus_and_its_signature():
    predictions, references = _random_corpus(7)
    result = text.sacrebleu_corpus(predictions, references)
    expected = BLEU().corpus_score(predictions, [references]).score
    assert result.score == pytest.approx(expected)
    assert result.signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    # Per-item statistics summed reproduce the corpus score (what the bootstrap resamples).
    stats = text.sacrebleu_statistics(predictions, references)
    assert text.sacrebleu_from_totals(stats.sum(axis=0)) == pytest.approx(expected)


def test_rouge_f_measures_hand_computed():
    # pred "the cat on the mat" (5 tokens) vs ref "the cat sat on the mat" (6 tokens)
    # ROUGE-1: overlap 5 -> P 1, R 5/6, F 10/11.  ROUGE-2: pred bigrams 4, ref 5, overlap 3
    # -> P 3/4, R 3/5, F 2/3.  ROUGE-L: LCS 5 -> F 10/11.
    scores = text.rouge_f_scores(["the cat on the mat"], ["the cat sat on the mat"])
    assert scores[text.ROUGE1] == pytest.approx([10 / 11])
    assert scores[text.ROUGE2] == pytest.approx([2 / 3])
    assert scores[text.ROUGEL] == pytest.approx([10 / 11])


def test_rouge_uses_no_stemmer_like_hf_evaluate():
    # With a Porter stemmer "cats running" and "cat run" would match fully.
    scores = text.rouge_f_scores(["cats running"], ["cat run"])
    assert scores[text.ROUGE1] == [0.0]


def test_rouge_handles_empty_and_non_ascii_text():
    scores = text.rouge_f_scores(["", "你好", "Héllo"], ["abc", "你好", "hello"])
    assert scores[text.ROUGE1][0] == 0.0
    assert scores[text.ROUGE1][1] == 0.0  # no [a-z0-9] tokens: documented behaviour
    # "Héllo" -> tokens h, llo; "hello" -> hello: no overlap.
    assert scores[text.ROUGE1][2] == 0.0


def test_exact_match_strips_trailing_whitespace_only():
    scores = text.exact_match_scores(
        ["x = 1\n", "  x = 1", "x = 1 \t\n\n", "x=1"], ["x = 1", "x = 1", "x = 1", "x = 1"]
    )
    assert scores == [1.0, 0.0, 1.0, 0.0]


def test_compute_text_metrics_names_and_values():
    predictions = [CASE_A[0], CASE_B[0], "same"]
    references = [CASE_A[1], CASE_B[1], "same"]
    report = text.evaluate_text(predictions, references)
    assert tuple(report.scores) == text.METRIC_NAMES
    assert report.scores[text.EXACT_MATCH] == pytest.approx(1 / 3)
    assert report.scores[text.BLEU_SENTENCE_MEAN] == pytest.approx(
        (CASE_A_SMOOTHED + CASE_B_SMOOTHED + 1.0) / 3
    )
    for name, values in report.per_item.items():
        assert len(values) == 3
        assert report.scores[name] == pytest.approx(float(np.mean(values)))
    assert report.signatures[text.SACREBLEU_CORPUS].startswith("nrefs:1|")
    # Every metric can be resampled; on all items the resample reproduces the score.
    for name in text.METRIC_NAMES:
        item = report.resamplable[name]
        full = np.arange(3)
        value = item.compute(full) if isinstance(item, CorpusStatistic) else float(np.mean(item))
        assert value == pytest.approx(report.scores[name])
    assert isinstance(report.resamplable[text.BLEU_CORPUS], CorpusStatistic)
    # A corpus metric on a resample is recomputed, not averaged: items 0, 0 -> case A alone.
    twice_a = report.resamplable[text.BLEU_CORPUS].compute(np.array([0, 0]))
    assert twice_a == pytest.approx(bleu.corpus_bleu([CASE_A[0]] * 2, [CASE_A[1]] * 2))


def test_bad_inputs_raise_user_errors():
    with pytest.raises(UserError, match="2 predictions but 1 references"):
        text.compute_text_metrics(["a", "b"], ["a"])
    with pytest.raises(UserError, match="empty"):
        text.compute_text_metrics([], [])
