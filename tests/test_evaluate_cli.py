"""`advfusion evaluate` end to end on a tiny random Llama: files and provenance, the table,
reuse, the frozen-base floor with pass@k in the sandbox, runs loaded exactly as trained
(LoRA, adapter, fusion over the adapters it was trained with), and one-line errors."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from conftest import one_line_error
from test_evaluate_support import (
    make_model,
    training_args,
    write_generation,
    write_translation,
)

from advfusion_cli.sandbox.programs import executable_languages


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Model, translation data and a workdir holding finished lora, task-adapter and advfusion
    runs for ruby (fused over java, python, ruby)."""
    from conftest import run_cli

    root = tmp_path_factory.mktemp("eval")
    model = make_model(root / "model")
    data = write_translation(root / "trans")
    workdir = root / "work"
    common = training_args(model, data, "code-translation", workdir)
    for args in (
        ["train-adapters", "--langs", "ruby", "--kind", "lora"],
        ["adv-fuse", "--target", "ruby", "--langs", "java,python,ruby"],
    ):
        result = run_cli(*args, *common)
        assert result.exit_code == 0, result.stderr
    return {"root": root, "model": model, "data": data, "workdir": workdir}


def run_folder(workdir, prefix: str):
    (folder,) = [p for p in (workdir / "runs").iterdir() if p.name.startswith(prefix + "-")]
    return folder


def evaluate_args(world, *more: str) -> list[str]:
    return ["evaluate", "--workdir", str(world["workdir"]), "--max-new-tokens", "24", *more]


