"""load_model / load_tokenizer: local folders, dtypes, 4/8-bit bitsandbytes, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from advfusion_cli.engine import QuantizationConfig, load_model, load_tokenizer
from advfusion_cli.engine.loading import check_source
from advfusion_cli.errors import UserError

SPECIALS = ["<unk>", "<s>", "</s>"]


def save_tiny_tokenizer(path, specials: dict[str, str]) -> None:
    """A WordLevel tokenizer over 128 words (ids match the tiny models' vocab of 128)."""
    words = SPECIALS + ["def", "return", "(", ")", ":", "x", "print", "class"]
    words += [f"w{i}" for i in range(128 - len(words))]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, **specials).save_pretrained(path)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer")
    save_tiny_tokenizer(path, dict(unk_token="<unk>", bos_token="<s>", eos_token="</s>"))
    return path


def test_load_model_from_local_folder(tiny_model_dir):
    model = load_model(tiny_model_dir("qwen2"))
    assert model.config.model_type == "qwen2" and not model.training
    assert next(model.parameters()).dtype == torch.float32
    bf16 = load_model(tiny_model_dir("qwen2"), dtype="bfloat16")
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}


def test_4bit_is_nf4_with_double_quant_and_fp32_compute_on_cpu(tiny_model_dir):
    import bitsandbytes as bnb

    model = load_model(tiny_model_dir("llama"), quantization="4bit")
    linears = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linears) == 2 * 7  # q, k, v, o, gate, up, down per layer; lm_head stays full
    state = linears[0].weight.quant_state
    assert state.quant_type == "nf4" and state.nested  # nested = double quantization
    assert linears[0].compute_dtype == torch.float32
    assert not any(m.support_avx512bf16_for_cpu for m in linears)  # see loading.py
    logits = model(torch.tensor([[5, 6, 7]])).logits
    assert torch.isfinite(logits).all()


def test_8bit_loads_int8_linears(tiny_model_dir):
    import bitsandbytes as bnb

    model = load_model(tiny_model_dir("gpt_neox"), quantization=QuantizationConfig(mode="8bit"))
    assert any(isinstance(m, bnb.nn.Linear8bitLt) for m in model.modules())
    assert model(torch.tensor([[5, 6, 7]])).logits.shape == (1, 3, 128)


def test_quantization_config_parsing():
    assert QuantizationConfig.parse(None).mode == "none"
    assert QuantizationConfig.parse("4BIT").mode == "4bit"
    bnb_config = QuantizationConfig(mode="4bit", compute_dtype="auto").to_transformers(on_gpu=True)
    assert bnb_config.bnb_4bit_compute_dtype == torch.bfloat16
    assert bnb_config.bnb_4bit_use_double_quant and bnb_config.bnb_4bit_quant_type == "nf4"
    assert QuantizationConfig().to_transformers(on_gpu=False) is None
    with pytest.raises(UserError, match="Unknown quantization '3bit'"):
        QuantizationConfig.parse("3bit")
    with pytest.raises(UserError, match="Unknown compute_dtype"):
        QuantizationConfig(mode="4bit", compute_dtype="int8")


def test_missing_folder_and_bad_inputs_are_named(tmp_path, tiny_model_dir):
    with pytest.raises(UserError, match="folder './no/such/model' does not exist"):
        load_model("./no/such/model")
    with pytest.raises(UserError, match="does not exist"):
        load_model(str(tmp_path / "absent"))
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="is a file"):
        load_model(tmp_path / "file.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no config.json"):
        load_model(tmp_path / "empty")
    with pytest.raises(UserError, match="Unknown dtype 'fp8'"):
        load_model(tiny_model_dir("llama"), dtype="fp8")
    assert check_source("codellama/CodeLlama-7b-hf") == "codellama/CodeLlama-7b-hf"  # a hub id


def test_a_model_that_is_not_a_causal_lm_is_named(tmp_path):
    folder = tmp_path / "vision"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 32}))
    with pytest.raises(UserError, match="'vit'.*is not a causal language model"):
        load_model(folder)


def test_tokenizer_gets_eos_as_pad_and_left_padding(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    assert tokenizer.pad_token == "</s>" and tokenizer.pad_token_id == 2
    assert tokenizer.padding_side == "left" and len(tokenizer) == 128  # nothing added
    batch = tokenizer(["def x", "print ( x )"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0, :2].tolist() == [2, 2]  # padded on the left
    assert batch["attention_mask"][0].tolist() == [0, 0, 1, 1]
    assert load_tokenizer(tokenizer_dir, padding_side="right").padding_side == "right"


def test_tokenizer_falls_back_to_unk_and_refuses_to_invent_a_pad(tmp_path):
    save_tiny_tokenizer(tmp_path / "unk", dict(unk_token="<unk>"))
    assert load_tokenizer(tmp_path / "unk").pad_token == "<unk>"
    save_tiny_tokenizer(tmp_path / "bare", {})
    with pytest.raises(UserError, match="no pad, eos or unk token"):
        load_tokenizer(tmp_path / "bare")
    with pytest.raises(UserError, match="padding_side"):
        load_tokenizer(tmp_path / "unk", padding_side="middle")
