"""`advfusion compare` and `advfusion inspect` end to end on a tiny random Llama: every method
trained once and evaluated on the same items, results.json/.csv/.md and valid PNGs, a rerun
that trains and evaluates nothing, `--vary` adding a column, dry runs and one-line errors."""

from __future__ import annotations

import csv
import json

import pytest
from test_evaluate_support import make_model, training_args, write_translation

PNG = b"\x89PNG\r\n\x1a\n"
METHODS = "base,lora,task-adapter,adapterfusion,advfusion"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    model = make_model(root / "model")
    data = write_translation(root / "trans")
    return {"model": model, "data": data, "workdir": root / "work", "root": root}


def compare_args(world, *more: str) -> list[str]:
    return [
        "compare",
        *training_args(world["model"], world["data"], "code-translation", world["workdir"]),
        "--langs",
        "java,python,ruby",
        "--limit",
        "6",
        "--max-new-tokens",
        "16",
        "--resamples",
        "200",
        *more,
    ]


def run_ids(workdir) -> set[str]:
    return {p.name for p in (workdir / "runs").iterdir()}


@pytest.fixture(scope="module")
def compared(world):
    from conftest import run_cli

    result = run_cli(*compare_args(world, "--methods", METHODS, "--seeds", "0,1"))
    assert result.exit_code == 0, result.stderr
    (folder,) = (world["workdir"] / "compare").iterdir()
    return result, folder


def test_compare_writes_every_file(compared):
    result, folder = compared
    for name in ("results.json", "results.csv", "results.md", "metrics.png"):
        assert (folder / name).stat().st_size > 0, name
    for png in ("metrics.png", "attention-adapterfusion.png", "attention-advfusion.png"):
        data = (folder / png).read_bytes()
        assert data[:8] == PNG and len(data) > 5000, png

    results = json.loads((folder / "results.json").read_text())
    assert [r["method"] for r in results["rows"]] == METHODS.split(",")
    assert results["seeds"] == [0, 1] and results["evaluation"]["n_items"] == 6
    assert results["evaluation"]["decoding"]["mode"] == "greedy"
    assert results["bootstrap"] == {"resamples": 200, "confidence": 0.95, "seed": 0}
    assert results["table_metrics"][:2] == [
        "bleu4_smooth_13a_corpus",
        "bleu4_smooth_13a_sentence_mean",
    ]
    rows = {r["method"]: r for r in results["rows"]}
    assert [run["seed"] for run in rows["advfusion"]["runs"]] == [0, 1]
    assert len({run["run_id"] for run in rows["advfusion"]["runs"]}) == 2
    assert rows["base"]["trainable_params"] == 0 and rows["base"]["runs"][0]["run_id"] is None
    assert rows["advfusion"]["trainable_params"] > rows["task-adapter"]["trainable_params"] > 0
    assert rows["advfusion"]["fused_adapters"] == ["java", "python", "ruby"]
    cell = rows["lora"]["metrics"]["bleu4_smooth_13a_corpus"]
    assert len(cell["per_seed"]) == 2 and cell["low"] <= cell["mean"] <= cell["high"]
    bests = [r["method"] for r in results["rows"] if r["metrics"]["exact_match"]["is_best"]]
    assert len(bests) == 1

    with open(folder / "results.csv") as handle:
        table = list(csv.DictReader(handle))
    metric_names = {r["metric"] for r in table}
    assert {"sacrebleu_corpus", "function_name_preserved", "rougeL_f"} <= metric_names
    assert len(table) == len(METHODS.split(",")) * len(metric_names)

    markdown = (folder / "results.md").read_text()
    assert "| method | bleu4_smooth_13a_corpus |" in markdown and "## Is it noise?" in markdown
    assert "![attention-advfusion](attention-advfusion.png)" in markdown

    out = result.stdout
    for method in METHODS.split(","):
        assert method in out
    assert "95% paired-bootstrap interval over the 6 test items" in out
    assert "trainable" in out and "train time" in out and "peak mem" in out


