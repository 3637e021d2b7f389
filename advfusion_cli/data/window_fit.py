"""Counting a cut prompt's tokens by re-tokenizing only the text after the cut: same ids, less work.

`fit_prompt` bisects on how many characters of the inner text to keep, and each step
tokenizes the whole candidate `head + inner[:k] + tail`. Almost all of that work repeats
itself: the candidate equals the full prompt up to character `c = len(head) + k`. For most
tokenizers the tokens of a text before a *restart point* do not depend on what follows it,
so a candidate's tokens are

    full prompt's tokens before b  +  tokenize(candidate[b:])          (b <= c - GUARD)

where b is a first-level pre-token boundary of the full prompt. Why that is exact:

- The first pre-tokenizer (a regex `Split`, or GPT-2's `ByteLevel` regex) scans left to
  right; a piece that ends at b was decided by the text up to b plus the regex's lookahead
  (one or two characters in every code tokenizer), and the candidate equals the prompt there
  (GUARD characters of margin). So b is a piece boundary of the candidate too, and scanning
  `candidate[b:]` on its own gives the same pieces as scanning on from b (no lookbehind, no
  anchors: the pattern is checked). Later pre-tokenizers and the BPE model work on each
  piece alone, so every piece gives the same tokens.
- The post-processor only adds special tokens at the ends, and they are the prompt's own.

Tokenizers outside that description (SentencePiece without pre-tokenization such as Llama's,
a `Metaspace` that prepends, BPE dropout, a context-dependent normalizer) and prompts that
contain an added token's text use the whole-candidate bisection. The first long prompts a
process fits are also fitted the whole-candidate way and compared (`batch_encoding`): any
difference turns windowing off for that tokenizer with a warning. A prompt far over its
budget is tokenized only up to a probe length first (`batch_encoding._encode_prompts`): the
tokens before a restart point GUARD characters short of the probe's end are the prompt's. Tests compare both ways
on every task, the shared samples and random cut points for several tokenizer families.
"""

from __future__ import annotations

import json
import re
import weakref
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any

# Characters between the cut and the restart point: more than any pre-tokenizer's lookahead.
GUARD = 16

# Pre-tokenizers that split text into pieces each tokenized on its own, with no prefix added.
_SPLITTING = {"Split", "ByteLevel", "Whitespace", "WhitespaceSplit", "Punctuation", "Digits"}
_NORMALIZATION_FORMS = {"NFC", "NFD", "NFKC", "NFKD"}
_ENDS_ONLY_POSTPROCESSORS = {
    "TemplateProcessing",
    "ByteLevel",
    "RobertaProcessing",
    "BertProcessing",
}
# Regex constructs whose meaning at a piece's first character depends on what precedes it:
# word boundaries, anchors and lookbehind (checked with escapes and character classes removed).
_CONTEXT_ESCAPES = re.compile(r"\\[bBAzZG]")
_CONTEXT_SENSITIVE = re.compile(r"\^|\$|\(\?<[=!]")


def _regex_is_context_free(regex: str) -> bool:
    if _CONTEXT_ESCAPES.search(regex):
        return False
    plain = re.sub(r"\[[^\]]*\]", "", re.sub(r"\\.", "", regex))
    return not _CONTEXT_SENSITIVE.search(plain)


@dataclass(frozen=True)
class Windowing:
    """What windowed counting needs of one tokenizer."""

    first_level: Any  # a tokenizers PreTokenizer: the first of the pre-tokenizer sequence
    normal_forms: tuple[str, ...]  # an NFC/NFKC/... normalizer: cuts only before ASCII then
    added_texts: tuple[str, ...]  # a prompt containing one of these is fitted the whole way
    trims_offsets: bool  # a ByteLevel post-processor moves token starts past spaces
    # One splitting step and untrimmed offsets: the encoding's words are the first-level
    # pieces and each word's first token starts where its piece does, so the restart points
    # can be read off the encoding without pre-tokenizing again.
    words_are_restarts: bool = False


def _splits(step: dict) -> bool:
    """Whether a pre-tokenizer step cuts text into pieces (ByteLevel only with its regex)."""
    if step.get("type") == "ByteLevel":
        return step.get("use_regex", True)
    return True


