"""`advfusion import` against what the AdapterHub `adapters` library itself saved and computed
(golden fixtures from tests/fixtures/interop/make_fixtures.py, adapters 1.2.0): the imported
run's logits equal the library's within 1e-5 for a seq_bn bottleneck, a Compacter, a dense
double_seq_bn, and an AdapterFusion over three adapters, masked (AdvFusion phase 1: target
zeroed) and not; the runs and store entries a fusion plan reuses; one-line refusals."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import one_line_error, snapshot
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

TOLERANCE = 1e-5
SINGLE_CASES = [
    ("llama", "seq_bn", "task-adapter"),
    ("llama", "compacter", "compacter"),
    ("qwen2", "seq_bn", "task-adapter"),
    ("qwen2", "compacter", "compacter"),
    ("qwen2", "double_seq_bn", "compacter"),
]


@pytest.mark.parametrize(("arch", "case", "kind"), SINGLE_CASES)
def test_imported_adapter_computes_the_library_logits(cli, tmp_path, arch, case, kind):
    golden = golden_logits(arch)
    result = cli(*import_args(fixture(arch, case), fixture(arch, "base"), tmp_path, "--as", "go"))
    assert result.exit_code == 0, result.stderr
    run = only_run(tmp_path, f"{kind}-go-imported-")
    model = load_fixture_base(arch)
    # The adapter matters (so a wrong mapping cannot pass) ...
    assert (golden[case] - golden["base"]).abs().max() > 0.1
    host_with_run(model, run)
    # ... and advfusion computes what the library computed.
    torch.testing.assert_close(
        logits_of(model, golden["input_ids"]), golden[case], rtol=0, atol=TOLERANCE
    )
    provenance = json.loads(
        (tmp_path / "adapters").glob(f"*/*/{kind}/go/provenance.json").__next__().read_text()
    )
    assert provenance["imported_from"] == str(fixture(arch, case).resolve())
    assert provenance["run_id"] == run.name
    assert json.loads((run / "status.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_imported_fusion_matches_the_library_unmasked_and_masked(cli, tmp_path, arch):
    golden = golden_logits(arch)
    args = import_args(fixture(arch, "setup"), fixture(arch, "base"), tmp_path, "--as", "ruby")
    result = cli(*args, "--method", "advfusion")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("task-adapter-") == 3, result.stdout
    assert result.stdout.count("prediction head is not imported") == 3, result.stdout
    run = only_run(tmp_path, "advfusion-ruby-imported-")
    model = load_fixture_base(arch)
    host = host_with_run(model, run)
    assert host.fused_names == ["python", "java", "ruby"]
    torch.testing.assert_close(
        logits_of(model, golden["input_ids"]), golden["fusion"], rtol=0, atol=TOLERANCE
    )
    # AdvFusion phase 1: the target's adapter zeroed, still a slot of the softmax.
    assert (golden["fusion_masked"] - golden["fusion"]).abs().max() > 0.1
    host.mask("ruby")
    torch.testing.assert_close(
        logits_of(model, golden["input_ids"]), golden["fusion_masked"], rtol=0, atol=TOLERANCE
    )
    # Importing the same setup again finds the same runs and writes nothing new.
    before = snapshot(tmp_path / "runs", tmp_path / "adapters")
    again = cli(*args, "--method", "advfusion")
    assert again.exit_code == 0 and again.stdout.count("already imported") == 4, again.stdout
    assert snapshot(tmp_path / "runs", tmp_path / "adapters") == before


def test_imported_compacter_fusion_matches_the_library(cli, tmp_path):
    """AdvFusion-Compacter's layout: a fusion after attention and after the MLP of every layer."""
    golden = golden_logits("llama")
    names = "c_python=python,c_java=java,c_ruby=ruby"
    args = import_args(fixture("llama", "compacter_setup"), fixture("llama", "base"), tmp_path)
    result = cli(*args, "--as", "ruby", "--names", names, "--method", "advfusion")
    assert result.exit_code == 0, result.stderr
    run = only_run(tmp_path, "advfusion-compacter-ruby-imported-")
    model = load_fixture_base("llama")
    host = host_with_run(model, run)
    assert list(host.fusion_state.places) == ["attn", "mlp"]
    assert (golden["compacter_fusion"] - golden["base"]).abs().max() > 0.1
    torch.testing.assert_close(
        logits_of(model, golden["input_ids"]), golden["compacter_fusion"], rtol=0, atol=TOLERANCE
    )


def test_setup_adapters_with_other_names_map_to_languages(cli, tmp_path):
    setup = tmp_path / "setup"
    import shutil

    shutil.copytree(fixture("llama", "setup"), setup)
    base = fixture("llama", "base")
    result = cli(*import_args(setup, base, tmp_path / "w1", "--as", "ruby", "--names", "python=go"))
    assert result.exit_code == 0, result.stderr
    run = only_run(tmp_path / "w1", "adapterfusion-ruby-imported-")
    assert json.loads((run / "final" / "fusion_config.json").read_text())["adapters"] == [
        "go",
        "java",
        "ruby",
    ]
    one_line_error(cli(*import_args(setup, base, tmp_path / "w2")), "--as", "python, java, ruby")


