"""Pieces every renderer shares: operator precedence, literals, file layouts, stdin format."""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import (
    Assign,
    AugAssign,
    Builtin,
    Expr,
    Function,
    IntLit,
    Name,
    Print,
    Program,
    Type,
    function_exprs,
    walk_stmts,
)

# Precedence levels (higher binds tighter). Python's `not` sits below comparisons.
OR, AND, NOT_KEYWORD, COMPARE, ADD, MUL, UNARY, POSTFIX, ATOM = range(1, 10)

Rendered = tuple[str, int]  # source text and the precedence of its outermost operator


def wrap(rendered: Rendered, minimum: int) -> str:
    """Parenthesize when the expression binds looser than its context needs."""
    text, prec = rendered
    return f"({text})" if prec < minimum else text


def binary(left: Rendered, op: str, right: Rendered, prec: int) -> Rendered:
    """Left-associative binary operator; the right operand is wrapped at equal precedence."""
    return f"{wrap(left, prec)} {op} {wrap(right, prec + 1)}", prec


def quoted(value: str) -> str:
    """A double-quoted literal valid in all five languages (values are printable ASCII)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def char_quoted(value: str) -> str:
    """A single-quoted char literal (Java `char`, Go rune)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def reassigned(func: Function) -> set[Name]:
    """Locals assigned after their declaration (JavaScript `let` rather than `const`)."""
    return {s.var.name for s in walk_stmts(func.body) if isinstance(s, Assign | AugAssign)}


def builtins_used(program: Program) -> set[str]:
    return {
        expr.op
        for func in program.functions
        for expr in function_exprs(func)
        if isinstance(expr, Builtin)
    }


def has_print(program: Program) -> bool:
    return any(isinstance(s, Print) for f in program.functions for s in walk_stmts(f.body))


def uses_type(program: Program, wanted: Type) -> bool:
    for func in program.functions:
        if func.returns == wanted or any(p.type == wanted for p in func.params):
            return True
        if any(expr.type == wanted for expr in function_exprs(func)):
            return True
    return False


def third_person(summary: str) -> str:
    """'Count the vowels.' -> 'counts the vowels.' (Go doc comments start with the name)."""
    verb, _, rest = summary.partition(" ")
    verb = verb.lower()
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        verb = verb[:-1] + "ies"
    elif verb.endswith(("s", "sh", "ch", "x", "z")):
        verb += "es"
    else:
        verb += "s"
    return f"{verb} {rest}".rstrip()


@dataclass(frozen=True)
class FileLayout:
    """Where a library file lives: its package/namespace and its module (file/class) name."""

    package: Name  # e.g. ("billing",) -> Python package, Go package, Java com.<owner>.billing
    module: Name  # e.g. ("price", "stats") -> price_stats.py, PriceStats.java
    owner: str = "acme"  # used in the Java package


@dataclass(frozen=True)
class InputLine:
    """One parameter's place in stdin: which line(s) hold it."""

    param: Name
    type: Type
    line: int  # index of its (last) line: lists use two lines, count then values


def input_plan(func: Function) -> list[InputLine]:
    """Stdin layout shared by every harness: one line per value, lists as `n` then values."""
    plan, line = [], 0
    for param in func.params:
        if param.type == Type.LIST:
            line += 1  # the count line precedes the values
        plan.append(InputLine(param.name, param.type, line))
        line += 1
    return plan


def indent_lines(lines: list[str], unit: str, depth: int = 1) -> list[str]:
    return [unit * depth + line if line else line for line in lines]


def loop_condition(name: str, step: int, stop: Expr, stop_text: str) -> str:
    """C-style condition of a range loop: `i < n`, or `i >= 0` for `range(n - 1, -1, -1)`."""
    if step > 0:
        return f"{name} < {stop_text}"
    if isinstance(stop, IntLit):
        return f"{name} >= {stop.value + 1}"
    return f"{name} > {stop_text}"
