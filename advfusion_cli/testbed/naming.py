"""Identifier spelling per language from shared word pieces (`count_vowels` / `countVowels`)."""

from __future__ import annotations

from .ir import Name

LANGUAGES = ("python", "javascript", "java", "go", "ruby")

# Languages whose functions and locals are camelCase; the others use snake_case.
CAMEL_CASE = frozenset({"javascript", "java", "go"})

# Words no generated identifier may spell, in any language (keywords, common builtins, and
# the names the stdin/stdout harnesses use for their own locals).
RESERVED = frozenset(
    [
        "and",
        "as",
        "assert",
        "async",
        "await",
        "break",
        "case",
        "catch",
        "char",
        "class",
        "const",
        "continue",
        "def",
        "default",
        "defer",
        "del",
        "delete",
        "do",
        "elif",
        "else",
        "elsif",
        "end",
        "ensure",
        "enum",
        "eval",
        "export",
        "extends",
        "false",
        "final",
        "finally",
        "for",
        "from",
        "func",
        "function",
        "global",
        "go",
        "goto",
        "if",
        "import",
        "in",
        "instanceof",
        "int",
        "interface",
        "is",
        "lambda",
        "let",
        "long",
        "loop",
        "map",
        "new",
        "next",
        "nil",
        "none",
        "nonlocal",
        "not",
        "null",
        "or",
        "package",
        "pass",
        "private",
        "protected",
        "public",
        "raise",
        "range",
        "redo",
        "rescue",
        "retry",
        "return",
        "select",
        "self",
        "short",
        "static",
        "str",
        "string",
        "struct",
        "super",
        "switch",
        "then",
        "this",
        "throw",
        "throws",
        "true",
        "try",
        "type",
        "typeof",
        "undef",
        "unless",
        "until",
        "var",
        "void",
        "when",
        "while",
        "with",
        "yield",
        "len",
        "list",
        "print",
        "puts",
        "input",
        "sum",
        "max",
        "min",
        "abs",
        "sorted",
        "filter",
        "reversed",
        "object",
        "byte",
        "rune",
        "float",
        "double",
        "boolean",
        "bool",
        "array",
        "main",
        "args",
        "reader",
        "scanner",
        "tokens",
        "lines",
        "field",
        "parts",
        "out",
        "console",
        "math",
        "system",
        "strings",
        "strconv",
        "fmt",
        "bufio",
        "os",
        "unicode",
        "sys",
        "fs",
        "require",
        "module",
        "exports",
        "process",
        "gets",
        "chomp",
        "split",
        "readints",
        "collectors",
    ]
)


def snake(name: Name) -> str:
    return "_".join(name)


def camel(name: Name) -> str:
    return name[0] + "".join(piece.capitalize() for piece in name[1:])


def pascal(name: Name) -> str:
    return "".join(piece.capitalize() for piece in name)


def kebab(name: Name) -> str:
    return "-".join(name)


def identifier(name: Name, language: str) -> str:
    """How `language` spells a function, parameter or local made of these word pieces."""
    return camel(name) if language in CAMEL_CASE else snake(name)


def is_reserved(name: Name) -> bool:
    """True when any language's spelling of `name` is a keyword, builtin or harness name."""
    spellings = {snake(name), camel(name), camel(name).lower()}
    return bool(spellings & RESERVED)
