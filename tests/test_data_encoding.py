"""Tokenization, truncation that never cuts the target, loss masks and padding.

A byte-level tokenizer with no merges gives one token per ASCII character, so every
expected length below is plain arithmetic on the strings; a small trained BPE checks the
same invariants where token boundaries do not follow characters.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from advfusion_cli.data import TaskExample, load_task
from advfusion_cli.data.encoding import (
    IGNORE_INDEX,
    Collator,
    DroppedExample,
    completion_only_labels,
    encode_example,
    encode_examples,
    encode_prompt_for_generation,
)
from advfusion_cli.data.stats import DataStats
from advfusion_cli.data.tasks.commit_message import render_prompt

FIXTURES = Path(__file__).parent / "fixtures" / "data"
HEAD = "Based on the change given, only write commit message.\n### Diff:\n"
TAIL = "\n### Commit Message:\n"


def _wrap(tokenizer_object):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_object, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


@pytest.fixture(scope="module")
def char_tokenizer():
    """One token per byte; prepends <s> like Llama tokenizers do with special tokens on."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {"<s>": 0, "</s>": 1, "<pad>": 2}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 0)]
    )
    return _wrap(tokenizer)


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A byte-level BPE trained on the fixture prompts: merges cross template/text joins."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = [e.prompt + e.target for e in _commits()]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts * 5, trainer)
    return _wrap(tokenizer)


def _commits() -> list[TaskExample]:
    return load_task("commit-message", str(FIXTURES / "commitpackft"), "ruby", "all").examples


def _commit(diff: str, target: str) -> TaskExample:
    prompt, span = render_prompt(diff)
    return TaskExample("c", "commit-message", "ruby", prompt, target, meta={"inner_span": span})


def test_layout_prompt_then_target_newline_eos_with_loss_everywhere(char_tokenizer):
    example = _commits()[0]
    features = encode_example(char_tokenizer, example)
    n_prompt = 1 + len(example.prompt)  # <s> + one token per character
    n_target = len(example.target) + 2  # "\n" and </s>
    assert features["prompt_length"] == n_prompt and not features["truncated"]
    assert len(features["input_ids"]) == n_prompt + n_target
    assert char_tokenizer.decode(features["input_ids"]) == (
        "<s>" + example.prompt + example.target + "\n</s>"
    )
    assert features["input_ids"].count(char_tokenizer.eos_token_id) == 1
    assert features["labels"] == features["input_ids"]  # the authors: loss on prompt and target
    assert features["attention_mask"] == [1] * (n_prompt + n_target)
    assert features["completion_mask"] == [0] * n_prompt + [1] * n_target


def test_loss_on_target_only_masks_the_prompt(char_tokenizer):
    example = _commits()[0]
    features = encode_example(char_tokenizer, example, loss_on="target")
    cut = features["prompt_length"]
    assert features["labels"][:cut] == [IGNORE_INDEX] * cut
    assert features["labels"][cut:] == features["input_ids"][cut:]
    with pytest.raises(ValueError, match="loss_on"):
        encode_example(char_tokenizer, example, loss_on="prompt")


@pytest.mark.parametrize("limit", ["total", "prompt"])
def test_truncation_cuts_the_diff_and_keeps_template_tail_and_target(char_tokenizer, limit):
    diff = "--- a.rb\n+++ a.rb\n@@ -1 +1 @@\n-x = 1\n+x = 2"
    example = _commit(diff, "Change x")
    fixed = 1 + len(HEAD) + len(TAIL)  # <s> + template around the diff
    budgets = (
        {"max_total_tokens": fixed + 10 + len("Change x") + 2}
        if limit == "total"
        else {"max_prompt_tokens": fixed + 10}
    )
    features = encode_example(char_tokenizer, example, **budgets)
    assert features["truncated"]
    cut = features["prompt_length"]
    assert cut == fixed + 10
    assert char_tokenizer.decode(features["input_ids"][:cut]) == "<s>" + HEAD + diff[:10] + TAIL
    assert char_tokenizer.decode(features["input_ids"][cut:]) == "Change x\n</s>"


def test_no_room_for_target_and_target_too_long_are_dropped_with_reasons(char_tokenizer):
    example = _commit("-a\n+b", "Fix it")
    fixed = 1 + len(HEAD) + len(TAIL)
    with pytest.raises(DroppedExample) as err:
        encode_example(char_tokenizer, example, max_total_tokens=fixed + len("Fix it") + 1)
    assert err.value.reason == "no room for target"
    # exactly enough room for the template, an empty diff and the target: still usable
    features = encode_example(char_tokenizer, example, max_total_tokens=fixed + len("Fix it") + 2)
    assert char_tokenizer.decode(features["input_ids"]) == "<s>" + HEAD + TAIL + "Fix it\n</s>"
    with pytest.raises(DroppedExample) as err:
        encode_example(char_tokenizer, example, max_target_tokens=len("Fix it") + 1)
    assert err.value.reason == "target too long"
    empty = TaskExample("p", "code-generation", "ruby", '"""\nx\n"""\n', "")
    with pytest.raises(DroppedExample, match="no target"):
        encode_example(char_tokenizer, empty)


def test_encode_examples_counts_truncated_and_dropped(char_tokenizer):
    examples = [
        _commit("-" * 5, "ok"),  # fits
        _commit("+" * 50, "ok"),  # cut to 20 characters of diff
        _commit("-x", "z" * 100),  # target longer than its budget
    ]
    stats = DataStats(task="commit-message", source="test")
    fixed = 1 + len(HEAD) + len(TAIL)
    features = encode_examples(
        char_tokenizer, examples, stats=stats, max_target_tokens=60, max_total_tokens=fixed + 20 + 4
    )
    assert [f["truncated"] for f in features] == [False, True]
    assert [f["prompt_length"] for f in features] == [fixed + 5, fixed + 20]
    assert stats.truncated == {"ruby": 1}
    assert stats.dropped == {"target too long": 1}


