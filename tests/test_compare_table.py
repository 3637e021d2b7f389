"""Table semantics of `compare`: the best is bold, methods the paired bootstrap cannot tell
from it are marked within noise, clearly worse ones as significantly below; ties bold nothing;
seeds combine as per-item means (arrays) or mean corpus statistics."""

from __future__ import annotations

import numpy as np
import pytest

from advfusion_cli.compare.aggregate import ResultRow, combine_seeds, fill_group
from advfusion_cli.compare.options import parse_methods, parse_seeds, parse_vary
from advfusion_cli.compare.table import (
    BELOW,
    WITHIN,
    cell_text,
    markdown_table,
    rich_table,
    verdict_lines,
)
from advfusion_cli.errors import UserError
from advfusion_cli.metrics.bootstrap import CorpusStatistic


def items(passed: int, n: int = 100, offset: int = 0) -> np.ndarray:
    scores = np.zeros(n)
    scores[offset : offset + passed] = 1.0
    return scores


def group(per_method: dict[str, list[np.ndarray]]) -> list[ResultRow]:
    rows = [ResultRow(m, None, list(range(len(v))), [], {}) for m, v in per_method.items()]
    scores = {m: {"exact_match": [float(a.mean()) for a in v]} for m, v in per_method.items()}
    combined = {m: {"exact_match": combine_seeds(v)} for m, v in per_method.items()}
    fill_group(rows, scores, combined, n_resamples=2000)
    return rows


def test_best_within_noise_and_below():
    rows = group(
        {
            "advfusion": [items(60)],
            "adapterfusion": [items(57, offset=5)],  # 3 fewer, 7 items disagree: noise
            "base": [items(20)],  # 40 fewer on the same items: a real difference
        }
    )
    cells = {r.method: r.metrics["exact_match"] for r in rows}
    assert cells["advfusion"].is_best and cells["advfusion"].within_noise
    assert cells["adapterfusion"].within_noise and cells["adapterfusion"].p_value > 0.05
    assert cells["base"].within_noise is False and cells["base"].p_value < 0.05
    assert cells["base"].diff == pytest.approx(-0.40)
    assert cells["base"].diff_high < 0 < cells["adapterfusion"].diff_high
    assert cells["advfusion"].low < 0.6 < cells["advfusion"].high

    best = 0.6
    value, interval, bold = cell_text("exact_match", cells["advfusion"], best)
    assert bold and WITHIN not in value and BELOW not in value
    value, _, bold = cell_text("exact_match", cells["adapterfusion"], best)
    assert not bold and value.endswith(WITHIN)
    value, interval, _ = cell_text("exact_match", cells["base"], best)
    assert value.endswith(BELOW) and interval.startswith("[") and interval.endswith("]")

    lines = verdict_lines(rows, ["exact_match"], None)
    assert lines == ["exact_match: advfusion is best, but adapterfusion is within noise of it."]
    markdown = markdown_table(rows, ["exact_match"], None)
    assert "| advfusion | **0.600** [" in markdown and f"0.200 {BELOW} [" in markdown
    assert rich_table(rows, ["exact_match"], "t", None).row_count == 3


def test_ties_bold_nothing_and_say_so():
    rows = group({"lora": [items(0)], "advfusion": [items(0)]})
    assert verdict_lines(rows, ["exact_match"], None) == [
        "exact_match: every method scores the same."
    ]
    for row in rows:
        value, _, bold = cell_text("exact_match", row.metrics["exact_match"], None)
        assert not bold and value == "0.000"


def test_seeds_are_averaged_per_item_and_std_reported():
    rows = group({"a": [items(50), items(70)], "b": [items(10), items(12)]})
    cell = rows[0].metrics["exact_match"]
    assert cell.mean == pytest.approx(0.6) and cell.per_seed == [0.5, 0.7]
    assert cell.std == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert rows[1].metrics["exact_match"].within_noise is False
    assert "0.600 ± 0.141" in cell_text("exact_match", cell, 0.6)[0]


def test_corpus_statistics_combine_as_the_mean_over_seeds():
    first = CorpusStatistic(4, lambda idx: float(len(set(idx.tolist()))))
    second = CorpusStatistic(4, lambda idx: 2.0 * len(set(idx.tolist())))
    combined = combine_seeds([first, second])
    assert combined.compute(np.arange(4)) == pytest.approx((4 + 8) / 2)
    with pytest.raises(UserError, match="different numbers of items"):
        combine_seeds([items(1, n=3), items(1, n=4)])


def test_option_parsing_errors():
    assert parse_methods("LoRA, advfusion_compacter,base") == [
        "lora",
        "advfusion-compacter",
        "base",
    ]
    with pytest.raises(UserError, match="Did you mean 'advfusion'"):
        parse_methods("advfuson")
    with pytest.raises(UserError, match="twice"):
        parse_methods("lora,lora")
    assert parse_seeds("0, 1,2") == [0, 1, 2]
    with pytest.raises(UserError, match="integers"):
        parse_seeds("0,x")
    vary = parse_vary("quantization=4bit,none")
    assert (vary.key, vary.values) == ("model.quantization", ("4bit", "none"))
    assert parse_vary("training.lr=1e-3,5e-3").key == "training.lr"
    with pytest.raises(UserError, match="key=v1,v2"):
        parse_vary("quantization")
    with pytest.raises(UserError, match="Unknown --vary key 'quantisation'"):
        parse_vary("quantisation=4bit,none")


def test_methods_tied_at_the_top_are_named_together():
    rows = group({"task-adapter": [items(13)], "adapterfusion": [items(13)], "base": [items(0)]})
    assert verdict_lines(rows, ["exact_match"], None) == [
        "exact_match: task-adapter and adapterfusion tie as best, "
        "significantly above every other method."
    ]
    bolds = [cell_text("exact_match", r.metrics["exact_match"], 0.13)[2] for r in rows]
    assert bolds == [True, True, False]
