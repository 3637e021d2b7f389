"""One table of programming-language names: every dataset spelling -> one canonical id.

CommitPackFT writes `Python`/`JavaScript`, xCodeEval writes compilers (`GNU C++17`,
`PyPy 3`, `Node.js`) and clusters (`Javascript`), CodeTransOcean uses keys such as `C++`,
`C#`, `VB`. All of them map to lower-case ids (`cpp`, `csharp`, `javascript`, ...), and
each id has one display name used inside prompts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from advfusion_cli.errors import unknown_name_error


@dataclass(frozen=True)
class Language:
    id: str
    display: str  # the name written into prompts (CodeTransOcean's key spelling where it has one)
    aliases: tuple[str, ...] = ()
    commitpack_config: str | None = None  # CommitPackFT config name when it differs from `id`


# Display names follow CodeTransOcean's language keys (the only dataset whose prompts carry
# language names), so a translation prompt reads exactly like the dataset's own keys.
_TABLE: tuple[Language, ...] = (
    Language("python", "Python", ("py", "python3", "python2", "pypy", "cpython")),
    Language("javascript", "JavaScript", ("js", "node", "node.js", "nodejs", "ecmascript")),
    Language("typescript", "TypeScript", ("ts",)),
    Language("java", "Java"),
    Language("go", "Go", ("golang",)),
    Language("ruby", "Ruby", ("rb",)),
    Language("c", "C"),
    Language("cpp", "C++", ("c++", "cxx", "cplusplus", "c-plus-plus", "clang++", "g++"), "c++"),
    Language("csharp", "C#", ("c#", "c-sharp", "c sharp", "cs", ".net c#"), "c#"),
    Language("php", "PHP"),
    Language("rust", "Rust", ("rs",)),
    Language("kotlin", "Kotlin", ("kt",)),
    Language("scala", "Scala"),
    Language("swift", "Swift"),
    Language("julia", "Julia", ("jl",)),
    Language("lua", "Lua"),
    Language("r", "R"),
    Language(
        "vb", "VB", ("visual basic", "visual-basic", "visual-basic-.net", "vb.net"), "visual-basic"
    ),
    Language("perl", "Perl"),
    Language("haskell", "Haskell"),
    Language("ocaml", "OCaml"),
    Language("fsharp", "F#", ("f#", "f-sharp"), "f#"),
    Language("d", "D"),
    Language("pascal", "Pascal", ("fpc", "pascalabc.net", "free pascal")),
    Language("delphi", "Delphi"),
    Language("awk", "AWK"),
    Language("ada", "Ada"),
    Language("arturo", "Arturo"),
    Language("autohotkey", "AutoHotKey"),
    Language("bbc-basic", "BBC_Basic", ("bbc_basic", "bbc basic")),
    Language("cobol", "COBOL"),
    Language("clojure", "Clojure"),
    Language("common-lisp", "Common_Lisp", ("common_lisp", "common lisp")),
    Language("elixir", "Elixir"),
    Language("erlang", "Erlang"),
    Language("factor", "Factor"),
    Language("forth", "Forth"),
    Language("fortran", "Fortran"),
    Language("groovy", "Groovy"),
    Language("icon", "Icon"),
    Language("j", "J"),
    Language("matlab", "MATLAB"),
    Language("mathematica", "Mathematica"),
    Language("nim", "Nim"),
    Language("powershell", "PowerShell"),
    Language("rexx", "REXX"),
    Language("racket", "Racket"),
    Language("tcl", "Tcl"),
    Language("shell", "Shell", ("bash", "sh")),
)

LANGUAGES: dict[str, Language] = {lang.id: lang for lang in _TABLE}

_ALIASES: dict[str, str] = {}
for _lang in _TABLE:
    for _name in (_lang.id, _lang.display, *_lang.aliases, _lang.commitpack_config or _lang.id):
        _ALIASES[_name.lower()] = _lang.id

# Compiler/runtime decorations in xCodeEval's `lang` ("GNU C++17 (64)", "Clang++20
# Diagnostics", "PyPy 3-64", "MS C#", "Mono C#", ".NET Core C#", "Delphi7", "Kotlin 1.4").
_PREFIXES = ("gnu ", "ms ", "mono ", ".net core ", ".net ")
_SUFFIX = re.compile(r"(\s*\(64\)|\s+diagnostics|-64)$")
_VERSION = re.compile(r"[\s_-]*\d+(\.\d+)*$")


def normalize_language(name: str) -> str | None:
    """Canonical id for any dataset spelling, or None when the name is not a known language."""
    key = name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix) :]
    key = _SUFFIX.sub("", key)
    if key in _ALIASES:
        return _ALIASES[key]
    # Strip trailing versions one at a time: "g++17 7.3.0" -> "g++17" -> "g++".
    while (shorter := _VERSION.sub("", key)) != key:
        key = shorter
        if key in _ALIASES:
            return _ALIASES[key]
    return None


def canonical_language(name: str) -> str:
    """Like `normalize_language`, but an unknown name is a UserError with a suggestion."""
    lang = normalize_language(name)
    if lang is None:
        raise unknown_name_error("language", name, LANGUAGES)
    return lang


def display_name(lang_id: str) -> str:
    """The prompt spelling of a canonical id (`cpp` -> `C++`)."""
    return LANGUAGES[lang_id].display


def commitpack_config(lang_id: str) -> str:
    """CommitPackFT's config (folder) name for a canonical id (`cpp` -> `c++`)."""
    return LANGUAGES[lang_id].commitpack_config or lang_id
