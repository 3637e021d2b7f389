"""The code tokenizer: identifier-aware pre-tokenization and exact round-trips.

Trained here on a few hand-written programs (fast); the shipped tokenizer is checked on
testbed programs of every language in test_pretrain_embedded.py.
"""

import pytest
from transformers import AutoTokenizer

from advfusion_cli.pretrain.tokenizer import (
    EOS_TOKEN,
    PAD_TOKEN,
    pre_tokenize,
    train_code_tokenizer,
)

SAMPLES = {
    "python": "def count_vowels(text):\n    total = 0\n    for ch in text:\n"
    "        if ch in 'aeiou':\n            total += 1\n    return total\n",
    "javascript": "function countVowels(text) {\n  let total = 0;\n  for (const ch of text) {\n"
    "    if ('aeiou'.includes(ch)) total += 1;\n  }\n  return total;\n}\n",
    "java": "static int countVowels(String text) {\n    int total = 0;\n"
    '    for (char ch : text.toCharArray()) {\n        if ("aeiou".indexOf(ch) >= 0) {\n'
    "            total += 1;\n        }\n    }\n    return total;\n}\n",
    "go": "func countVowels(text string) int {\n\ttotal := 0\n\tfor _, ch := range text {\n"
    '\t\tif strings.ContainsRune("aeiou", ch) {\n\t\t\ttotal++\n\t\t}\n\t}\n\treturn total\n}\n',
    "ruby": "def count_vowels(text)\n  total = 0\n  text.each_char do |ch|\n"
    "    total += 1 if 'aeiou'.include?(ch)\n  end\n  total\nend\n",
}
EDGE_CASES = [
    "",
    "\n",
    "   \n\t\n  ",
    "x = 1  \n\n\n    y = 2\t\t# trailing spaces   \n",
    "HTTPServer.parseURL(MAX_SIZE, __init__, _private, getX2Y)",
    "s = 'héllo wörld ✓ 日本語'  # unseen characters, byte fallback",
    "a\r\nb\r\n",
    "<|endoftext|> is just text here",
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    corpus = list(SAMPLES.values()) * 20
    trained = train_code_tokenizer(corpus, vocab_size=400)
    path = tmp_path_factory.mktemp("tok")
    trained.save_pretrained(str(path))
    return AutoTokenizer.from_pretrained(str(path))  # reloaded, as every user gets it


def _pieces(text: str) -> list[str]:
    # Byte-level shows a leading space as "Ġ"; compare the readable form.
    return [p.replace("Ġ", " ") for p in pre_tokenize(text)]


def test_camel_case_is_split_into_humps():
    assert _pieces("getUserName") == ["get", "User", "Name"]
    assert _pieces("HTTPServer") == ["HTTP", "Server"]
    assert _pieces("parseURL") == ["parse", "URL"]


def test_snake_case_is_split_at_underscores():
    assert _pieces("get_user_name") == ["get", "_", "user", "_", "name"]
    assert _pieces("MAX_SIZE") == ["MAX", "_", "SIZE"]


def test_both_conventions_share_word_pieces():
    snake = {p.lower() for p in _pieces("count_vowels") if p != "_"}
    camel = {p.lower() for p in _pieces("countVowels")}
    assert snake == camel == {"count", "vowels"}


def test_spaces_attach_to_the_next_word_and_digits_are_single():
    assert _pieces("  return x42") == [" ", " return", " x", "4", "2"]


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_round_trip_is_exact_on_every_language(tokenizer, language):
    text = SAMPLES[language]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


@pytest.mark.parametrize("text", EDGE_CASES)
def test_round_trip_is_exact_on_whitespace_and_unseen_characters(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_special_tokens_and_no_bos(tokenizer):
    assert tokenizer.eos_token == EOS_TOKEN
    assert tokenizer.pad_token == PAD_TOKEN
    assert tokenizer.eos_token_id != tokenizer.pad_token_id
    assert tokenizer.bos_token is None
    ids = tokenizer("x = 1")["input_ids"]  # add_special_tokens defaults to True
    assert tokenizer.eos_token_id not in ids and tokenizer.pad_token_id not in ids
    assert tokenizer.decode(ids + [tokenizer.eos_token_id], skip_special_tokens=True) == "x = 1"


def test_bpe_merges_frequent_identifier_pieces(tokenizer):
    # "total" occurs in every sample: it must be one token, not five bytes.
    ids = tokenizer(" total", add_special_tokens=False)["input_ids"]
    assert len(ids) == 1
    assert len(tokenizer) <= 400
