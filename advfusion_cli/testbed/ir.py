"""A small typed program IR: one program, rendered into every testbed language.

Identifiers are tuples of lower-case word pieces (`("count", "vowels")`) so that each
renderer can spell them in its own convention (`count_vowels`, `countVowels`). Every
expression knows its type, because renderers need it (Java `equals` vs `==`, Go `string(r)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Type(Enum):
    INT = "int"
    STR = "str"
    LIST = "list[int]"
    BOOL = "bool"
    CHAR = "char"  # one character; only for locals/helper params, never read from stdin


Name = tuple[str, ...]

# Builtin operations: name -> (argument types, result type). Renderers implement each one.
BUILTINS: dict[str, tuple[tuple[Type, ...], Type]] = {
    "len_str": ((Type.STR,), Type.INT),
    "len_list": ((Type.LIST,), Type.INT),
    "list_get": ((Type.LIST, Type.INT), Type.INT),
    "char_at": ((Type.STR, Type.INT), Type.CHAR),
    "int_to_str": ((Type.INT,), Type.STR),
    "char_to_str": ((Type.CHAR,), Type.STR),
    "str_contains_char": ((Type.STR, Type.CHAR), Type.BOOL),
    "str_contains": ((Type.STR, Type.STR), Type.BOOL),
    "starts_with": ((Type.STR, Type.STR), Type.BOOL),
    "substring": ((Type.STR, Type.INT, Type.INT), Type.STR),
    "upper_str": ((Type.STR,), Type.STR),
    "lower_str": ((Type.STR,), Type.STR),
    "upper_char": ((Type.CHAR,), Type.CHAR),
    "lower_char": ((Type.CHAR,), Type.CHAR),
    "char_code": ((Type.CHAR,), Type.INT),
    "char_from_code": ((Type.INT,), Type.CHAR),
    "repeat_str": ((Type.STR, Type.INT), Type.STR),
    "empty_list": ((), Type.LIST),
}

ARITH_OPS = ("+", "-", "*", "/", "%")  # "/" is integer division (operands kept >= 0)
COMPARE_OPS = ("==", "!=", "<", "<=", ">", ">=")


class Expr:
    """Base of all expressions; subclasses expose `type`."""

    type: Type


@dataclass(frozen=True)
class IntLit(Expr):
    value: int
    type: Type = field(default=Type.INT, init=False)


@dataclass(frozen=True)
class StrLit(Expr):
    value: str
    type: Type = field(default=Type.STR, init=False)


@dataclass(frozen=True)
class CharLit(Expr):
    value: str
    type: Type = field(default=Type.CHAR, init=False)


@dataclass(frozen=True)
class BoolLit(Expr):
    value: bool
    type: Type = field(default=Type.BOOL, init=False)


@dataclass(frozen=True)
class Var(Expr):
    name: Name
    type: Type


@dataclass(frozen=True)
class Neg(Expr):
    operand: Expr
    type: Type = field(default=Type.INT, init=False)


@dataclass(frozen=True)
class Not(Expr):
    operand: Expr
    type: Type = field(default=Type.BOOL, init=False)


@dataclass(frozen=True)
class Arith(Expr):
    op: str
    left: Expr
    right: Expr
    type: Type = field(default=Type.INT, init=False)


@dataclass(frozen=True)
class Concat(Expr):
    left: Expr  # STR
    right: Expr  # STR
    type: Type = field(default=Type.STR, init=False)


@dataclass(frozen=True)
class Compare(Expr):
    op: str
    left: Expr
    right: Expr
    type: Type = field(default=Type.BOOL, init=False)


@dataclass(frozen=True)
class Logic(Expr):
    op: str  # "and" | "or"
    left: Expr
    right: Expr
    type: Type = field(default=Type.BOOL, init=False)


@dataclass(frozen=True)
class Call(Expr):
    func: Name
    args: tuple[Expr, ...]
    type: Type


@dataclass(frozen=True)
class Builtin(Expr):
    op: str
    args: tuple[Expr, ...]

    @property
    def type(self) -> Type:  # type: ignore[override]
        return BUILTINS[self.op][1]


class Stmt:
    """Base of all statements."""


@dataclass(frozen=True)
class Declare(Stmt):
    var: Var
    value: Expr


@dataclass(frozen=True)
class Assign(Stmt):
    var: Var
    value: Expr


@dataclass(frozen=True)
class AugAssign(Stmt):
    var: Var
    op: str  # "+", "-", "*" on ints; "+" on strings
    value: Expr


@dataclass(frozen=True)
class ListAppend(Stmt):
    target: Var
    value: Expr


@dataclass(frozen=True)
class If(Stmt):
    cond: Expr
    then: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...] = ()


@dataclass(frozen=True)
class ForRange(Stmt):
    """`for var in range(start, stop, step)` with Python semantics; step is a nonzero literal."""

    var: Var
    start: Expr
    stop: Expr
    step: int
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class ForEach(Stmt):
    """Iterate a list (var: INT) or the characters of a string (var: CHAR)."""

    var: Var
    iterable: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class While(Stmt):
    cond: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Break(Stmt):
    pass


@dataclass(frozen=True)
class Return(Stmt):
    value: Expr


@dataclass(frozen=True)
class Print(Stmt):
    """Debug output inside a function (only used by commit edits that remove it)."""

    value: Expr


@dataclass(frozen=True)
class Function:
    name: Name
    params: tuple[Var, ...]
    returns: Type
    body: tuple[Stmt, ...]
    summary: str  # one imperative English sentence, e.g. "Count the vowels in word."
    defaults: tuple[tuple[Name, Expr], ...] = ()  # trailing parameter defaults
    documented: bool = False  # render `summary` as a doc comment


@dataclass(frozen=True)
class Program:
    functions: tuple[Function, ...]  # helpers first, entry point last

    @property
    def entry(self) -> Function:
        return self.functions[-1]

    def function(self, name: Name) -> Function:
        for func in self.functions:
            if func.name == name:
                return func
        raise KeyError(name)


def child_blocks(stmt: Stmt) -> tuple[tuple[Stmt, ...], ...]:
    """Nested statement blocks of one statement (empty for simple statements)."""
    if isinstance(stmt, If):
        return (stmt.then, stmt.orelse)
    if isinstance(stmt, ForRange | ForEach | While):
        return (stmt.body,)
    return ()


def walk_stmts(body: tuple[Stmt, ...]):
    """Every statement in a block, depth first."""
    for stmt in body:
        yield stmt
        for block in child_blocks(stmt):
            yield from walk_stmts(block)


def stmt_exprs(stmt: Stmt) -> tuple[Expr, ...]:
    """Expressions held directly by one statement."""
    if isinstance(stmt, Declare | Assign | AugAssign):
        return (stmt.var, stmt.value)
    if isinstance(stmt, ListAppend):
        return (stmt.target, stmt.value)
    if isinstance(stmt, If | While):
        return (stmt.cond,)
    if isinstance(stmt, ForRange):
        return (stmt.var, stmt.start, stmt.stop)
    if isinstance(stmt, ForEach):
        return (stmt.var, stmt.iterable)
    if isinstance(stmt, Return | Print):
        return (stmt.value,)
    return ()


def sub_exprs(expr: Expr) -> tuple[Expr, ...]:
    if isinstance(expr, Neg | Not):
        return (expr.operand,)
    if isinstance(expr, Arith | Concat | Compare | Logic):
        return (expr.left, expr.right)
    if isinstance(expr, Call | Builtin):
        return expr.args
    return ()


def walk_expr(expr: Expr):
    yield expr
    for child in sub_exprs(expr):
        yield from walk_expr(child)


def function_exprs(func: Function):
    """Every expression in a function body, depth first."""
    for stmt in walk_stmts(func.body):
        for expr in stmt_exprs(stmt):
            yield from walk_expr(expr)
