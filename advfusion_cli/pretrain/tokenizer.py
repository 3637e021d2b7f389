"""Byte-level BPE for code whose pre-tokenizer cuts identifiers into word pieces.

Why the split: on a small synthetic lexicon, plain BPE learns `getUserName` and
`get_user_name` as unrelated single tokens, so a model cannot copy a name from one naming
convention into another. Cutting camelCase humps and snake_case underscores before BPE
gives both spellings the shared pieces `get`/`user`/`name` (capitalised or not).
Byte-level encoding keeps every byte, so `decode(encode(text)) == text` for any text.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = [EOS_TOKEN, PAD_TOKEN]

# Alternatives are tried left to right at each position; whitespace comes last so a single
# space attaches to the word after it (" return") as in GPT-2.
#   ?[A-Z]+(?=[A-Z][a-z])   an acronym before a capitalised word: "HTTP" in "HTTPServer"
#   ?[A-Z]?[a-z]+           one camelCase hump or lower-case word: "get", "User"
#   ?[A-Z]+                 an all-caps word: "MAX" in "MAX_SIZE"
#   ?\p{L}+                 other letters (accents, non-Latin scripts)
#   ?\p{N}                  one digit, so constants are spelled digit by digit
#   ?[^\s\p{L}\p{N}]+       punctuation runs; "_" lands here, splitting snake_case
#   \s+(?!\S)|\s+           newlines and indentation
IDENTIFIER_SPLIT_PATTERN = (
    r" ?[A-Z]+(?=[A-Z][a-z])| ?[A-Z]?[a-z]+| ?[A-Z]+| ?\p{L}+| ?\p{N}"
    r"| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
)


def build_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Identifier-aware split, then byte-level mapping (no second regex pass)."""
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(IDENTIFIER_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def pre_tokenize(text: str) -> list[str]:
    """The word pieces BPE sees for `text` (byte-level characters), for inspection and tests."""
    return [piece for piece, _ in build_pre_tokenizer().pre_tokenize_str(text)]


def train_code_tokenizer(
    texts: Iterable[str], vocab_size: int = 2048, model_max_length: int = 1024
) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on `texts`; returns a transformers tokenizer with eos and pad set.

    All 256 byte symbols are in the initial alphabet, so text with characters never seen in
    training still encodes (byte by byte) and round-trips exactly.
    """
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = build_pre_tokenizer()
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    return wrap_tokenizer(core, model_max_length)


def wrap_tokenizer(core: Tokenizer, model_max_length: int) -> PreTrainedTokenizerFast:
    """A `PreTrainedTokenizerFast` that loads back with `AutoTokenizer.from_pretrained`."""
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        # No BOS: documents are separated by EOS only, as in the Qwen2 family.
        model_max_length=model_max_length,
        # Any clean-up would rewrite spaces before punctuation and break exact round-trips.
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: Path) -> None:
    tokenizer.save_pretrained(str(out_dir))
