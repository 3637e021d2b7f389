"""Prompt templates over a record's fields: `{field}` placeholders, `{{` and `}}` for braces.

A user-defined task writes its prompt as text with placeholders, e.g.
`"# {language}\\n# {docstring}\\n"`. Only plain field names are allowed: no format specs
(`{n:3}`), conversions (`{x!r}`), attribute or index access (`{a.b}`, `{a[0]}`) and no empty
`{}`; each of those is a ValueError whose message says how to write it instead.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

# A field name as it may appear inside braces: anything but braces and the characters that
# str.format would read as access, conversion or format spec.
_PLAIN_NAME = re.compile(r"^[^{}\[\].!:]+$")


@dataclass(frozen=True)
class Template:
    text: str
    # (literal text, field name or None) in order; the literal has its braces unescaped
    pieces: tuple[tuple[str, str | None], ...]

    @property
    def fields(self) -> tuple[str, ...]:
        """Field names in order of first use, each once."""
        seen: dict[str, None] = {}
        for _, name in self.pieces:
            if name is not None:
                seen.setdefault(name, None)
        return tuple(seen)

    def render(self, values: dict[str, str]) -> tuple[str, dict[str, tuple[int, int]]]:
        """The filled text and, per field, the (start, end) characters of its first use."""
        parts: list[str] = []
        spans: dict[str, tuple[int, int]] = {}
        at = 0
        for literal, name in self.pieces:
            parts.append(literal)
            at += len(literal)
            if name is None:
                continue
            value = values[name]
            spans.setdefault(name, (at, at + len(value)))
            parts.append(value)
            at += len(value)
        return "".join(parts), spans


def parse_template(text: str) -> Template:
    """The template's pieces; ValueError naming the offending placeholder."""
    if not isinstance(text, str) or not text:
        raise ValueError("must be a non-empty text with {field} placeholders")
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as err:
        raise ValueError(
            f"{err} (write '{{{{' and '}}}}' for literal braces, '{{field}}' for a field)"
        ) from None
    pieces: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parsed:
        if name is None:
            pieces.append((literal, None))
            continue
        written = (
            "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        )
        written += "}"
        if not name.strip():
            raise ValueError(
                f"'{written}' names no field; write {{field}} (or '{{{{}}}}' for literal braces)"
            )
        if conversion or spec or not _PLAIN_NAME.match(name):
            raise ValueError(
                f"'{written}' is not a plain {{field}} placeholder (no ':', '!', '.' or '[...]'); "
                "write '{{' and '}}' for literal braces"
            )
        pieces.append((literal, name.strip()))
    if not any(name for _, name in pieces):
        raise ValueError(
            "has no {field} placeholder: the prompt would be the same for every record"
        )
    return Template(text, tuple(pieces))
