"""A structural metric for code translation: are the function's name and parameter names kept?

BLEU rewards a fluent program that ignores its source (testbed notes: 10-11 BLEU for that),
and exact match is too harsh on programs with arbitrary names and constants. Whether the
translation defines the reference's entry function under the same name, with the same
parameter names in order, is cheap, reads no execution, and tells a translation from a
rewrite. The entry function is the reference's *last* top-level definition (helpers come
first in the testbed's programs and in most single-file solutions).

    function_name_preserved    1 when the prediction defines a function named like the
                               reference's entry function
    parameter_names_preserved  1 when that function (or, if the name is missing, the
                               prediction's last function) has exactly the reference's
                               parameter names, in order

Languages without a signature reader here give None (the metric is not reported).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

FUNCTION_NAME = "function_name_preserved"
PARAMETER_NAMES = "parameter_names_preserved"
STRUCTURE_METRICS = (FUNCTION_NAME, PARAMETER_NAMES)

_IDENT = r"[A-Za-z_]\w*"
_JAVA_NOT_METHODS = {"if", "for", "while", "switch", "catch", "return", "new", "synchronized"}


@dataclass(frozen=True)
class Signature:
    name: str
    params: tuple[str, ...]


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside <>, (), [] (Java generics, default values)."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "<([{":
            depth += 1
        elif char in ">)]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _python_params(text: str) -> tuple[str, ...]:
    names = []
    for part in _split_top_level(text):
        name = part.split(":")[0].split("=")[0].strip().lstrip("*")
        if name and name not in ("self", "cls", "/"):
            names.append(name)
    return tuple(names)


def _ruby_params(text: str) -> tuple[str, ...]:
    names = []
    for part in _split_top_level(text):
        name = re.split(r"[=:]", part)[0].strip().lstrip("*&")
        if name:
            names.append(name)
    return tuple(names)


def _js_params(text: str) -> tuple[str, ...]:
    return tuple(
        p.split("=")[0].strip().lstrip(".") for p in _split_top_level(text) if p.split("=")[0]
    )


def _go_params(text: str) -> tuple[str, ...]:
    # `a, b int, c []string` -> a, b, c: the first word of each comma-separated piece.
    names = []
    for part in _split_top_level(text):
        match = re.match(_IDENT, part)
        if match:
            names.append(match.group(0))
    return tuple(names)


def _java_params(text: str) -> tuple[str, ...]:
    # `final List<Integer> points, int[] xs` -> points, xs: the last identifier of each piece.
    names = []
    for part in _split_top_level(text):
        found = re.findall(_IDENT, re.sub(r"<.*>", " ", part))
        if found:
            names.append(found[-1])
    return tuple(names)


def _python(code: str) -> list[Signature]:
    pattern = rf"^def\s+({_IDENT})\s*\(([^)]*)\)"
    return [Signature(m[1], _python_params(m[2])) for m in re.finditer(pattern, code, re.M)]


def _ruby(code: str) -> list[Signature]:
    pattern = rf"^def\s+(?:self\.)?({_IDENT}[?!]?)[ \t]*(?:\(([^)]*)\)|([^\n;]*))"
    return [
        Signature(m[1], _ruby_params(m[2] if m[2] is not None else m[3] or ""))
        for m in re.finditer(pattern, code, re.M)
    ]


def _javascript(code: str) -> list[Signature]:
    found: list[tuple[int, Signature]] = []
    declared = rf"^(?:export\s+)?(?:async\s+)?function\s*\*?\s*({_IDENT})\s*\(([^)]*)\)"
    assigned = rf"^(?:export\s+)?(?:const|let|var)\s+({_IDENT})\s*=\s*(?:async\s+)?(?:function\s*\*?\s*{_IDENT}?\s*)?\(([^)]*)\)"
    for pattern in (declared, assigned):
        for m in re.finditer(pattern, code, re.M):
            found.append((m.start(), Signature(m[1], _js_params(m[2]))))
    return [signature for _, signature in sorted(found, key=lambda item: item[0])]


def _go(code: str) -> list[Signature]:
    pattern = rf"^func\s+(?:\([^)]*\)\s*)?({_IDENT})\s*\(([^)]*)\)"
    return [Signature(m[1], _go_params(m[2])) for m in re.finditer(pattern, code, re.M)]


def _java(code: str) -> list[Signature]:
    modifiers = r"(?:(?:public|private|protected|static|final|abstract|synchronized)\s+)*"
    pattern = rf"^[ \t]*{modifiers}[\w<>\[\],.? ]+?\s+({_IDENT})\s*\(([^)]*)\)\s*(?:throws\s+[\w., ]+)?\{{"
    return [
        Signature(m[1], _java_params(m[2]))
        for m in re.finditer(pattern, code, re.M)
        if m[1] not in _JAVA_NOT_METHODS and m[1] != "main"
    ]


READERS = {
    "python": _python,
    "ruby": _ruby,
    "javascript": _javascript,
    "go": _go,
    "java": _java,
}


def signatures(language: str, code: str) -> list[Signature] | None:
    """Function signatures in definition order; None when the language has no reader."""
    reader = READERS.get(language)
    return None if reader is None else reader(code)


def structure_scores(
    language: str, predictions: Sequence[str], references: Sequence[str]
) -> dict[str, list[float | None]] | None:
    """Per item 1.0/0.0 for each structural metric; None for an item whose reference defines
    no function (not scorable); None overall when the language has no reader."""
    if language not in READERS:
        return None
    names: list[float | None] = []
    params: list[float | None] = []
    for prediction, reference in zip(predictions, references, strict=True):
        expected = signatures(language, reference)
        if not expected:
            names.append(None)
            params.append(None)
            continue
        entry = expected[-1]
        produced = signatures(language, prediction) or []
        same_name = [s for s in produced if s.name == entry.name]
        names.append(1.0 if same_name else 0.0)
        compared = same_name[-1] if same_name else (produced[-1] if produced else None)
        params.append(1.0 if compared is not None and compared.params == entry.params else 0.0)
    return {FUNCTION_NAME: names, PARAMETER_NAMES: params}
