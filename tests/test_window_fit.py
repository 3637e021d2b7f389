"""Windowed prompt fitting gives the ids of the whole-candidate bisection, for several tokenizer
families, random cut points, Unicode, prompts holding special-token text and prefix probes."""

from __future__ import annotations

import logging
import random

import pytest
from test_data_cache import tiny_tokenizer
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer
from transformers import PreTrainedTokenizerFast

from advfusion_cli.data import batch_encoding, window_fit
from advfusion_cli.data.batch_encoding import fit_prompts
from advfusion_cli.data.encoding import DroppedExample, fit_prompt
from advfusion_cli.data.records import TaskExample

HEAD = "Based on the change given, only write commit message.\n### Diff:\n"
TAIL = "\n### Commit Message:\n"
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
WORDS = [
    "def", "return", "self", "value", "HTTPServer", "parseJSON", "x", "i", "0", "42", "3.14",
    "café", "naïve", "Straße", "日本語", "変数", "🙂", "\u00e9", "Ω", "->", "==", "{",
    "}", "(", ")", ";", "#", "//", "'s", "don't", "\t", "    ", "        ", "\n", "\n\n", " ",
]  # fmt: skip


def _code_text(rng: random.Random, n_words: int) -> str:
    return "".join(
        rng.choice(WORDS) + rng.choice(["", " ", " ", "\n", "  "]) for _ in range(n_words)
    )


def _corpus() -> list[str]:
    rng = random.Random(0)
    return [HEAD + _code_text(rng, 60) + TAIL for _ in range(400)]


def _train(tokenizer: Tokenizer, specials: list[str]) -> Tokenizer:
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = BpeTrainer(vocab_size=800, special_tokens=specials, initial_alphabet=alphabet)
    tokenizer.train_from_iterator(_corpus(), trainer)
    return tokenizer


def _wrap(tokenizer: Tokenizer, **special) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)