def test_fusion_run_writes_predictions_metrics_and_attention(cli, world):
    result = cli(*evaluate_args(world, "--run", "advfusion/ruby", "--limit", "5"))
    assert result.exit_code == 0, result.stderr
    run = run_folder(world["workdir"], "advfusion-ruby")
    folder = run / "evals" / "test-5-greedy-24"
    record = json.loads((folder / "metrics.json").read_text())
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]

    assert record["method"] == "advfusion" and record["target"] == "ruby"
    assert record["n_items"] == 5 == len(rows)
    assert record["decoding"]["mode"] == "greedy" and record["decoding"]["max_new_tokens"] == 24
    assert record["stop_rule"].startswith("EOS or a new '### Code written in'")
    for name in (
        "bleu4_smooth_13a_corpus",
        "bleu4_smooth_13a_sentence_mean",
        "sacrebleu_corpus",
        "rouge1_f",
        "rouge2_f",
        "rougeL_f",
        "exact_match",
        "function_name_preserved",
        "parameter_names_preserved",
    ):
        assert name in record["scores"], name
    assert record["signatures"]["sacrebleu_corpus"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    provenance = record["provenance"]
    assert provenance["run_id"] == run.name
    assert set(provenance["adapters"]) == {"java", "python", "ruby"}
    for folder_used in provenance["adapters"].values():  # the adapters' own runs, not the store
        assert "/runs/task-adapter-" in folder_used and folder_used.endswith("/final")
    assert "method:\n  name: advfusion" in provenance["spec"]
    assert provenance["packages"]["torch"] and "git" in provenance and provenance["evaluated"]

    from advfusion_cli.data import load_task

    prompts = {e.id: e for e in load_task("code-translation", str(world["data"]), ["ruby"], "test")}
    for row in rows:
        example = prompts[row["id"]]
        assert row["language"] == "ruby" and row["reference"] == example.target
        assert row["prompt_sha256"] == hashlib.sha256(example.prompt.encode()).hexdigest()
        assert isinstance(row["prediction"], str) and "exact_match" in row["scores"]

    attention = json.loads((folder / "fusion_attention.json").read_text())
    assert attention["adapters"] == ["java", "python", "ruby"] and attention["places"] == ["mlp"]
    assert len(attention["mean"]) == 2  # layers
    for per_place in attention["mean"]:
        assert sum(per_place[0]) == pytest.approx(1.0, abs=1e-4)

    assert (
        "bleu4_smooth_13a_corpus" in result.stdout and "parameter_names_preserved" in result.stdout
    )
    again = cli(*evaluate_args(world, "--run", "advfusion/ruby", "--limit", "5"))
    assert again.exit_code == 0 and "Reusing the evaluation" in again.stdout


def test_loaded_runs_are_the_trained_models(world):
    import torch
    from safetensors.torch import load_file

    from advfusion_cli.inference.loading import load_run

    fusion = load_run(run_folder(world["workdir"], "advfusion-ruby"))
    assert fusion.host.mode == "fusion" and fusion.host.fused_names == ["java", "python", "ruby"]
    assert fusion.host.masked == []  # phase 2 restored the target
    saved = load_file(
        run_folder(world["workdir"], "advfusion-ruby") / "final" / "fusion.safetensors"
    )
    layer = fusion.host.place(0, "mlp").fusion
    assert torch.equal(layer.value.weight.detach(), saved["layers.0.mlp.value.weight"])

    lora = load_run(run_folder(world["workdir"], "lora-ruby"))
    assert type(lora.model).__name__ == "PeftModelForCausalLM" and not lora.model.training

    adapter = load_run(run_folder(world["workdir"], "task-adapter-ruby"))
    assert adapter.host.mode == "adapter" and adapter.host.active == "ruby"


def test_lora_and_base_by_name(cli, world):
    lora = cli(*evaluate_args(world, "--run", "lora/ruby", "--limit", "3"))
    assert lora.exit_code == 0, lora.stderr
    base = cli(
        *evaluate_args(world, "--run", "base", "--limit", "3"),
        "--model",
        str(world["model"]),
        "--data",
        str(world["data"]),
        "--target",
        "ruby",
    )
    assert base.exit_code == 0, base.stderr
    (folder,) = (world["workdir"] / "evals").glob("base-ruby-*/test-3-greedy-24")
    record = json.loads((folder / "metrics.json").read_text())
    assert record["method"] == "base" and record["provenance"]["run_id"] is None
    assert record["provenance"]["adapters"] == {}


@pytest.mark.skipif(not executable_languages()["python"], reason="sandbox cannot run python")
def test_code_generation_floor_runs_candidates_in_the_sandbox(cli, world, tmp_path):
    data = write_generation(tmp_path / "gen")
    result = cli(
        "evaluate",
        "--run",
        "base",
        "--task",
        "code-generation",
        "--target",
        "python",
        "--model",
        str(world["model"]),
        "--data",
        str(data),
        "--workdir",
        str(tmp_path / "w"),
        "--max-new-tokens",
        "8",
        "--n",
        "2",
        "--temperature",
        "0.8",
    )
    assert result.exit_code == 0, result.stderr
    (folder,) = (tmp_path / "w" / "evals").glob("base-python-*/test-all-n2-*")
    record = json.loads((folder / "metrics.json").read_text())
    assert record["execution"]["ran"] and record["execution"]["n_samples"] == 2
    assert record["execution"]["ks"] == [1] and "pass@1" in record["scores"]
    assert sum(record["execution"]["statuses"].values()) == 2 * record["n_items"]
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert all(len(r["predictions"]) == 2 and r["execution"]["n"] == 2 for r in rows)
    assert "pass@1" in result.stdout


def test_errors_are_one_line(cli, world, tmp_path):
    workdir = str(world["workdir"])
    message = one_line_error(cli("evaluate", "--run", "advfuson/ruby", "--workdir", workdir))
    assert "Unknown method 'advfuson'. Did you mean 'advfusion'?" in message
    message = one_line_error(cli("evaluate", "--run", str(tmp_path / "gone"), "--workdir", workdir))
    assert "does not exist" in message
    message = one_line_error(cli("evaluate", "--run", "compacter/ruby", "--workdir", workdir))
    assert "No finished compacter run for 'ruby'" in message

    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_folder(world["workdir"], "lora-ruby"), unfinished)
    (unfinished / "status.json").write_text(json.dumps({"status": "running"}))
    message = one_line_error(cli("evaluate", "--run", str(unfinished)))
    assert "is not finished (status: running)" in message

    lora = str(run_folder(world["workdir"], "lora-ruby"))
    message = one_line_error(cli("evaluate", "--run", lora, "--model", "x/y"))
    assert "--model only apply to --run base" in message
    message = one_line_error(cli("evaluate", "--run", lora, "--limit", "0"))
    assert "--limit must be >= 1" in message


def test_inspect_records_fusion_attention_when_no_evaluation_has_it(cli, world, tmp_path):
    """A fusion run copied elsewhere (no evaluations, adapter runs absent): its adapters are
    found in the store through the provenance env.json recorded, and inspect records the
    attention itself."""
    source = run_folder(world["workdir"], "advfusion-ruby")
    copy = tmp_path / "work" / "runs" / source.name
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("evals", "inspect"))
    result = cli("inspect", str(copy), "--limit", "3")
    assert result.exit_code == 0, result.stderr
    attention = json.loads((copy / "inspect" / "fusion_attention.json").read_text())
    assert attention["items"] == 3 and attention["adapters"] == ["java", "python", "ruby"]
    assert (copy / "inspect" / "fusion-attention.png").read_bytes()[:4] == b"\x89PNG"
    assert "recorded now" in result.stdout and "ruby*" in result.stdout
