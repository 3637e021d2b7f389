"""A `git diff` rewritten into the single-file `difflib.unified_diff` shape commit messages were trained on.

Training diffs (data/tasks/commit_message.py, the authors' `cmg_processor`) are difflib output
for one file: `--- <path>` and `+++ <path>` with no `a/`/`b/` prefix and no timestamp,
`@@ -a,b +c,d @@` hunk headers with nothing after them, no `\\ No newline at end of file`
markers, lines joined by "\\n" without a trailing newline. A git diff carries more: `diff
--git` and index/mode lines, git's function heading after a hunk header, binary files and
pure renames without hunks. This module keeps what difflib would have written, file by file.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
DEV_NULL = "/dev/null"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class FileDiff:
    """One file's change in difflib's shape."""

    old_path: str
    new_path: str
    hunks: tuple[str, ...]  # each hunk: its header line and body lines joined by "\n"

    @property
    def path(self) -> str:
        return self.new_path

    def render(self) -> str:
        """`--- old` / `+++ new` / hunks, exactly as `difflib.unified_diff(..., lineterm="")`."""
        return "\n".join([f"--- {self.old_path}", f"+++ {self.new_path}", *self.hunks])


@dataclass
class ParsedDiff:
    files: list[FileDiff] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files without text hunks (binary, renames)

    def render(self) -> str:
        """All files' diffs one after the other (the combined prompt of a multi-file diff)."""
        return "\n".join(f.render() for f in self.files)


@dataclass
class _Section:
    """A file section being read: its paths (from `---`/`+++`) and hunks so far."""

    label: str = ""  # from `diff --git`, for files that never get `---`/`+++` lines
    old: str | None = None
    new: str | None = None
    hunks: list[str] = field(default_factory=list)


def _unquote(path: str) -> str:
    """git writes paths with unusual characters C-quoted: `"caf\\303\\251.txt"`."""
    if len(path) >= 2 and path[0] == path[-1] == '"':
        raw = codecs.escape_decode(path[1:-1].encode("utf-8"))[0]
        return raw.decode("utf-8", errors="replace")
    return path


def _header_path(rest: str) -> str:
    """The path of a `--- `/`+++ ` line, without `diff -u`'s tab-separated timestamp."""
    return _unquote(rest.split("\t", 1)[0].rstrip())


def _strip_prefixes(old: str, new: str) -> tuple[str, str]:
    """Drop git's `a/` and `b/` (both sides or /dev/null), then name /dev/null by the other side.

    CommitPackFT records an added or deleted file under its own path on both sides
    (`old_file == new_file`), so difflib never wrote /dev/null into a training prompt.
    """
    old_ok = old == DEV_NULL or old.startswith("a/")
    new_ok = new == DEV_NULL or new.startswith("b/")
    if old_ok and new_ok and not (old == new == DEV_NULL):
        old = old if old == DEV_NULL else old[2:]
        new = new if new == DEV_NULL else new[2:]
    if old == DEV_NULL:
        old = new
    if new == DEV_NULL:
        new = old
    return old, new


def _git_label(rest: str) -> str:
    """A name for a `diff --git a/x b/x` section (used only for files reported as skipped)."""
    cut = rest.rfind(" b/")
    name = rest[cut + 3 :] if cut != -1 else rest
    return _unquote(name.strip())


def _read_hunk(lines: list[str], start: int) -> tuple[str, int]:
    """The hunk whose header is lines[start], normalised; returns (text, next line index).

    Counts from the header decide where the hunk ends, so a removed line that reads
    `-- x` is never mistaken for the next file's `--- ` header.
    """
    match = HUNK_HEADER.match(lines[start])
    assert match is not None
    old_start, old_count, new_start, new_count = match.groups()
    old_left = 1 if old_count is None else int(old_count)
    new_left = 1 if new_count is None else int(new_count)
    old_range = old_start if old_count is None else f"{old_start},{old_count}"
    new_range = new_start if new_count is None else f"{new_start},{new_count}"
    body = [f"@@ -{old_range} +{new_range} @@"]  # git's function heading dropped
    index = start + 1
    while index < len(lines) and (old_left > 0 or new_left > 0):
        line = lines[index]
        if line.startswith("\\"):  # "\ No newline at end of file": difflib never writes it
            index += 1
            continue
        tag = line[:1]
        if tag in (" ", ""):  # an empty line is a context line whose space an editor trimmed
            old_left, new_left = old_left - 1, new_left - 1
            line = line or " "
        elif tag == "-":
            old_left -= 1
        elif tag == "+":
            new_left -= 1
        else:
            break  # a truncated hunk: keep what was there
        body.append(line)
        index += 1
    while index < len(lines) and lines[index].startswith("\\"):
        index += 1
    return "\n".join(body), index


def parse_diff(text: str) -> ParsedDiff:
    """Every file of a git diff, `git show`/format-patch output or plain unified diff.

    Text before the first file (a `git show` commit header) is ignored; files with no text
    hunks (binary files, pure renames, mode changes) are listed in `skipped`.
    """
    lines = _ANSI.sub("", text).splitlines()
    parsed = ParsedDiff()
    sections: list[_Section] = []
    current: _Section | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith(("diff --git ", "diff --cc ", "diff --combined ")):
            current = _Section(label=_git_label(line.split(" ", 2)[2]))
            sections.append(current)
        elif (
            line.startswith("--- ")
            and index + 1 < len(lines)
            and lines[index + 1].startswith("+++ ")
        ):
            if current is None or current.old is not None or current.hunks:
                current = _Section()  # a plain unified diff: `---` starts the next file
                sections.append(current)
            current.old = _header_path(line[4:])
            current.new = _header_path(lines[index + 1][4:])
            index += 2
            continue
        elif current is not None and current.old is not None and HUNK_HEADER.match(line):
            hunk, index = _read_hunk(lines, index)
            current.hunks.append(hunk)
            continue
        index += 1

    for section in sections:
        if section.old is None or section.new is None or not section.hunks:
            parsed.skipped.append(section.label or section.new or section.old or "?")
            continue
        old, new = _strip_prefixes(section.old, section.new)
        parsed.files.append(FileDiff(old, new, tuple(section.hunks)))
    return parsed


def looks_like_diff(text: str) -> bool:
    """True when the text holds at least one file change in unified-diff form."""
    return bool(parse_diff(text).files) or text.lstrip().startswith("diff --git ")