def gpt2_like():
    """Byte-level BPE with GPT-2's own regex and a ByteLevel post-processor trimming offsets."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    return _wrap(_train(tok, ["<|endoftext|>"]), eos_token="<|endoftext|>")


def qwen_like():
    """NFC normalizer, one regex Split, byte mapping without a regex (Qwen2.5-Coder's layout)."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    _train(tok, ["<|endoftext|>", "<s>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return _wrap(tok, eos_token="<|endoftext|>", bos_token="<s>")


def multi_split_like():
    """Several Split steps (DeepSeek-Coder's layout): only the first one's pieces restart;
    an EOS appended after every sequence."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[\r\n]"), behavior="isolated"),
            pre_tokenizers.Split(Regex(r"\s?\p{L}+"), behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    _train(tok, ["</s>"])
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    return _wrap(tok, eos_token="</s>")


def sentencepiece_like():
    """No pre-tokenizer and a prepending normalizer (Llama's layout): no restart points."""
    tok = Tokenizer(models.BPE(byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback()])
    _train(tok, ["</s>"])
    return _wrap(tok, eos_token="</s>")


FAMILIES = {
    "tiny-code": (tiny_tokenizer, True),
    "gpt2-like": (gpt2_like, True),
    "qwen-like": (qwen_like, True),
    "multi-split": (multi_split_like, True),
    "sentencepiece-like": (sentencepiece_like, False),
}


def _examples(rng: random.Random, n: int, eos: str) -> list[TaskExample]:
    examples = []
    for i in range(n):
        inner = _code_text(rng, rng.randint(5, 220))
        if i % 5 == 1:  # not in normal form: NFC-normalizing tokenizers fit these whole
            inner = inner.replace("é", "e\u0301")
        if i % 17 == 3:
            inner = inner[: len(inner) // 2] + eos + inner[len(inner) // 2 :]  # special text
        prompt = HEAD + inner + TAIL
        span = (len(HEAD), len(HEAD) + len(inner)) if i % 11 else None  # some cannot be cut
        meta = {"inner_span": span} if span else {}
        examples.append(TaskExample(f"e{i}", "t", "python", prompt, "subject", meta=meta))
    return examples


def _reference(tokenizer, examples, budget) -> list:
    out = []
    for example in examples:
        try:
            out.append(fit_prompt(tokenizer, example, budget, no_room_reason="too long"))
        except DroppedExample as dropped:
            out.append(dropped.reason)
    return out


def _batched(tokenizer, examples, budget) -> list:
    fitted = fit_prompts(
        tokenizer,
        [e.prompt for e in examples],
        [e.meta.get("inner_span") for e in examples],
        [budget] * len(examples),
        no_room_reason="too long",
    )
    return [r if isinstance(r, str) else (list(r[0]), r[1]) for r in fitted]


@pytest.fixture(autouse=True)
def fresh_process_state():
    """No windowing verdicts, self-checks or character rates left from other tests."""
    window_fit._ANALYSED.clear()
    batch_encoding._checked.clear()
    batch_encoding._chars_and_tokens.clear()
    yield
    window_fit._ANALYSED.clear()
    batch_encoding._checked.clear()
    batch_encoding._chars_and_tokens.clear()


_MADE: dict = {}


def _family(name: str):
    if name not in _MADE:
        make, windowed = FAMILIES[name]
        _MADE[name] = (name, make(), windowed)
    return _MADE[name]


@pytest.fixture(params=list(FAMILIES))
def family(request):
    return _family(request.param)


def test_each_family_is_windowed_or_not_as_its_layout_allows(family):
    name, tokenizer, windowed = family
    assert (window_fit.windowing_for(tokenizer) is not None) == windowed, name


@pytest.mark.parametrize("budget", [30, 64, 131])
def test_windowed_fitting_equals_the_whole_candidate_bisection(family, budget):
    name, tokenizer, windowed = family
    examples = _examples(random.Random(budget), 90, tokenizer.eos_token)
    reference = _reference(tokenizer, examples, budget)
    assert _batched(tokenizer, examples, budget) == reference, name
    # the windowed way itself gave these ids: its self-check did not switch it off
    assert (window_fit.windowing_for(tokenizer) is not None) == windowed
    cut = sum(1 for r in reference if not isinstance(r, str) and r[1])
    assert cut >= 20 and any(isinstance(r, str) for r in reference), "cuts and drops both seen"


@pytest.mark.parametrize("name", [name for name, (_, windowed) in FAMILIES.items() if windowed])
def test_prefix_probes_give_the_same_ids(name, monkeypatch):
    _, tokenizer, _ = _family(name)
    probes = []
    real = window_fit.PromptWindows.__init__

    def spying(self, *args, probe_end=None, **kwargs):
        probes.append(probe_end)
        real(self, *args, probe_end=probe_end, **kwargs)

    monkeypatch.setattr(window_fit.PromptWindows, "__init__", spying)
    monkeypatch.setattr(batch_encoding, "PROBE_MIN_TOKENS_SEEN", 50)
    rng = random.Random(5)
    for budget in (32, 90):
        examples = _examples(rng, 120, tokenizer.eos_token)
        first, second = examples[:20], examples[20:]  # the first batch sets the rate
        assert _batched(tokenizer, first, budget) == _reference(tokenizer, first, budget)
        assert _batched(tokenizer, second, budget) == _reference(tokenizer, second, budget)
    assert any(p is not None for p in probes), f"{name}: no prompt was probed"
    assert window_fit.windowing_for(tokenizer) is not None


def test_a_failing_self_check_turns_windowing_off_and_keeps_the_ids(monkeypatch, caplog):
    tokenizer = tiny_tokenizer()
    real = window_fit.PromptWindows.fixed_tokens
    monkeypatch.setattr(
        window_fit.PromptWindows, "fixed_tokens", lambda self, restart: real(self, restart) - 1
    )
    examples = _examples(random.Random(9), 60, tokenizer.eos_token)
    with caplog.at_level(logging.WARNING):
        assert _batched(tokenizer, examples, 30) == _reference(tokenizer, examples, 30)
    assert window_fit.windowing_for(tokenizer) is None
    assert "windowed prompt fitting differs" in caplog.text


@pytest.mark.parametrize(
    "regex,allowed",
    [
        (r" ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", True),
        (r"\bfoo", False),
        (r"^\s+", False),
        (r"(?<=x)y", False),
        (r"[^$]+", True),
        (r"a$", False),
    ],
)
def test_split_patterns_that_look_behind_are_not_windowed(regex, allowed):
    config = {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated"}
    assert window_fit._pre_tokenizers_allow(config) is allowed
