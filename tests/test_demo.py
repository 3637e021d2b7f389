"""`advfusion demo` with tiny sizes: the whole pipeline (adapters for every testbed language,
fusions, baselines, the floor, pass@k in the sandbox, table and plots) through the real entry
point, with one progress display, and a rerun that reuses everything. About 8 s on an idle
2-core machine (its nine training stages are 2 steps each on a 2-layer model)."""

from __future__ import annotations

import json

import pytest
from test_evaluate_support import make_model

from advfusion_cli.compare.demo import DEMO_METHODS, DemoSettings
from advfusion_cli.sandbox.programs import executable_languages

TINY = {
    "data.max_train_records": 4,
    "data.max_eval_records": 2,
    "data.max_prompt_tokens": 400,
    "data.max_target_tokens": 1600,
    "data.max_total_tokens": 2040,
    "training.batch_size": 2,
}


def demo_args(model, workdir) -> list[str]:
    args = ["demo", "--model", str(model), "--workdir", str(workdir), "--limit", "3"]
    args += ["--steps", "2", "--max-new-tokens", "8", "--batch-size", "3"]
    for key, value in TINY.items():
        args += ["--set", f"{key}={value}"]
    return args


def test_demo_defaults_are_the_budgeted_pipeline():
    settings = DemoSettings()
    assert settings.methods == DEMO_METHODS
    assert set(settings.methods) == {
        "base",
        "base-1shot",
        "lora",
        "compacter",
        "task-adapter",
        "adapterfusion",
        "advfusion",
    }
    assert settings.task == "code-generation" and settings.limit == 100
    assert "training.max_steps=50" in settings.sets()
    extra = DemoSettings(extra_sets=("compacter:method.phm_rank=2",))
    assert "compacter:method.phm_rank=2" in extra.sets()


@pytest.mark.skipif(not executable_languages()["ruby"], reason="needs ruby for pass@k")
def test_demo_runs_the_whole_pipeline_with_one_display(cli, tmp_path):
    model = make_model(tmp_path / "model", positions=2048, hidden=128)
    workdir = tmp_path / "demo"
    result = cli(*demo_args(model, workdir))
    assert result.exit_code == 0, result.stderr

    (folder,) = (workdir / "compare").iterdir()
    results = json.loads((folder / "results.json").read_text())
    assert [r["method"] for r in results["rows"]] == list(DEMO_METHODS)
    assert results["task"] == "code-generation" and results["target"] == "ruby"
    rows = {r["method"]: r for r in results["rows"]}
    assert "pass@1" in rows["advfusion"]["metrics"]
    assert rows["advfusion"]["fused_adapters"] == ["python", "javascript", "java", "go", "ruby"]
    stored = workdir / "adapters"
    languages = {p.name for p in stored.glob("*/code-generation/task-adapter/*")}
    assert languages == {"python", "javascript", "java", "go", "ruby"}
    for png in ("metrics.png", "attention-adapterfusion.png", "attention-advfusion.png"):
        assert (folder / png).read_bytes()[:4] == b"\x89PNG"

    assert "pass@1" in result.stdout and "Demo finished in" in result.stdout
    assert f"advfusion inspect advfusion/ruby --workdir {workdir}" in result.stdout
    # One display for the whole pipeline: no per-phase training bars of their own.
    assert result.stderr.count("advfusion demo") == 1
    assert " lr " not in result.stderr  # the training commands' own bars show "loss .. lr .."

    runs = sorted(p.name for p in (workdir / "runs").iterdir())
    again = cli(*demo_args(model, workdir))
    assert again.exit_code == 0, again.stderr
    assert sorted(p.name for p in (workdir / "runs").iterdir()) == runs
