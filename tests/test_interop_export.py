"""`advfusion export` and round trips: export -> import gives bit-identical weights and logits;
an exported adapter setup holds exactly the tensors and configs the `adapters` library saved
(same names, same values); peft LoRA in and out; AdvFusion over imported adapters end to end on
the embedded model; one-line refusals for what the other layout cannot hold."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import one_line_error
from interop_support import (
    copy_fixture,
    fixture,
    golden_logits,
    host_with_run,
    import_args,
    load_fixture_base,
    logits_of,
    only_run,
)
from safetensors.torch import load_file

from advfusion_cli.interop.weights import read_weights


def _final_tensors(run) -> dict[str, torch.Tensor]:
    (weights,) = [p for p in (run / "final").glob("*.safetensors")]
    return load_file(str(weights))


def _assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(
    ("arch", "case", "kind", "weights"),
    [
        ("llama", "compacter", "compacter", "safetensors"),
        ("qwen2", "double_seq_bn", "compacter", "bin"),
        ("qwen2", "seq_bn", "task-adapter", "safetensors"),
    ],
)
def test_export_then_import_is_bit_identical(cli, tmp_path, arch, case, kind, weights):
    base = fixture(arch, "base")
    first = cli(*import_args(fixture(arch, case), base, tmp_path / "w1", "--as", "go"))
    assert first.exit_code == 0, first.stderr
    run = only_run(tmp_path / "w1", f"{kind}-go-imported-")
    out = tmp_path / "exported"
    exported = cli(
        "export", str(out), "--run", str(run), "--format", "adapters", "--weights", weights
    )
    assert exported.exit_code == 0, exported.stderr
    name = "adapter.safetensors" if weights == "safetensors" else "pytorch_adapter.bin"
    assert (out / name).is_file() and (out / "README.md").is_file()
    assert (out / "adapter_interface.json").is_file() == (arch == "qwen2")
    again = cli(*import_args(out, base, tmp_path / "w2"))  # the saved name "go" is the language
    assert again.exit_code == 0, again.stderr
    run2 = only_run(tmp_path / "w2", f"{kind}-go-imported-")
    _assert_bit_identical(_final_tensors(run), _final_tensors(run2))
    golden = golden_logits(arch)
    model_a, model_b = load_fixture_base(arch), load_fixture_base(arch)
    host_with_run(model_a, run)
    host_with_run(model_b, run2)
    ids = golden["input_ids"]
    assert torch.equal(logits_of(model_a, ids), logits_of(model_b, ids))


def test_exported_setup_is_what_the_library_saved(cli, tmp_path):
    """Import the library's setup, export it: the same tensor names, values and configs."""
    base = fixture("llama", "base")
    args = import_args(fixture("llama", "setup"), base, tmp_path / "w1", "--as", "ruby")
    assert cli(*args).exit_code == 0
    out = tmp_path / "exported"
    result = cli(
        "export",
        str(out),
        "--run",
        "adapterfusion/ruby",
        "--workdir",
        str(tmp_path / "w1"),
        "--format",
        "adapters",
    )
    assert result.exit_code == 0, result.stderr
    library, ours = fixture("llama", "setup"), out
    assert (
        json.loads((ours / "adapter_setup.json").read_text())["adapter_setup"]
        == json.loads((library / "adapter_setup.json").read_text())["adapter_setup"]
    )
    for part, config, weights in [
        ("python", "adapter_config.json", "adapter.safetensors"),
        ("ruby", "adapter_config.json", "adapter.safetensors"),
        ("python,java,ruby", "adapter_fusion_config.json", "model_adapter_fusion.safetensors"),
    ]:
        _assert_bit_identical(
            read_weights(library / part / weights), read_weights(ours / part / weights)
        )
        saved = json.loads((library / part / config).read_text())
        written = json.loads((ours / part / config).read_text())
        assert written["config"] == saved["config"], part
        assert written["hidden_size"] == saved["hidden_size"] and written["name"] == saved["name"]
    card = (out / "README.md").read_text()
    assert "load_adapter_setup" in card and "python, java, ruby" in card