def _pre_tokenizers_allow(config: dict | None) -> bool:
    if config is None:
        return False  # one piece for the whole text (SentencePiece style): no restart points
    steps = config["pretokenizers"] if config.get("type") == "Sequence" else [config]
    for step in steps:
        kind = step.get("type")
        if kind not in _SPLITTING:
            return False
        if kind == "ByteLevel" and step.get("add_prefix_space"):
            return False
        if kind == "Split":
            pattern = step.get("pattern", {})
            regex = pattern.get("Regex")
            if regex is not None and not _regex_is_context_free(regex):
                return False
    return bool(steps)


def _normal_forms(config: dict | None) -> tuple[str, ...] | None:
    """The Unicode normal forms the normalizer applies (() for none), or None when it does
    anything else (prepending, replacing, lowercasing, stripping: not supported)."""
    if config is None:
        return ()
    steps = config["normalizers"] if config.get("type") == "Sequence" else [config]
    forms = tuple(s.get("type") for s in steps)
    return forms if all(form in _NORMALIZATION_FORMS for form in forms) else None


def _post_processor_allows(config: dict | None) -> bool:
    if config is None:
        return True
    steps = config["processors"] if config.get("type") == "Sequence" else [config]
    return all(s.get("type") in _ENDS_ONLY_POSTPROCESSORS for s in steps)


def _analyse(tokenizer) -> Windowing | None:
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None  # a slow (Python) tokenizer
    config = json.loads(backend.to_str())
    model = config.get("model", {})
    if model.get("dropout") not in (None, 0, 0.0):
        return None  # sampled merges: nothing is reproducible anyway
    pre = config.get("pre_tokenizer")
    forms = _normal_forms(config.get("normalizer"))
    if not _pre_tokenizers_allow(pre) or forms is None:
        return None
    if not _post_processor_allows(config.get("post_processor")):
        return None
    steps = pre["pretokenizers"] if pre.get("type") == "Sequence" else [pre]
    splitting = [i for i, step in enumerate(steps) if _splits(step)]
    if not splitting:
        return None
    # A pipeline that pre-tokenizes up to the first splitting step: the restart points.
    first = {"type": "Sequence", "pretokenizers": steps[: splitting[0] + 1]}
    splitter = dict(config, pre_tokenizer=first, normalizer=None, post_processor=None)
    splitter["added_tokens"] = []
    first_level = Tokenizer.from_str(json.dumps(splitter)).pre_tokenizer
    added = tuple(
        token.content for token in getattr(tokenizer, "added_tokens_decoder", {}).values()
    )
    post = config.get("post_processor") or {}
    posts = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    trims = any(p.get("type") == "ByteLevel" and p.get("trim_offsets") for p in posts)
    return Windowing(
        first_level,
        forms,
        tuple(t for t in added if t),
        trims,
        words_are_restarts=len(splitting) == 1 and not trims,
    )


_ANALYSED: dict[int, Windowing | None] = {}


def windowing_for(tokenizer) -> Windowing | None:
    """The tokenizer's Windowing, or None when its candidates must be tokenized whole.
    Analysed once per tokenizer object (its serialized form is read, which is not free)."""
    key = id(tokenizer)
    if key not in _ANALYSED:
        _ANALYSED[key] = _analyse(tokenizer)
        weakref.finalize(tokenizer, _ANALYSED.pop, key, None)
    return _ANALYSED[key]


def disable_windowing(tokenizer) -> None:
    """Whole-candidate fitting from now on for this tokenizer (its self-check failed)."""
    windowing_for(tokenizer)
    _ANALYSED[id(tokenizer)] = None


