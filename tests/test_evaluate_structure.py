"""The structural translation metric: the entry function's name and parameter names, per
language reader, and what counts as preserved."""

from __future__ import annotations

import pytest

from advfusion_cli.evaluate.structure import (
    FUNCTION_NAME,
    PARAMETER_NAMES,
    Signature,
    signatures,
    structure_scores,
)

CASES = {
    "python": (
        "import sys\n\ndef helper(x: int) -> int:\n    def inner(q):\n        return q\n"
        "    return x\n\ndef count_decreases(points: list[int], limit=3, *rest, **kw) -> int:\n"
        "    return 0\n",
        [
            Signature("helper", ("x",)),
            Signature("count_decreases", ("points", "limit", "rest", "kw")),
        ],
    ),
    "ruby": (
        "def valid?(x)\n  true\nend\n\ndef count_decreases(points, limit = 3, &block)\n  0\nend\n"
        "def self.bare a, b\nend\n",
        [
            Signature("valid?", ("x",)),
            Signature("count_decreases", ("points", "limit", "block")),
            Signature("bare", ("a", "b")),
        ],
    ),
    "javascript": (
        "function isOdd(price) {\n  return price % 2;\n}\n\nconst countOdd = (prices, start = 0) => {\n};\n"
        "export async function load(url, { retries } ) {}\n",
        [
            Signature("isOdd", ("price",)),
            Signature("countOdd", ("prices", "start")),
            Signature("load", ("url", "{ retries }")),
        ],
    ),
    "go": (
        "package main\n\nfunc sumBelow(marks []int, limit int) int {\n\treturn 0\n}\n\n"
        "func pair(a, b int, names ...string) {}\n",
        [Signature("sumBelow", ("marks", "limit")), Signature("pair", ("a", "b", "names"))],
    ),
    "java": (
        "public class Main {\n    static String complement(String strand) {\n        if (x) {\n"
        "        }\n        return strand;\n    }\n"
        "    public static int total(final Map<String, Integer> counts, int[] xs) throws Exception {\n"
        "        return 0;\n    }\n    public static void main(String[] args) {\n    }\n}\n",
        [
            Signature("complement", ("strand",)),
            Signature("total", ("counts", "xs")),
        ],
    ),
}


@pytest.mark.parametrize("language", sorted(CASES))
def test_signature_readers(language):
    code, expected = CASES[language]
    assert signatures(language, code) == expected


def test_unknown_language_has_no_reader():
    assert signatures("cobol", "anything") is None
    assert structure_scores("cobol", ["x"], ["y"]) is None


def test_preserved_name_and_parameters():
    reference = "def helper(x)\n  x\nend\n\ndef count_decreases(points, limit)\n  0\nend\n"
    predictions = [
        "def count_decreases(points, limit)\n  1\nend\n",  # both kept (helper may be dropped)
        "def count_decreases(pts, limit)\n  1\nend\n",  # name kept, a parameter renamed
        "def countDecreases(points, limit)\n  1\nend\n",  # name changed; last function's params
        "puts 1\n",  # no function at all
    ]
    scores = structure_scores("ruby", predictions, [reference] * 4)
    assert scores[FUNCTION_NAME] == [1.0, 1.0, 0.0, 0.0]
    assert scores[PARAMETER_NAMES] == [1.0, 0.0, 1.0, 0.0]


def test_reference_without_function_is_not_scored():
    scores = structure_scores(
        "python", ["def f(a):\n  pass\n", "x"], ["print(1)\n", "def f(a): pass"]
    )
    assert scores[FUNCTION_NAME] == [None, 0.0]
    assert scores[PARAMETER_NAMES] == [None, 0.0]