# ---- bad input: one line each, nothing written ----------------------------------------------


def _config_only_base(folder, **changes):
    """A base folder holding only config.json (import reads no weights)."""
    config = json.loads(fixture("llama", "base", "config.json").read_text())
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


def _refused(cli, tmp_path, args, *names):
    workdir = tmp_path / "work"
    line = one_line_error(cli(*args, "--as", "go", "--workdir", str(workdir)), *names)
    assert not workdir.exists() or not any((workdir / "runs").glob("*")), line
    return line


def test_wrong_base_hidden_size_and_layers_are_refused(cli, tmp_path):
    adapter = fixture("llama", "seq_bn")
    wide = _config_only_base(tmp_path / "wide", hidden_size=64, intermediate_size=128)
    _refused(cli, tmp_path, ["import", str(adapter), "--base", str(wide)], "hidden size 32", "64")
    deep = _config_only_base(tmp_path / "deep", num_hidden_layers=3)
    _refused(cli, tmp_path, ["import", str(adapter), "--base", str(deep)], "2 layers", "3")
    qwen = fixture("qwen2", "base")
    _refused(cli, tmp_path, ["import", str(adapter), "--base", str(qwen)], "llama", "qwen2")


def test_unknown_architectures_are_refused(cli, tmp_path):
    adapter = copy_fixture("llama", "compacter", tmp_path)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["config"]["architecture"] = "prefix_tuning"
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    base = fixture("llama", "base")
    _refused(cli, tmp_path, ["import", str(adapter), "--base", str(base)], "prefix_tuning")
    gpt2 = _config_only_base(tmp_path / "gpt2", model_type="gpt2")
    _refused(
        cli,
        tmp_path,
        ["import", str(fixture("llama", "seq_bn")), "--base", str(gpt2)],
        "Unsupported architecture 'gpt2'",
    )


def test_settings_without_an_equivalent_are_refused_by_name(cli, tmp_path):
    base = fixture("llama", "base")
    for key, value, shown in [
        ("ln_after", True, "ln_after"),
        ("non_linearity", "leakyrelu", "non_linearity"),
        ("scaling", "learned", "scaling"),
        ("phm_layer", True, "phm_layer"),  # a PHM seq_bn: Compacter++
    ]:
        adapter = copy_fixture("llama", "seq_bn", tmp_path / key)
        config = json.loads((adapter / "adapter_config.json").read_text())
        config["config"][key] = value
        (adapter / "adapter_config.json").write_text(json.dumps(config))
        _refused(cli, tmp_path, ["import", str(adapter), "--base", str(base)], shown)


def test_missing_weights_file_is_refused(cli, tmp_path):
    adapter = copy_fixture("llama", "seq_bn", tmp_path)
    (adapter / "pytorch_adapter.bin").unlink()
    _refused(
        cli,
        tmp_path,
        ["import", str(adapter), "--base", str(fixture("llama", "base"))],
        "Missing weights file",
        "adapter.safetensors or pytorch_adapter.bin",
    )


class _RunsCode:
    """Unpickling this would create a file: proof that a pickle was trusted."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_that_is_not_weights_only_is_refused_and_never_run(cli, tmp_path):
    adapter = copy_fixture("llama", "seq_bn", tmp_path)
    marker = tmp_path / "code-ran"
    payload = _RunsCode()
    payload.marker = marker
    state = torch.load(adapter / "pytorch_adapter.bin", weights_only=True)
    torch.save({**state, "extra": payload}, adapter / "pytorch_adapter.bin")
    base = fixture("llama", "base")
    _refused(
        cli,
        tmp_path,
        ["import", str(adapter), "--base", str(base)],
        "pytorch_adapter.bin",
        "not a weights-only pickle",
    )
    assert not marker.exists()


def test_peft_folder_passed_as_adapters_is_refused(cli, tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama"))
    folder = tmp_path / "lora"
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(folder)
    base = tiny_model_dir("llama")
    _refused(
        cli,
        tmp_path,
        ["import", str(folder), "--base", str(base), "--format", "adapters"],
        "peft LoRA folder",
        "peft_type",
    )


def test_store_slot_holding_another_adapter_needs_force(cli, tmp_path):
    base = fixture("llama", "base")
    first = cli(*import_args(fixture("llama", "seq_bn"), base, tmp_path, "--as", "go"))
    assert first.exit_code == 0, first.stderr
    store = next((tmp_path / "adapters").glob("*/*/task-adapter/go"))
    before = snapshot(store)
    other = copy_fixture("llama", "setup", tmp_path / "x") / "python"
    line = one_line_error(
        cli(*import_args(other, base, tmp_path, "--as", "go")), "--force", str(store)
    )
    assert "task-adapter-go-imported-" in line
    assert snapshot(store) == before
    forced = cli(*import_args(other, base, tmp_path, "--as", "go", "--force"))
    assert forced.exit_code == 0, forced.stderr
    assert snapshot(store) != before


def test_setup_only_options_are_refused_for_one_adapter(cli, tmp_path):
    base = fixture("llama", "base")
    _refused(
        cli,
        tmp_path,
        ["import", str(fixture("llama", "seq_bn")), "--base", str(base), "--method", "advfusion"],
        "--method",
        "one adapter",
    )
