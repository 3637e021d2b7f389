"""What the user hands `advfusion generate`: files named on the command line, or standard input.

Input is read as UTF-8 text (a byte-order mark dropped); empty, binary or undecodable input
is a one-line UserError naming the file, as is a terminal on standard input with no file.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from advfusion_cli.errors import UserError

STDIN_NAME = "stdin"


@dataclass(frozen=True)
class InputText:
    """One input: its name (the path as given, or `stdin`), its text, and its path if a file."""

    name: str
    text: str
    path: Path | None = None

    @property
    def described(self) -> str:
        return "standard input" if self.path is None else f"'{self.name}'"


def decode_text(data: bytes, described: str) -> str:
    """UTF-8 text without a byte-order mark; binary or other encodings are a UserError."""
    if b"\x00" in data:
        raise UserError(f"{described} is binary, not text.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{described} is not UTF-8 text (byte {err.start}: {data[err.start : err.start + 1]!r})."
        ) from None
    return text.removeprefix("\ufeff")


def require_text(item: InputText) -> InputText:
    """The input itself, or a UserError when it holds nothing but whitespace."""
    if not item.text.strip():
        if item.path is None:
            raise UserError(
                "Standard input is empty: nothing to generate from. Pipe text in "
                "(e.g. `git diff --cached | advfusion generate ...`) or pass a file."
            )
        raise UserError(f"Input file '{item.name}' is empty: nothing to generate from.")
    return item


def read_file(name: str | Path) -> InputText:
    path = Path(name).expanduser()
    if not path.exists():
        raise UserError(f"Input file '{name}' does not exist.")
    if path.is_dir():
        raise UserError(f"Input '{name}' is a folder; pass a file.")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"Cannot read input file '{name}': {err.strerror or err}.") from None
    return require_text(InputText(str(name), decode_text(data, f"Input file '{name}'"), path))


def read_stdin(stream: TextIO | BinaryIO | None = None) -> InputText:
    """All of standard input; a terminal (nothing piped) is an error instead of a hang."""
    stream = sys.stdin if stream is None else stream
    if stream is None:
        raise UserError("No input: pass a file, or pipe text on standard input.")
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        raise UserError(
            "No input: pass a file, or pipe text on standard input "
            "(e.g. `git diff --cached | advfusion generate ...`)."
        )
    raw = getattr(stream, "buffer", stream)  # bytes when the stream has them (a real stdin)
    data = raw.read()
    if isinstance(data, str):
        data = data.encode("utf-8")
    return require_text(InputText(STDIN_NAME, decode_text(data, "Standard input")))


def read_inputs(
    names: Sequence[str | Path], stdin: TextIO | BinaryIO | None = None
) -> list[InputText]:
    """Each named file in order (`-` = standard input); standard input alone when none."""
    if not names:
        return [read_stdin(stdin)]
    if sum(str(n) == "-" for n in names) > 1:
        raise UserError("Standard input ('-') can be read only once.")
    return [read_stdin(stdin) if str(n) == "-" else read_file(n) for n in names]