class PromptWindows:
    """One over-long prompt, tokenized in full once, ready to count any cut of it quickly.

    `window(cut, tail)` gives the text to tokenize for the candidate `prompt[:cut] + tail`,
    `fixed_tokens` its tokens outside that window, and `ids` the candidate's full ids.
    Only the first `budget + MARGIN_TOKENS` tokens of the prompt are looked at: a cut past
    them is too long whatever its window holds.
    """

    MARGIN_TOKENS = 64

    def __init__(
        self,
        prompt: str,
        encoding,
        windowing: Windowing,
        budget: int,
        *,
        probe_end: int | None = None,
    ):
        """`encoding`: of the whole prompt, or with `probe_end` of `prompt[:probe_end]` only
        (its tokens are the prompt's up to GUARD characters before that end)."""
        ids = encoding.ids
        special = encoding.special_tokens_mask
        front = 0
        while front < len(ids) and special[front]:
            front += 1
        back = 0
        while back < len(ids) - front and special[len(ids) - 1 - back]:
            back += 1
        self.front_ids = list(ids[:front])
        self.back_ids = list(ids[len(ids) - back :])
        self.inner_ids = ids[front : len(ids) - back]  # (prompt tokens,)
        seen = min(len(self.inner_ids), budget + self.MARGIN_TOKENS)
        offsets = encoding.offsets[front : front + seen]
        self.starts = [start for start, _ in offsets]  # (seen,) non-decreasing
        if probe_end is None and seen == len(self.inner_ids):
            end = last = len(prompt)  # every token of the prompt is known
        else:
            end = offsets[-1][1] if seen else 0
            if probe_end is not None:
                end = min(end, probe_end)
            # restart points GUARD characters before the end of what is known are the
            # prompt's own; at or before the last start seen, bisect over `starts` is exact
            last = min(end - GUARD, self.starts[-1] if seen else 0)
        if windowing.words_are_restarts:
            words = encoding.word_ids[front : front + seen]
            bounds = [self.starts[0]] if seen else []
            bounds += [self.starts[j] for j in range(1, seen) if words[j] != words[j - 1]]
        else:
            pieces = windowing.first_level.pre_tokenize_str(prompt[:end])
            bounds = [span[0] for _, span in pieces]
        if last < len(prompt):
            bounds = bounds[: bisect_right(bounds, last)]
        if windowing.normal_forms:
            # composition never joins an ASCII character to the one before it
            bounds = [b for b in bounds if prompt[b].isascii()]
        # A token trimmed to nothing at a boundary cannot be placed on one side of it.
        if windowing.trims_offsets:
            empty_at = {start for start, stop in offsets if start == stop}
            bounds = [b for b in bounds if b not in empty_at]
        self.bounds = bounds  # (restart points, ascending)
        self.prompt = prompt

    def proves_too_long(self, budget: int) -> bool:
        """Whether the prompt's tokens before its last known restart point already pass
        `budget` (so the whole prompt does too, whatever follows)."""
        return bool(self.bounds) and self.fixed_tokens(len(self.bounds) - 1) > budget

    @classmethod
    def usable(cls, prompt: str, windowing: Windowing) -> bool:
        """Whether a prompt can be windowed: no added token's text (those are split out
        before pre-tokenizing) and, under a normalizer, already in its normal form."""
        if any(text in prompt for text in windowing.added_texts):
            return False
        if windowing.normal_forms and not prompt.isascii():
            import unicodedata

            return all(unicodedata.is_normalized(form, prompt) for form in windowing.normal_forms)
        return True

    def restart_before(self, cut: int) -> int:
        """Index into `bounds` of the last restart point at least GUARD characters before
        `cut`, or -1 for none (the window is then the whole candidate)."""
        return bisect_right(self.bounds, cut - GUARD) - 1

    def _before(self, restart: int) -> int:
        """The prompt's tokens (specials aside) before restart point `restart` (-1: none)."""
        return bisect_left(self.starts, self.bounds[restart]) if restart >= 0 else 0

    def fixed_tokens(self, restart: int) -> int:
        """Tokens of any candidate cut after that restart point, outside its window."""
        return len(self.front_ids) + self._before(restart) + len(self.back_ids)

    def window(self, cut: int, tail: str) -> tuple[int, str]:
        """(restart index, the text to tokenize) for the candidate prompt[:cut] + tail."""
        restart = self.restart_before(cut)
        begin = self.bounds[restart] if restart >= 0 else 0
        return restart, self.prompt[begin:cut] + tail

    def ids(self, restart: int, window_ids: list[int]) -> list[int]:
        """The candidate's full ids from its window's ids (tokenized without specials)."""
        before = self._before(restart)
        return self.front_ids + self.inner_ids[:before] + list(window_ids) + self.back_ids