def test_every_method_scored_the_same_items(compared):
    _, folder = compared
    results = json.loads((folder / "results.json").read_text())
    digests = set()
    for row in results["rows"]:
        for run in row["runs"]:
            with open(f"{run['evaluation']}/metrics.json") as handle:
                digests.add(json.load(handle)["selection"]["ids_sha256"])
    assert len(digests) == 1


def test_rerun_reuses_runs_and_evaluations(world, compared, cli):
    _, folder = compared
    before = run_ids(world["workdir"])
    evaluations = sorted(world["workdir"].glob("**/evals/*/metrics.json"))
    stamps = [path.stat().st_mtime_ns for path in evaluations]
    again = cli(*compare_args(world, "--methods", METHODS, "--seeds", "0,1"))
    assert again.exit_code == 0, again.stderr
    assert run_ids(world["workdir"]) == before  # nothing retrained
    assert [path.stat().st_mtime_ns for path in evaluations] == stamps  # nothing re-evaluated
    assert (folder / "results.json").exists()


def test_inspect_fusion_run_draws_heatmap(world, compared, cli):
    (advfusion,) = [r for r in run_ids(world["workdir"]) if r.startswith("advfusion-")][:1]
    result = cli("inspect", str(world["workdir"] / "runs" / advfusion))
    assert result.exit_code == 0, result.stderr
    heatmap = world["workdir"] / "runs" / advfusion / "inspect" / "fusion-attention.png"
    assert heatmap.read_bytes()[:8] == PNG
    assert "trainable params" in result.stdout and "fuses ruby" in result.stdout
    assert "ruby*" in result.stdout  # the attention table marks the target's column
    assert "eval test-6-greedy-16" in result.stdout


def test_vary_adds_a_column(world, cli, tmp_path):
    out = tmp_path / "vary"
    result = cli(
        *compare_args(world, "--methods", "base,task-adapter", "--vary", "training.lr=0.001,0.005"),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["vary"]["key"] == "training.lr"
    assert [(r["method"], r["vary"]) for r in results["rows"]] == [
        ("base", "0.001"),
        ("task-adapter", "0.001"),
        ("base", "0.005"),
        ("task-adapter", "0.005"),
    ]
    runs = {r["vary"]: r["runs"][0]["run_id"] for r in results["rows"] if r["method"] != "base"}
    assert runs["0.001"] != runs["0.005"]
    assert "training.lr" in result.stdout


def test_dry_run_and_errors(world, cli):
    dry = cli(*compare_args(world, "--methods", "lora,advfusion", "--seeds", "0", "--dry-run"))
    assert dry.exit_code == 0 and "reuse (finished)" in dry.stdout and "--dry-run" in dry.stdout
    bad = cli(*compare_args(world, "--methods", "lora,adapterfuson"))
    assert bad.exit_code == 2 and "Did you mean 'adapterfusion'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    bad = cli(*compare_args(world, "--vary", "quantization"))
    assert bad.exit_code == 2 and "--vary takes key=v1,v2" in bad.stderr
    before = run_ids(world["workdir"])
    bad = cli(*compare_args(world, "--methods", "lora", "--metrics", "pass@1", "--seeds", "9"))
    assert bad.exit_code == 2 and "Unknown metric for code-translation (n=1) 'pass@1'" in bad.stderr
    assert run_ids(world["workdir"]) == before  # refused before training anything


def test_without_seeds_the_spec_seed_is_the_one_trained(world, cli):
    """--set training.seed (or a spec's seed) decides the seed when --seeds is not given."""
    dry = cli(*compare_args(world, "--methods", "lora", "--set", "training.seed=5", "--dry-run"))
    assert dry.exit_code == 0, dry.stderr
    rows = [line for line in dry.stdout.splitlines() if "lora-" in line]
    assert len(rows) == 1 and rows[0].split("│")[2].strip() == "5", dry.stdout