# ---- peft ---------------------------------------------------------------------------------


def _peft_lora(folder, base, safe: bool):
    """A peft LoRA with non-zero B (so it changes the logits), saved by peft itself."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    peft_model.save_pretrained(folder, safe_serialization=safe)
    ids = torch.randint(0, 128, (2, 6))
    return ids, logits_of(peft_model, ids)


@pytest.mark.parametrize("safe", [True, False])
def test_peft_lora_imports_and_exports(cli, tmp_path, tiny_model_dir, safe):
    from transformers import AutoModelForCausalLM

    from advfusion_cli.engine import load_lora

    base = tiny_model_dir("llama")
    source = tmp_path / "lora"
    ids, expected = _peft_lora(source, base, safe)
    result = cli(*import_args(source, base, tmp_path / "w", "--as", "ruby", "--format", "peft"))
    assert result.exit_code == 0, result.stderr
    run = only_run(tmp_path / "w", "lora-ruby-imported-")
    model = load_lora(AutoModelForCausalLM.from_pretrained(base).eval(), run / "final")
    torch.testing.assert_close(logits_of(model, ids), expected, rtol=0, atol=1e-5)
    out = tmp_path / "exported"
    exported = cli("export", str(out), "--run", str(run), "--format", "peft")
    assert exported.exit_code == 0, exported.stderr
    original = read_weights(source / ("adapter_model.safetensors" if safe else "adapter_model.bin"))
    _assert_bit_identical(original, read_weights(out / "adapter_model.safetensors"))
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    assert "PeftModel.from_pretrained" in (out / "README.md").read_text()


# ---- refusals -----------------------------------------------------------------------------


def test_export_refusals_name_the_setting(cli, tmp_path):
    base = fixture("llama", "base")
    setup = copy_fixture("llama", "setup", tmp_path)
    fusion_config = setup / "python,java,ruby" / "adapter_fusion_config.json"
    config = json.loads(fusion_config.read_text())
    config["config"]["temperature"] = True
    fusion_config.write_text(json.dumps(config))
    workdir = tmp_path / "w"
    assert cli(*import_args(setup, base, workdir, "--as", "ruby")).exit_code == 0
    run = only_run(workdir, "adapterfusion-ruby-imported-")
    out = tmp_path / "out"
    one_line_error(
        cli("export", str(out), "--run", str(run), "--format", "adapters"), "temperature", "T = 50"
    )
    assert not out.exists()
    one_line_error(
        cli("export", str(out), "--run", str(run), "--format", "peft"), "--format adapters"
    )
    one_line_error(cli("export", str(out), "--run", "base", "--format", "adapters"), "base")
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    adapter = only_run(workdir, "task-adapter-ruby-imported-")
    one_line_error(
        cli("export", str(out), "--run", str(adapter), "--format", "adapters"), "--force"
    )
    assert (out / "keep.txt").read_text() == "mine"


# ---- AdvFusion over imported adapters, on the embedded model ---------------------------------


def _library_folders(root):
    """adapters-layout task adapters for the embedded model, written by the export mapping
    from fresh engine adapters (their parity with the library is the fixtures' job)."""
    from advfusion_cli.engine import AdapterConfig, attach_host, load_model
    from advfusion_cli.engine.serialization import write_json
    from advfusion_cli.interop import adapters_layout as layout
    from advfusion_cli.interop.base import read_base
    from advfusion_cli.interop.engine_folders import read_adapter
    from advfusion_cli.interop.weights import write_weights
    from advfusion_cli.workflows.models import model_source

    base = read_base("advfusion/tiny-code")
    host = attach_host(load_model(model_source("advfusion/tiny-code")))
    info = base.fingerprint | {"model_class": base.model_class}
    for language in ("python", "ruby"):
        host.add_adapter(language, AdapterConfig.task_adapter(), language=language)
        host.save_adapter(language, root / "engine" / language)
        _, config, tensors = read_adapter(root / "engine" / language)
        config_json, out = layout.adapter_to_library(
            language, config, tensors, info, base.layout.layers
        )
        (root / language).mkdir()
        write_json(root / language / "adapter_config.json", config_json)
        write_weights(root / language / "adapter.safetensors", out)


def test_adv_fuse_over_imported_adapters_end_to_end(cli, tmp_path):
    _library_folders(tmp_path)
    workdir = tmp_path / "w"
    imported = {}
    for language in ("python", "ruby"):
        result = cli(
            "import",
            str(tmp_path / language),
            "--base",
            "advfusion/tiny-code",
            "--workdir",
            str(workdir),
        )
        assert result.exit_code == 0, result.stderr
        imported[language] = only_run(workdir, f"task-adapter-{language}-imported-").name
    fuse = [
        "adv-fuse",
        "--langs",
        "python,ruby",
        "--target",
        "ruby",
        "--no-train-missing",
        "--workdir",
        str(workdir),
    ]
    for key, value in {
        "training.max_steps": 2,
        "data.max_train_records": 4,
        "data.max_eval_records": 2,
        "training.batch_size": 2,
    }.items():
        fuse += ["--set", f"{key}={value}"]
    # train-adapters leaves an imported adapter where it is: a new one goes to its own slot.
    train = cli("train-adapters", "--langs", "python", *fuse[6:], "--dry-run")
    assert train.exit_code == 0, train.stderr
    flat = " ".join(train.stdout.replace("│", " ").split())
    assert "was imported from" in flat and "it is kept" in flat, train.stdout
    plan = cli(*fuse, "--dry-run")
    assert plan.exit_code == 0, plan.stderr
    assert plan.stdout.count("imported from") == 2, plan.stdout
    result = cli(*fuse)
    assert result.exit_code == 0, result.stderr
    run = only_run(workdir, "advfusion-ruby-")
    env = json.loads((run / "env.json").read_text())
    assert {k: v["source"] for k, v in env["adapters"].items()} == imported
    assert not any(
        p.name.startswith("task-adapter-") and "imported" not in p.name
        for p in (workdir / "runs").iterdir()
    )  # nothing retrained
    # ... and the AdvFusion run exports as an adapter setup that imports back bit for bit.
    out = tmp_path / "exported"
    exported = cli(
        "export",
        str(out),
        "--run",
        "advfusion/ruby",
        "--workdir",
        str(workdir),
        "--format",
        "adapters",
    )
    assert exported.exit_code == 0, exported.stderr
    back = cli(
        "import",
        str(out),
        "--base",
        "advfusion/tiny-code",
        "--as",
        "ruby",
        "--method",
        "advfusion",
        "--workdir",
        str(tmp_path / "w2"),
    )
    assert back.exit_code == 0, back.stderr
    _assert_bit_identical(
        _final_tensors(run), _final_tensors(only_run(tmp_path / "w2", "advfusion-ruby-imported-"))
    )
    shutil.rmtree(tmp_path / "engine")


def test_model_card_lists_the_run_evaluations(cli, tmp_path):
    workdir = tmp_path / "w"
    base = fixture("llama", "base")
    assert cli(*import_args(fixture("llama", "seq_bn"), base, workdir, "--as", "go")).exit_code == 0
    run = only_run(workdir, "task-adapter-go-imported-")
    evals = run / "evals" / "test-100-greedy-512"
    evals.mkdir(parents=True)
    record = {"n_items": 100, "scores": {"bleu4_smooth_13a_corpus": 0.1234, "pass@1": 0.25}}
    (evals / "metrics.json").write_text(json.dumps(record))
    out = tmp_path / "out"
    assert cli("export", str(out), "--run", str(run), "--format", "adapters").exit_code == 0
    card = (out / "README.md").read_text()
    assert "| test-100-greedy-512 | 100 | bleu4_smooth_13a_corpus | 0.1234 |" in card
    assert "| test-100-greedy-512 | 100 | pass@1 | 0.2500 |" in card
    assert f"Imported into advfusion from `{fixture('llama', 'seq_bn').resolve()}`" in card
    assert 'model.load_adapter(".", set_active=True, use_safetensors=True)' in card
