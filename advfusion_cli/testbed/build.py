"""Terse constructors for IR trees, so program families read like the code they produce."""

from __future__ import annotations

from .ir import (
    Arith,
    BoolLit,
    Builtin,
    Call,
    CharLit,
    Compare,
    Concat,
    Expr,
    Function,
    IntLit,
    Logic,
    Name,
    Not,
    StrLit,
    Type,
    Var,
)

INT, STR, LIST, BOOL, CHAR = Type.INT, Type.STR, Type.LIST, Type.BOOL, Type.CHAR


def name(words: str | Name) -> Name:
    return tuple(words.split("_")) if isinstance(words, str) else tuple(words)


def var(words: str | Name, type_: Type) -> Var:
    return Var(name(words), type_)


def lit(value: int | str | bool) -> Expr:
    if isinstance(value, bool):
        return BoolLit(value)
    if isinstance(value, int):
        return IntLit(value)
    return StrLit(value)


def char(value: str) -> CharLit:
    return CharLit(value)


def add(a: Expr, b: Expr | int) -> Expr:
    b = lit(b) if isinstance(b, int) else b
    if a.type == STR:
        return Concat(a, b)
    return Arith("+", a, b)


def sub(a: Expr, b: Expr | int) -> Arith:
    return Arith("-", a, lit(b) if isinstance(b, int) else b)


def mul(a: Expr, b: Expr | int) -> Arith:
    return Arith("*", a, lit(b) if isinstance(b, int) else b)


def div(a: Expr, b: Expr | int) -> Arith:
    return Arith("/", a, lit(b) if isinstance(b, int) else b)


def mod(a: Expr, b: Expr | int) -> Arith:
    return Arith("%", a, lit(b) if isinstance(b, int) else b)


def cmp(op: str, a: Expr, b: Expr | int | str) -> Compare:
    if isinstance(b, str) and a.type == CHAR:
        return Compare(op, a, CharLit(b))
    return Compare(op, a, b if isinstance(b, Expr) else lit(b))


def and_(a: Expr, b: Expr) -> Logic:
    return Logic("and", a, b)


def or_(a: Expr, b: Expr) -> Logic:
    return Logic("or", a, b)


def not_(a: Expr) -> Not:
    return Not(a)


def length(x: Expr) -> Builtin:
    return Builtin("len_list" if x.type == LIST else "len_str", (x,))


def get(x: Expr, index: Expr | int) -> Builtin:
    index = lit(index) if isinstance(index, int) else index
    return Builtin("list_get" if x.type == LIST else "char_at", (x, index))


def builtin(op: str, *args: Expr) -> Builtin:
    return Builtin(op, tuple(args))


def to_str(x: Expr) -> Builtin:
    return Builtin("char_to_str" if x.type == CHAR else "int_to_str", (x,))


def call(func: Function, *args: Expr) -> Call:
    return Call(func.name, tuple(args), func.returns)
