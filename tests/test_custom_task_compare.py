"""A task of the user's own end to end: the example's generator writes records, the example's
10-line spec defines the task, and `compare --methods task-adapter,adapterfusion,advfusion`
trains, evaluates (pass@k executed in the sandbox) and writes its verdicts and plots."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from test_evaluate_support import make_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom-task"
METHODS = "task-adapter,adapterfusion,advfusion"
LANGS = "python,javascript,ruby"  # short programs: the character-level model's budget
SETS = {
    "training.max_steps": 2,
    "training.batch_size": 2,
    "training.eval_every_steps": 2,
    "training.save_every_steps": 2,
    "data.max_train_records": 3,
    "data.max_eval_records": 2,
    "data.max_total_tokens": 1000,
    "data.max_prompt_tokens": 520,
    "data.max_target_tokens": 470,
}


def write_example_records(out: Path, *sizes: str) -> None:
    """examples/custom-task/make_records.py, run as a user would (at CI size)."""
    spec = importlib.util.spec_from_file_location("make_records", EXAMPLE / "make_records.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([str(out), *sizes])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("custom")
    records = root / "records"
    write_example_records(
        records, "--train", "6", "--validation", "2", "--test", "3", "--ruby-every", "2"
    )
    return {"model": make_model(root / "model", positions=1024), "records": records, "root": root}


def compare_args(world, *more: str) -> list[str]:
    args = ["compare", "--spec", str(EXAMPLE / "spec.yaml"), "--model", str(world["model"])]
    args += ["--data", str(world["records"]), "--workdir", str(world["root"] / "work")]
    for key, value in SETS.items():
        args += ["--set", f"{key}={value}"]
    args += ["--langs", LANGS, "--limit", "3", "--max-new-tokens", "16", "--resamples", "100"]
    return [*args, *more]


@pytest.fixture(scope="module")
def compared(world):
    from conftest import run_cli

    result = run_cli(*compare_args(world, "--methods", METHODS, "--seeds", "0"))
    assert result.exit_code == 0, result.stderr
    (folder,) = (world["root"] / "work" / "compare").iterdir()
    return folder


def test_compare_on_the_example_task(compared):
    folder = compared
    assert folder.name.startswith("custom-ruby-")
    results = json.loads((folder / "results.json").read_text())
    assert [r["method"] for r in results["rows"]] == METHODS.split(",")
    # the spec's metrics, in its order; pass@k up to the one candidate drawn
    assert results["table_metrics"] == [
        "bleu4_smooth_13a_corpus",
        "bleu4_smooth_13a_sentence_mean",
        "sacrebleu_corpus",
        "rougeL_f",
        "exact_match",
        "pass@1",
    ]
    rows = {r["method"]: r for r in results["rows"]}
    assert rows["advfusion"]["fused_adapters"] == LANGS.split(",")
    for png in ("metrics.png", "attention-advfusion.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    evaluation = rows["advfusion"]["runs"][0]["evaluation"]
    record = json.loads((Path(evaluation) / "metrics.json").read_text())
    assert record["task"] == "custom" and record["n_items"] == 3
    assert record["execution"]["ran"] and record["execution"]["language"] == "ruby"
    predictions = (Path(evaluation) / "predictions.jsonl").read_text().splitlines()
    assert all("execution" in json.loads(line) for line in predictions)
    assert "pass@k: candidates executed in the sandbox (ruby" in (folder / "results.md").read_text()


def test_generate_fills_the_template_from_a_file_and_stdin(
    world, compared, cli, tmp_path, monkeypatch
):
    import io
    import sys

    statement = "Print the sum of two integers.\nInput: two integers a and b."
    path = tmp_path / "problem.md"
    path.write_text(statement + "\n")
    run = ["generate", "--run", "advfusion/ruby", "--workdir", str(world["root"] / "work")]
    by_file = cli(*run, str(path), "--json", "--max-new-tokens", "8")
    assert by_file.exit_code == 0, by_file.stderr
    record = json.loads(by_file.stdout.splitlines()[0])
    # the example's template, the target's display name, the input without its last newline
    assert record["prompt"] == f'### Ruby\n"""\n{statement}\n"""\n'
    assert record["task"] == "custom" and record["language"] == "ruby"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(statement.encode())))
    by_stdin = cli(*run, "--max-new-tokens", "8")
    assert by_stdin.exit_code == 0, by_stdin.stderr
    assert by_stdin.stdout == record["prediction"] + "\n"
