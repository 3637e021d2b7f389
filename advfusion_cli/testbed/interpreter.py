"""Reference semantics of the IR: evaluates a program in Python to get the expected outputs.

The interpreter is deliberately stricter than any one language: whatever the five target
languages could disagree on (negative `/` or `%`, 32-bit overflow, out-of-range indexing,
non-printable characters, runaway loops) raises `Divergence`, and the generator then drops
the input or the program. What passes here computes the same result everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from .ir import (
    Arith,
    Assign,
    AugAssign,
    BoolLit,
    Break,
    Builtin,
    Call,
    CharLit,
    Compare,
    Concat,
    Declare,
    Expr,
    ForEach,
    ForRange,
    Function,
    If,
    IntLit,
    ListAppend,
    Logic,
    Name,
    Neg,
    Not,
    Print,
    Program,
    Return,
    Stmt,
    StrLit,
    Var,
    While,
)

INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # Java's int: the narrowest integer among the targets
MAX_STEPS = 20_000
MAX_STR = 400
MAX_LIST = 400


class Divergence(Exception):
    """The program (on this input) leaves the subset where every language agrees."""


class _Return(Exception):
    def __init__(self, value):
        self.value = value


class _Break(Exception):
    pass


def _int(value: int) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise Divergence(f"int overflow: {value}")
    return value


def _char(value: str) -> str:
    if len(value) != 1 or not 32 <= ord(value) <= 126:
        raise Divergence(f"non-printable char {value!r}")
    return value


def _str(value: str) -> str:
    if len(value) > MAX_STR:
        raise Divergence("string too long")
    return value


def _builtin(op: str, args: list):
    if op in ("len_str", "len_list"):
        return len(args[0])
    if op in ("list_get", "char_at"):
        seq, index = args
        if not 0 <= index < len(seq):
            raise Divergence(f"index {index} out of range")
        return seq[index]
    if op == "int_to_str":
        return str(args[0])
    if op == "char_to_str":
        return args[0]
    if op in ("str_contains_char", "str_contains"):
        return args[1] in args[0]
    if op == "starts_with":
        return args[0].startswith(args[1])
    if op == "substring":
        text, start, stop = args
        if not 0 <= start <= stop <= len(text):
            raise Divergence("substring bounds")
        return text[start:stop]
    if op in ("upper_str", "upper_char"):
        return args[0].upper()
    if op in ("lower_str", "lower_char"):
        return args[0].lower()
    if op == "char_code":
        return ord(args[0])
    if op == "char_from_code":
        if not 32 <= args[0] <= 126:
            raise Divergence("char code out of printable ASCII")
        return chr(args[0])
    if op == "repeat_str":
        if args[1] < 0:
            raise Divergence("negative repeat")
        return _str(args[0] * args[1])
    if op == "empty_list":
        return []
    raise KeyError(op)


def _arith(op: str, left: int, right: int) -> int:
    if op == "+":
        return _int(left + right)
    if op == "-":
        return _int(left - right)
    if op == "*":
        return _int(left * right)
    # Division and modulo round differently across languages for negative operands.
    if right <= 0 or left < 0:
        raise Divergence(f"{left} {op} {right}")
    return left // right if op == "/" else left % right


_COMPARE = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


_LITERALS = (IntLit, StrLit, CharLit, BoolLit)


class Interpreter:
    """Runs one program; `run(args)` calls the entry function.

    Each function body is compiled once into nested Python closures (a tree-walking
    interpreter that re-dispatched on node types was the generator's bottleneck).
    """

    def __init__(self, program: Program):
        self.program = program
        self.steps = 0
        self.compiled: dict[Name, tuple[Function, Callable[[dict], None]]] = {}
        for func in program.functions:  # helpers precede their callers
            self.compiled[func.name] = (func, self.block(func.body))

    def run(self, args: tuple):
        self.steps = 0
        return self.call(self.program.entry.name, list(args))

    def call(self, name: Name, args: list):
        func, body = self.compiled[name]
        self.tick()
        env = {param.name: _copy(arg) for param, arg in zip(func.params, args, strict=True)}
        try:
            body(env)
        except _Return as ret:
            return ret.value
        raise Divergence(f"{name} ended without return")

    def tick(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise Divergence("too many steps")

    def block(self, body: tuple[Stmt, ...]) -> Callable[[dict], None]:
        stmts = [self.stmt(s) for s in body]

        def run_block(env: dict) -> None:
            for run_stmt in stmts:
                run_stmt(env)

        return run_block

    def stmt(self, stmt: Stmt) -> Callable[[dict], None]:
        if isinstance(stmt, Declare | Assign):
            key, value = stmt.var.name, self.expr(stmt.value)

            def assign(env: dict) -> None:
                env[key] = value(env)

            return assign
        if isinstance(stmt, AugAssign):
            key, value, op = stmt.var.name, self.expr(stmt.value), stmt.op
            if stmt.var.type.value == "str":

                def append_text(env: dict) -> None:
                    env[key] = _str(env[key] + value(env))

                return append_text

            def update(env: dict) -> None:
                env[key] = _arith(op, env[key], value(env))

            return update
        if isinstance(stmt, ListAppend):
            key, value = stmt.target.name, self.expr(stmt.value)

            def append(env: dict) -> None:
                target = env[key]
                if len(target) >= MAX_LIST:
                    raise Divergence("list too long")
                target.append(value(env))

            return append
        if isinstance(stmt, If):
            cond, then, orelse = (
                self.expr(stmt.cond),
                self.block(stmt.then),
                self.block(stmt.orelse),
            )

            def branch(env: dict) -> None:
                (then if cond(env) else orelse)(env)

            return branch
        if isinstance(stmt, ForRange):
            return self.for_range(stmt)
        if isinstance(stmt, ForEach):
            key, source, body = stmt.var.name, self.expr(stmt.iterable), self.block(stmt.body)

            def for_each(env: dict) -> None:
                # Iterate over a snapshot: the loop body may not mutate what it iterates.
                for item in list(source(env)):
                    env[key] = item
                    self.tick()
                    try:
                        body(env)
                    except _Break:
                        break

            return for_each
        if isinstance(stmt, While):
            cond, body = self.expr(stmt.cond), self.block(stmt.body)

            def while_loop(env: dict) -> None:
                while cond(env):
                    self.tick()
                    try:
                        body(env)
                    except _Break:
                        break

            return while_loop
        if isinstance(stmt, Break):

            def break_loop(env: dict) -> None:
                raise _Break()

            return break_loop
        if isinstance(stmt, Return):
            value = self.expr(stmt.value)

            def return_value(env: dict) -> None:
                raise _Return(value(env))

            return return_value
        if isinstance(stmt, Print):
            shown = self.expr(stmt.value)

            def show(env: dict) -> None:
                shown(env)  # evaluated for its errors; printed output is not the result

            return show
        raise TypeError(f"unknown statement {stmt!r}")

    def for_range(self, stmt: ForRange) -> Callable[[dict], None]:
        # Bounds are evaluated once (as in Python); C-style loops in the other languages
        # re-evaluate `stop`, so the validator forbids changing a bound inside the loop.
        key, step, body = stmt.var.name, stmt.step, self.block(stmt.body)
        start, stop = self.expr(stmt.start), self.expr(stmt.stop)

        def loop(env: dict) -> None:
            for value in range(start(env), stop(env), step):
                env[key] = value
                self.tick()
                try:
                    body(env)
                except _Break:
                    break

        return loop

    def expr(self, expr: Expr) -> Callable[[dict], object]:
        if isinstance(expr, _LITERALS):
            constant = expr.value
            return lambda env: constant
        if isinstance(expr, Var):
            key = expr.name
            return lambda env: env[key]
        if isinstance(expr, Neg):
            operand = self.expr(expr.operand)
            return lambda env: _int(-operand(env))
        if isinstance(expr, Not):
            operand = self.expr(expr.operand)
            return lambda env: not operand(env)
        if isinstance(expr, Arith):
            op, left, right = expr.op, self.expr(expr.left), self.expr(expr.right)
            return lambda env: _arith(op, left(env), right(env))
        if isinstance(expr, Concat):
            left, right = self.expr(expr.left), self.expr(expr.right)
            return lambda env: _str(left(env) + right(env))
        if isinstance(expr, Compare):
            test, left, right = _COMPARE[expr.op], self.expr(expr.left), self.expr(expr.right)
            return lambda env: test(left(env), right(env))
        if isinstance(expr, Logic):
            left, right = self.expr(expr.left), self.expr(expr.right)
            if expr.op == "and":
                return lambda env: left(env) and right(env)
            return lambda env: left(env) or right(env)
        if isinstance(expr, Call):
            func, args = expr.func, [self.expr(a) for a in expr.args]
            return lambda env: self.call(func, [arg(env) for arg in args])
        if isinstance(expr, Builtin):
            op, args = expr.op, [self.expr(a) for a in expr.args]
            if expr.type.value == "char":
                return lambda env: _char(_builtin(op, [arg(env) for arg in args]))
            return lambda env: _builtin(op, [arg(env) for arg in args])
        raise TypeError(f"unknown expression {expr!r}")


def _copy(value):
    return list(value) if isinstance(value, list) else value


def evaluate(program: Program, args: tuple):
    """The entry function's result on `args`; raises `Divergence` outside the safe subset."""
    return Interpreter(program).run(args)
