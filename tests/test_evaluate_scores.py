"""`advfusion evaluate` scores what each item's prediction earns against that item's own
reference: three test items with known references and fixed predictions (generation replaced),
and the scores in metrics.json and predictions.jsonl equal values worked out by hand. A
prediction scored against another item's reference changes every number."""

from __future__ import annotations

import json
import math

import pytest
from test_evaluate_support import make_model, write_generation

from advfusion_cli.evaluate import distributed
from advfusion_cli.inference.generation import Completion

# reference -> prediction. 13a and rouge-score both split these into single letters.
PREDICTIONS = {
    "a b c d": "a b c d",  # exact
    "e f g h": "e f g x",  # 3 of 4 words, 2 of 3 bigrams
    "i j k l": "m n",  # nothing in common, and shorter
}


def _fixture(root):
    """xCodeEval rows whose three ruby test items have the references above."""
    data = write_generation(root, {"train": 1, "validation": 1, "test": 3})
    path = data / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    references = iter(PREDICTIONS)
    for row in rows:
        if row["lang_cluster"] == "Ruby":
            row["source_code"] = next(references)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return data


def _fixed_generation(model, tokenizer, examples, settings, rule, **kwargs):
    """Each item's prediction, looked up by its own reference, in the examples' order."""
    return [Completion(texts=[PREDICTIONS[example.target]]) for example in examples]


def _smoothed_bleu(matches, possible, prediction_length, reference_length) -> float:
    """BLEU-4 with add-one smoothing on every order (the authors' variant)."""
    log_precision = sum(math.log((m + 1) / (t + 1)) for m, t in zip(matches, possible, strict=True))
    brevity = min(1.0, math.exp(1 - reference_length / prediction_length))
    return brevity * math.exp(log_precision / 4)


def test_scores_pair_each_prediction_with_its_own_reference(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "generate_completions", _fixed_generation)
    model = make_model(tmp_path / "model")
    data = _fixture(tmp_path / "gen")
    result = cli(
        "evaluate", "--run", "base", "--task", "code-generation", "--target", "ruby",
        "--model", str(model), "--data", str(data), "--workdir", str(tmp_path / "w"),
        "--no-execute", "--max-new-tokens", "8",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (folder,) = (tmp_path / "w" / "evals").glob("base-ruby-*/test-all-*")
    scores = json.loads((folder / "metrics.json").read_text())["scores"]

    # Per item (exact, 3-of-4, nothing): ROUGE-1 F 1, 3/4, 0; ROUGE-2 F 1, 2/3, 0;
    # ROUGE-L F (longest common subsequence 4, 3, 0 of 4 words) 1, 3/4, 0.
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["rouge1_f"] == pytest.approx((1 + 3 / 4) / 3)
    assert scores["rouge2_f"] == pytest.approx((1 + 2 / 3) / 3)
    assert scores["rougeL_f"] == pytest.approx((1 + 3 / 4) / 3)
    # Sentence BLEU: 1; (4/5 . 3/4 . 2/3 . 1/2)^(1/4); e^(1 - 4/2) (1/3 . 1/2 . 1 . 1)^(1/4).
    sentences = [1.0, (0.2) ** 0.25, math.exp(-1) * (1 / 6) ** 0.25]
    assert scores["bleu4_smooth_13a_sentence_mean"] == pytest.approx(sum(sentences) / 3)
    # Corpus BLEU: matches 7, 5, 3, 1 of 10, 7, 4, 2 n-grams; 10 predicted words, 12 reference.
    corpus = _smoothed_bleu([7, 5, 3, 1], [10, 7, 4, 2], 10, 12)
    assert scores["bleu4_smooth_13a_corpus"] == pytest.approx(corpus)
    assert corpus == pytest.approx(math.exp(-0.2) * (8 / 11 * 6 / 8 * 4 / 5 * 2 / 3) ** 0.25)

    rows = {
        json.loads(line)["reference"]: json.loads(line)
        for line in (folder / "predictions.jsonl").read_text().splitlines()
    }
    assert {ref: row["prediction"] for ref, row in rows.items()} == PREDICTIONS
    assert rows["e f g h"]["scores"]["rouge1_f"] == pytest.approx(3 / 4)
    assert rows["a b c d"]["scores"]["exact_match"] == 1.0
    assert rows["i j k l"]["scores"]["bleu4_smooth_13a_sentence_mean"] == pytest.approx(
        sentences[2]
    )
