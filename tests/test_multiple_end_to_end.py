"""`evaluate --benchmark multipl-e` end to end on the embedded model, in Lua and Racket.

n = 2 samples on the three fixture problems (tests/fixtures/multipl_e): both formats are
written (metrics.json + predictions.jsonl, and MultiPL-E's `<name>.results.json.gz` plus the
completion files), each program is prompt + completion + "\\n" + tests with the completion cut
at the row's stop tokens, and `--completions` re-scores the completion files to the same
statuses and pass@k. Hand-written completion files then check that a correct completion is
scored as passing through the same command.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from advfusion_cli.evaluate.multiple import RESULTS_SUFFIX
from advfusion_cli.sandbox.multiple_languages import MULTIPL_E_LANGUAGES
from advfusion_cli.sandbox.multiple_runner import find_multiple_toolchain, install_hint

FIXTURES = Path(__file__).parent / "fixtures" / "multipl_e"


def read_gz(path: Path) -> dict:
    return json.loads(gzip.decompress(path.read_bytes()))


@pytest.mark.parametrize("lang", ["lua", "rkt"])
def test_benchmark_evaluation_writes_both_formats_and_rescoring_agrees(cli, tmp_path, lang):
    if find_multiple_toolchain(lang) is None:
        pytest.skip(install_hint(MULTIPL_E_LANGUAGES[lang]))
    out = tmp_path / "eval"
    args = [
        "evaluate", "--run", "base", "--benchmark", "multipl-e", "--lang", lang,
        "--data", str(FIXTURES), "--n", "2", "--max-new-tokens", "12",
        "--workdir", str(tmp_path / "wd"), "--out", str(out), "--workers", "2",
    ]  # fmt: skip
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert "pass@1 = " in result.stdout
    assert "n=2, temperature 0.2, top-p 0.95" in result.stdout  # the protocol, printed

    record = json.loads((out / "metrics.json").read_text())
    assert record["benchmark"]["name"] == "multipl-e"
    assert record["decoding"]["n"] == 2 and record["decoding"]["temperature"] == 0.2
    assert set(record["scores"]) == {"pass@1"}
    assert any("n = 2" in note for note in record["protocol"]["notes"])
    assert record["execution"]["programs"] == 6
    assert record["execution"]["sandbox_runs"] <= 6
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").open()]
    assert [p["id"] for p in predictions] == [
        "Fixture_0_add", "Fixture_1_is_even", "Fixture_2_largest",
    ]  # fmt: skip
    stops = None
    for prediction in predictions:
        results = read_gz(out / f"{prediction['id']}{RESULTS_SUFFIX}")
        assert set(results) == {
            "name", "language", "prompt", "tests", "stop_tokens", "completions", "results",
        }  # fmt: skip
        stops = results["stop_tokens"]
        assert results["completions"] == prediction["predictions"]
        assert len(results["results"]) == 2
        for completion, run in zip(results["completions"], results["results"], strict=True):
            assert not any(stop in completion for stop in stops)  # cut at the stop tokens
            assert run["program"] == results["prompt"] + completion + "\n" + results["tests"]
            assert set(run) == {"program", "status", "exit_code", "stdout", "stderr"}
        assert prediction["statuses"] == [r["status"] for r in results["results"]]
    assert stops is not None
    assert not (out / "executions.partial.jsonl").exists()
    assert not (out / "generations.partial.jsonl").exists()

    again = cli(*args)
    assert again.exit_code == 0 and "Reusing the evaluation" in again.stdout

    rescored_out = tmp_path / "rescored"
    rescored = cli(
        "evaluate", "--benchmark", "multipl-e", "--completions", str(out / "completions"),
        "--out", str(rescored_out),
    )  # fmt: skip
    assert rescored.exit_code == 0, rescored.stderr
    other = json.loads((rescored_out / "metrics.json").read_text())
    assert other["scores"] == record["scores"]
    assert other["execution"]["statuses"] == record["execution"]["statuses"]
    for prediction in predictions:
        name = f"{prediction['id']}{RESULTS_SUFFIX}"
        assert read_gz(rescored_out / name)["results"] == read_gz(out / name)["results"]


CORRECT = {
    "lua": ["    return x + y\nend", "    return n % 2 == 0\nend",
            "    return math.max(table.unpack(numbers))\nend"],
    "rkt": ["  (+ x y))", "  (even? n))", "  (apply max numbers))"],
}  # fmt: skip


@pytest.mark.parametrize("lang", ["lua", "rkt"])
def test_completion_files_made_elsewhere_are_executed_as_given(cli, tmp_path, lang):
    if find_multiple_toolchain(lang) is None:
        pytest.skip(install_hint(MULTIPL_E_LANGUAGES[lang]))
    folder = tmp_path / "completions"
    folder.mkdir()
    rows = [json.loads(line) for line in (FIXTURES / f"humaneval-{lang}.jsonl").open()]
    for row, correct in zip(rows, CORRECT[lang], strict=True):
        # One correct and one wrong completion; the wrong one ends with a stop token, which
        # a completion file keeps: executed as given, never cut.
        wrong = "  (error 'no))\n(" if lang == "rkt" else "    return nil\nend\n\nerror('x')"
        row["completions"] = [correct, wrong]
        (folder / f"{row['name']}.json").write_text(json.dumps(row))
    out = tmp_path / "out"
    result = cli(
        "evaluate", "--benchmark", "multipl-e", "--completions", str(folder),
        "--lang", lang, "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    record = json.loads((out / "metrics.json").read_text())
    assert record["scores"] == {"pass@1": pytest.approx(0.5)}
    assert all(p["passed"] == 1 for p in record["per_problem"].values())
    first = read_gz(out / f"{rows[0]['name']}{RESULTS_SUFFIX}")
    assert first["results"][1]["program"].endswith(row_wrong_tail(lang) + "\n" + rows[0]["tests"])
    assert "completions as given" in result.stdout


def row_wrong_tail(lang: str) -> str:
    return "(error 'no))\n(" if lang == "rkt" else "error('x')"


def test_compare_evaluates_every_method_on_the_benchmark(cli, tmp_path):
    if find_multiple_toolchain("lua") is None:
        pytest.skip(install_hint(MULTIPL_E_LANGUAGES["lua"]))
    out = tmp_path / "compare"
    result = cli(
        "compare", "--methods", "base", "--benchmark", "multipl-e", "--lang", "lua",
        "--benchmark-data", str(FIXTURES), "--n", "2", "--max-new-tokens", "8",
        "--workdir", str(tmp_path / "wd"), "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "MultiPL-E humaneval-lua" in result.stdout and "pass@1" in result.stdout
    payload = json.loads((out / "results.json").read_text())
    assert payload["table_metrics"] == ["pass@1"]
    assert payload["evaluation"]["n_items"] == 3
    evaluation = Path(payload["rows"][0]["runs"][0]["evaluation"])
    assert (evaluation / f"Fixture_0_add{RESULTS_SUFFIX}").is_file()
    # --lang without --benchmark, and a language this machine cannot run, fail up front.
    lone = cli("compare", "--methods", "base", "--lang", "lua", "--workdir", str(tmp_path / "w"))
    assert lone.exit_code == 2 and "--lang needs --benchmark multipl-e" in lone.stderr


def test_grid_launcher_evaluates_on_the_benchmark(cli, tmp_path):
    """`compare --benchmark multipl-e --launcher local`: the evaluation stage runs the benchmark
    (not the task's test split) in its own process, and a finished one is not run again."""
    if find_multiple_toolchain("lua") is None:
        pytest.skip(install_hint(MULTIPL_E_LANGUAGES["lua"]))
    args = (
        "compare", "--methods", "base", "--benchmark", "multipl-e", "--lang", "lua",
        "--benchmark-data", str(FIXTURES), "--n", "1", "--max-new-tokens", "4",
        "--workdir", str(tmp_path / "wd"), "--out", str(tmp_path / "compare"),
        "--launcher", "local",
    )  # fmt: skip
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    payload = json.loads((tmp_path / "compare" / "results.json").read_text())
    assert payload["table_metrics"] == ["pass@1"]
    evaluation = Path(payload["rows"][0]["runs"][0]["evaluation"])
    assert (evaluation / f"Fixture_0_add{RESULTS_SUFFIX}").is_file()
    again = cli(*args, "--dry-run")
    assert again.exit_code == 0, again.stderr
    assert "evaluate base -> ruby on MultiPL-E humaneval-lua" in again.stdout
    assert "0 of 3 stages to run" in again.stdout, again.stdout  # the evaluation was found done
    summary = (tmp_path / "wd" / "grids").glob("*/summary.md")
    assert "evaluated on MultiPL-E humaneval-lua" in next(summary).read_text()
