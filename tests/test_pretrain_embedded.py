"""The shipped tiny code model: loads like a hub model, matches its card, knows its tasks."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from advfusion_cli.pretrain.embedded import (
    EMBEDDED_MODEL_ID,
    embedded_model_card,
    embedded_model_path,
    is_embedded_model_id,
)
from advfusion_cli.pretrain.heldout import HeldoutSample, heldout_documents, heldout_perplexity

LANGUAGES = ("python", "javascript", "java", "go", "ruby")
MAX_FOLDER_BYTES = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def card():
    return embedded_model_card()


@pytest.fixture(scope="module")
def model():
    # float32 explicitly: the card's perplexities were measured in float32.
    return AutoModelForCausalLM.from_pretrained(str(embedded_model_path()), dtype=torch.float32)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(embedded_model_path()))


@pytest.fixture(scope="module")
def heldout(card):
    return HeldoutSample(
        documents_per_language=card["heldout"]["documents_per_language"],
        seed=card["heldout"]["seed"],
        max_length=card["heldout"]["max_length"],
    )


def test_the_folder_is_a_complete_small_hub_style_model():
    path = embedded_model_path()
    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "card.json",
    ):
        assert (path / name).is_file(), name
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    assert size <= MAX_FOLDER_BYTES
    assert is_embedded_model_id(EMBEDDED_MODEL_ID)


def test_loads_through_from_pretrained_with_the_card_architecture(model, tokenizer, card):
    config = model.config
    arch = card["architecture"]
    assert config.model_type == "llama"
    assert config.hidden_size == arch["hidden_size"]
    assert config.num_hidden_layers == arch["num_layers"]
    assert config.tie_word_embeddings is True
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert sum(p.numel() for p in model.parameters()) == card["parameters"]
    assert config.vocab_size == len(tokenizer) == card["tokenizer"]["vocab_size"]
    assert tokenizer.eos_token_id == config.eos_token_id is not None
    assert tokenizer.pad_token_id == config.pad_token_id is not None
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    generation = GenerationConfig.from_pretrained(str(embedded_model_path()))
    assert generation.eos_token_id == tokenizer.eos_token_id
    assert generation.do_sample is False


def test_heldout_perplexity_matches_the_card(model, tokenizer, card, heldout):
    # Same float32 weights on the same regenerated documents: machines differ only in the
    # order of float sums (~1e-6 relative); even rounding every weight to bf16 moved these
    # by <= 0.01% when measured. So 0.2% never fails for the shipped model, and does fail
    # when the documents (a changed generator), the tokenizer or the weights change.
    measured = heldout_perplexity(model, tokenizer, heldout)
    assert set(measured) == set(card["heldout_perplexity"]) == set(LANGUAGES)
    for language, expected in card["heldout_perplexity"].items():
        assert measured[language] == pytest.approx(expected, rel=2e-3), language


def test_the_target_language_is_the_least_known(card):
    ppl = card["heldout_perplexity"]
    high = [ppl[lang] for lang in LANGUAGES if lang != "ruby"]
    assert ppl["ruby"] > max(high)


@pytest.mark.parametrize("language", LANGUAGES)
def test_shipped_tokenizer_round_trips_every_language(tokenizer, heldout, language):
    docs = heldout_documents(heldout.model_copy(update={"documents_per_language": 6}))[language]
    docs.append("\n\n   " + docs[0].replace("\n", "\r\n") + "\t \n")  # odd whitespace too
    for text in docs:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text


def test_card_records_the_floor_on_target_tasks_and_the_regenerating_command(card):
    assert card["command"].startswith("advfusion pretrain-base ")
    assert "--seed" in card["command"] and "--steps" in card["command"]
    floor = card["floor"]
    assert floor is not None, "the shipped card must carry the no-adapter floor"
    assert set(floor["scores"]) == {"code-translation", "code-generation", "commit-message"}
    for per_language in floor["scores"].values():
        assert set(per_language) == {"ruby"}
        assert 0.0 <= per_language["ruby"]["bleu"] <= 100.0
    assert card["gate"]["passed"] is True
    readme = (embedded_model_path() / "README.md").read_text()
    assert card["command"] in readme
    assert json.dumps(card["heldout_perplexity"])  # serialisable numbers


def _completion_nll(model, tokenizer, prompt: str, target: str) -> float:
    """Summed NLL of `target + "\n"` after `prompt`, tokenized apart as in training."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(target + "\n", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + target_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1]  # (T_target, V)
    return float(
        torch.nn.functional.cross_entropy(logits, torch.tensor(target_ids), reduction="sum")
    )


def test_the_frozen_base_reads_the_source_when_translating(model, tokenizer):
    """Matched vs swapped: each program's translation is likelier after its own source than
    after a neighbour's. Swapping targets between two prompts keeps both targets in the sum,
    so how easy a target is on its own cancels out; only reading the source can win."""
    from advfusion_cli.data import load_task

    examples = [
        e
        for e in load_task("code-translation", languages=["python"], split="validation")
        if e.source_language in ("java", "javascript", "go")
    ][:12]
    wins = 0
    for a, b in zip(examples, examples[1:] + examples[:1], strict=True):
        matched = _completion_nll(model, tokenizer, a.prompt, a.target) + _completion_nll(
            model, tokenizer, b.prompt, b.target
        )
        swapped = _completion_nll(model, tokenizer, a.prompt, b.target) + _completion_nll(
            model, tokenizer, b.prompt, a.target
        )
        wins += matched < swapped
    assert wins == len(examples)
