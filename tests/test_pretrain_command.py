"""`advfusion pretrain-base` end to end at a tiny size, and how it treats bad input."""

import hashlib
import json
import math
import shlex

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from advfusion_cli.pretrain.embedded import embedded_model_path
from advfusion_cli.pretrain.recipe import CLI_FIELDS, config_from_overrides, regenerate_command
from advfusion_cli.pretrain.train import PretrainConfig

TINY = [
    "--steps", "3", "--batch-size", "2", "--seq-len", "512", "--warmup-steps", "1",
    "--vocab-size", "320", "--hidden-size", "32", "--layers", "1", "--heads", "2",
    "--kv-heads", "1", "--intermediate-size", "64", "--max-positions", "512",
    "--max-task-examples", "8", "--heldout-docs", "3", "--seed", "5",
]  # fmt: skip


def _digest(folder):
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from conftest import run_cli

    shipped_before = _digest(embedded_model_path())
    out = tmp_path_factory.mktemp("pretrain") / "tiny"
    result = run_cli("pretrain-base", "--out", str(out), *TINY, "--no-evaluate")
    return out, result, shipped_before


def test_tiny_pretraining_writes_a_loadable_model_folder(tiny_run):
    out, result, _ = tiny_run
    assert result.exit_code == 0, result.stderr + result.stdout
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    assert len(tokenizer) == model.config.vocab_size <= 320
    text = "def count_vowels(text):\n    return 0\n"
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids[0]) == text
    loss = model(input_ids=ids, labels=ids).loss
    assert torch.isfinite(loss)


def test_the_card_matches_the_run_and_reproduces_its_command(tiny_run):
    out, _, _ = tiny_run
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["steps"] == 3 and card["training"]["seed"] == 5
    assert card["training"]["tokens"] > 0
    assert card["floor"] is None and card["gate"] is None  # --no-evaluate
    assert set(card["heldout_perplexity"]) == {"python", "javascript", "java", "go", "ruby"}
    assert all(math.isfinite(v) and v > 1 for v in card["heldout_perplexity"].values())
    # Mostly task-formatted (0.6 asked; measured in tokens, so close rather than exact).
    assert 0.45 < card["corpus"]["task_formatted_share"] < 0.75
    assert card["corpus"]["packing"]["skipped_too_long"] >= 0
    args = shlex.split(card["command"])
    assert args[:4] == ["advfusion", "pretrain-base", "--out", str(out)]
    assert "--no-evaluate" in args
    # The command rebuilds exactly the configuration that was run (defaults left implicit).
    flags = dict(zip(args[4::2], args[5::2], strict=False))
    rebuilt = config_from_overrides(
        {dotted: flags[flag] for flag, dotted in CLI_FIELDS.items() if flag in flags}
    )
    saved = json.loads((out / "pretrain_config.json").read_text())
    assert rebuilt.model_dump(mode="json") == saved
    assert rebuilt.steps == 3 and rebuilt.shape.hidden_size == 32 and rebuilt.seed == 5
    assert (out / "README.md").read_text().count(card["command"]) == 1


def test_the_shipped_model_is_never_touched(tiny_run):
    _, _, shipped_before = tiny_run
    assert _digest(embedded_model_path()) == shipped_before


def test_an_existing_model_folder_is_not_overwritten(tiny_run, cli):
    out, _, _ = tiny_run
    before = _digest(out)
    result = cli("pretrain-base", "--out", str(out), *TINY, "--no-evaluate")
    assert result.exit_code == 2
    assert "already holds a model" in result.stderr and "--overwrite" in result.stderr
    assert _digest(out) == before


def test_inconsistent_shape_is_a_one_line_user_error(cli, tmp_path):
    # 100 is not a multiple of the default 6 heads: rejected before any data is built.
    result = cli("pretrain-base", "--out", str(tmp_path / "m"), "--hidden-size", "100")
    assert result.exit_code == 2
    assert "shape" in result.stderr and "divisible" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "m").exists()


def test_regenerate_command_round_trips_every_flag():
    overrides = {
        "seed": 3,
        "steps": 17,
        "lr": 1e-3,
        "shape.hidden_size": 64,
        "shape.num_heads": 4,
        "mix.task_token_share": 0.7,
        "heldout.documents_per_language": 5,
    }
    config = config_from_overrides(overrides)
    args = shlex.split(regenerate_command(config, "out", evaluate=True, eval_items=100))
    parsed = {}
    for flag, dotted in CLI_FIELDS.items():
        if flag in args:
            parsed[dotted] = args[args.index(flag) + 1]
    rebuilt = config_from_overrides(parsed)  # pydantic parses the strings back
    assert rebuilt == config
    assert config_from_overrides({}) == PretrainConfig()


def test_same_seed_gives_the_same_weights(tiny_run, tmp_path):
    from advfusion_cli.pretrain.recipe import build_base_model

    out, _, _ = tiny_run
    config = PretrainConfig(**json.loads((out / "pretrain_config.json").read_text()))
    again = tmp_path / "again"
    build_base_model(again, config, evaluate=False, log=lambda _: None)
    assert (again / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    assert (again / "tokenizer.json").read_text() == (out / "tokenizer.json").read_text()