def test_translation_and_generation_prompts_keep_their_tails(char_tokenizer):
    translation = load_task(
        "code-translation", str(FIXTURES / "codetransocean"), "python", "test"
    ).examples[0]
    tail = "\n### Code written in Python:\n"
    head = "### Code written in Go:\n"
    features = encode_example(
        char_tokenizer, translation, max_prompt_tokens=1 + len(head + tail) + 10
    )
    prompt = char_tokenizer.decode(features["input_ids"][: features["prompt_length"]])
    assert features["truncated"]
    assert prompt == "<s>" + head + "package ma" + tail

    problem = load_task("code-generation", str(FIXTURES / "xcodeeval"), "ruby", "train").examples[0]
    features = encode_prompt_for_generation(
        char_tokenizer, problem, max_prompt_tokens=4096, max_total_tokens=60, max_new_tokens=20
    )
    assert features["prompt_length"] == 40 and features["truncated"]
    # 60 - 20 new tokens = 40 = <s> + '"""\n' + 30 statement characters + '\n"""\n'
    assert char_tokenizer.decode(features["input_ids"]) == (
        '<s>"""\nGiven two integers a and b, pr\n"""\n'
    )
    with pytest.raises(DroppedExample, match="prompt too long"):
        encode_prompt_for_generation(char_tokenizer, problem, max_prompt_tokens=8)


@pytest.mark.parametrize(
    ("max_total", "some_dropped", "some_cut"),
    [(12, True, False), (30, True, True), (90, False, True), (8192, False, False)],
)
def test_bpe_budgets_hold_and_targets_survive(bpe_tokenizer, max_total, some_dropped, some_cut):
    stats = DataStats(task="commit-message", source="fixtures")
    examples = _commits()
    features = encode_examples(
        bpe_tokenizer, examples, stats=stats, max_prompt_tokens=100, max_total_tokens=max_total
    )
    kept = {f["id"]: f for f in features}
    for example in examples:
        if example.id not in kept:
            continue
        f = kept[example.id]
        assert len(f["input_ids"]) <= max_total and f["prompt_length"] <= 100
        prompt = bpe_tokenizer.decode(f["input_ids"][: f["prompt_length"]])
        assert (
            bpe_tokenizer.decode(f["input_ids"][f["prompt_length"] :]) == example.target + "\n</s>"
        )
        start, end = example.meta["inner_span"]
        diff = example.prompt[start:end]
        assert prompt.startswith(HEAD) and prompt.endswith(TAIL)
        kept_diff = prompt[len(HEAD) : len(prompt) - len(TAIL)]
        assert diff.startswith(kept_diff) and (len(kept_diff) < len(diff)) == f["truncated"]
    assert len(features) + stats.dropped["no room for target"] == len(examples)
    assert (len(features) < len(examples)) == some_dropped
    assert any(f["truncated"] for f in features) == some_cut
    assert sum(stats.truncated.values()) == sum(f["truncated"] for f in features)


def test_collator_right_pads_for_training():
    features = [
        {
            "input_ids": [5, 6, 7],
            "labels": [5, 6, 7],
            "attention_mask": [1, 1, 1],
            "completion_mask": [0, 1, 1],
            "prompt_length": 1,
            "truncated": False,
            "id": "a",
        },
        {
            "input_ids": [8, 9],
            "labels": [-100, 9],
            "attention_mask": [1, 1],
            "completion_mask": [0, 1],
            "prompt_length": 1,
            "truncated": True,
            "id": "b",
        },
    ]
    batch = Collator(pad_token_id=0)(features)
    assert set(batch) == {
        "input_ids",
        "labels",
        "attention_mask",
        "completion_mask",
        "prompt_length",
    }
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7], [-100, 9, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["completion_mask"].tolist() == [[0, 1, 1], [0, 1, 0]]
    assert batch["prompt_length"].tolist() == [1, 1]
    assert batch["input_ids"].dtype == torch.long
    assert completion_only_labels(batch["labels"], batch["completion_mask"]).tolist() == [
        [-100, 6, 7],
        [-100, 9, -100],
    ]
    wide = Collator(pad_token_id=0, pad_to_multiple_of=4)(features)
    assert wide["input_ids"].shape == (2, 4)


def test_collator_left_pads_for_generation(char_tokenizer):
    examples = load_task(
        "code-translation", str(FIXTURES / "codetransocean"), "python", "test"
    ).examples
    features = [encode_prompt_for_generation(char_tokenizer, e) for e in examples]
    batch = Collator.for_tokenizer(char_tokenizer, padding_side="left")(features)
    lengths = [f["prompt_length"] for f in features]
    width = max(lengths)
    for row, mask, n in zip(batch["input_ids"], batch["attention_mask"], lengths, strict=True):
        assert mask.tolist() == [0] * (width - n) + [1] * n
        assert row[: width - n].tolist() == [char_tokenizer.pad_token_id] * (width - n)
        assert row[-1].item() == char_tokenizer.convert_tokens_to_ids("Ċ")  # prompt ends in "\n"


def test_collator_pads_with_eos_when_the_tokenizer_has_no_pad(char_tokenizer):
    from copy import deepcopy

    tokenizer = deepcopy(char_tokenizer)
    tokenizer.pad_token = None
    assert Collator.for_tokenizer(tokenizer).pad_token_id == tokenizer.eos_token_id
