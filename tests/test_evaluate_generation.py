"""Batched generation: left padding + KV cache gives exactly the tokens of a plain greedy loop
(no cache, one prompt at a time), only new tokens are kept, stop rules cut and stop early,
sampling returns n reproducible candidates, prompts that cannot fit score as empty."""

from __future__ import annotations

import pytest
import torch
from test_evaluate_support import make_model

from advfusion_cli.data.encoding import encode_prompt_for_generation
from advfusion_cli.data.records import TaskExample
from advfusion_cli.errors import UserError
from advfusion_cli.inference.generation import (
    STOP_RULES,
    DecodingSettings,
    StopRule,
    generate_completions,
)

PROMPTS = [
    "def add(a, b):\n",
    "### Code written in Java:\nint x = 1;\n### Code written in Ruby:\n",
    "x",
    "Based on the change given, only write commit message.\n### Diff:\n-a\n+b\n### Commit Message:\n",
    "print(1)\n",
]


@pytest.fixture(scope="module")
def model_and_tokenizer(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = make_model(tmp_path_factory.mktemp("gen-model"), seed=3)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    return model, AutoTokenizer.from_pretrained(folder)


def examples(prompts=PROMPTS) -> list[TaskExample]:
    return [TaskExample(f"e{i}", "code-generation", "python", p, "") for i, p in enumerate(prompts)]


@torch.no_grad()
def greedy_reference(model, tokenizer, example: TaskExample, max_new_tokens: int) -> list[int]:
    """Plain greedy decoding: full forward over the growing sequence, no cache, no padding."""
    ids = encode_prompt_for_generation(tokenizer, example)["input_ids"]
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = model(torch.tensor([ids + new])).logits[0, -1]
        token = int(logits.argmax())
        new.append(token)
        if token == tokenizer.eos_token_id:
            break
    return new


def test_left_padded_batches_with_cache_match_one_at_a_time_greedy(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    settings = DecodingSettings(max_new_tokens=10, batch_size=3)
    batched = generate_completions(model, tokenizer, examples(), settings, StopRule())
    for example, completion in zip(examples(), batched, strict=True):
        reference = greedy_reference(model, tokenizer, example, 10)
        expected = StopRule().apply(tokenizer.decode(reference, skip_special_tokens=True))
        assert completion.texts == [expected]
        assert completion.new_tokens == [len(reference)]
        assert completion.prompt_tokens == len(
            encode_prompt_for_generation(tokenizer, example)["input_ids"]
        )
    # batch composition does not change greedy results
    single = generate_completions(
        model, tokenizer, examples(), DecodingSettings(max_new_tokens=10, batch_size=1), StopRule()
    )
    assert [c.texts for c in single] == [c.texts for c in batched]


def test_keeps_only_new_tokens(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompt = "### Code written in Java:\nint x = 1;\n### Code written in Ruby:\n"
    (completion,) = generate_completions(
        model, tokenizer, examples([prompt]), DecodingSettings(max_new_tokens=5), StopRule()
    )
    new = greedy_reference(model, tokenizer, examples([prompt])[0], 5)
    assert completion.texts[0] == tokenizer.decode(new, skip_special_tokens=True).removesuffix("\n")
    assert not completion.texts[0].startswith("###")


def test_stop_string_ends_a_row_early_and_cuts_the_text(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    example = examples(["def add(a, b):\n"])[0]
    free = tokenizer.decode(greedy_reference(model, tokenizer, example, 12))
    stop = free[4:6]  # a string the model is known to produce at characters 4-5
    assert len(stop) == 2 and free.find(stop) == 4
    (completion,) = generate_completions(
        model, tokenizer, [example], DecodingSettings(max_new_tokens=12), StopRule((stop,))
    )
    assert completion.texts == [free[:4]]
    assert completion.new_tokens[0] == 6  # stopped as soon as the stop string was complete


def test_stop_rules_per_task():
    assert STOP_RULES["commit-message"].apply("Fix the bug\nMore text\n") == "Fix the bug"
    assert STOP_RULES["code-translation"].apply("x = 1\n\n### Code written in Go:\ny") == "x = 1\n"
    assert STOP_RULES["code-generation"].apply("print(1)\n\n") == "print(1)\n"
    assert StopRule().apply("abc\n") == "abc"  # the trained "\n" before EOS is dropped
    assert StopRule(("X", "Y")).apply("aaYbbXcc") == "aa"  # the earliest stop wins


def test_sampling_gives_n_candidates_reproducibly(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    settings = DecodingSettings(max_new_tokens=6, n=3, temperature=1.0, top_k=50, seed=7)
    first = generate_completions(model, tokenizer, examples(PROMPTS[:2]), settings, StopRule())
    again = generate_completions(model, tokenizer, examples(PROMPTS[:2]), settings, StopRule())
    assert [len(c.texts) for c in first] == [3, 3]
    assert [c.texts for c in first] == [c.texts for c in again]
    assert len({t for c in first for t in c.texts}) > 1  # sampled, not greedy copies
    assert DecodingSettings(n=4).temperature == 1.0 and DecodingSettings(n=4).sampling
    assert not DecodingSettings().sampling and DecodingSettings().max_new_tokens == 512


def test_prompt_that_cannot_fit_scores_empty(model_and_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    model, _ = model_and_tokenizer
    tokenizer = AutoTokenizer.from_pretrained(model.name_or_path)
    long = TaskExample("long", "code-generation", "python", "y" * 600, "")
    completions = generate_completions(
        model,
        tokenizer,
        [long, examples(["x"])[0]],
        DecodingSettings(max_new_tokens=4),
        StopRule(),
    )
    assert completions[0].texts == [""] and completions[0].dropped == "prompt too long"
    assert completions[1].dropped is None and completions[1].new_tokens == [4]


def test_decoding_settings_are_checked(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(UserError, match="--temperature must be > 0"):
        DecodingSettings(temperature=0.0)
    with pytest.raises(UserError, match="--top-p"):
        DecodingSettings(top_p=1.5)
    with pytest.raises(UserError, match="--n must be >= 1"):
        DecodingSettings(n=0)
    with pytest.raises(UserError, match="leaves no room for a prompt"):
        generate_completions(
            model, tokenizer, examples(["x"]), DecodingSettings(max_new_tokens=512), StopRule()
        )
