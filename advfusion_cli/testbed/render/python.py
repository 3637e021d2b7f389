"""Python renderer: snake_case, type hints, `range`, `//`, top-level stdin harness."""

from __future__ import annotations

from ..ir import (
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
    Neg,
    Not,
    Print,
    Program,
    Return,
    Stmt,
    StrLit,
    Type,
    Var,
    While,
)
from ..naming import snake
from .common import (
    ADD,
    AND,
    ATOM,
    COMPARE,
    MUL,
    NOT_KEYWORD,
    OR,
    POSTFIX,
    UNARY,
    FileLayout,
    Rendered,
    binary,
    input_plan,
    quoted,
    wrap,
)

INDENT = "    "
TYPES = {Type.INT: "int", Type.STR: "str", Type.LIST: "list[int]", Type.BOOL: "bool"}
TYPES[Type.CHAR] = "str"


def expr(e: Expr) -> Rendered:
    if isinstance(e, IntLit):
        return str(e.value), UNARY if e.value < 0 else ATOM
    if isinstance(e, StrLit | CharLit):
        return quoted(e.value), ATOM
    if isinstance(e, BoolLit):
        return ("True" if e.value else "False"), ATOM
    if isinstance(e, Var):
        return snake(e.name), ATOM
    if isinstance(e, Neg):
        return "-" + wrap(expr(e.operand), UNARY), UNARY
    if isinstance(e, Not):
        return "not " + wrap(expr(e.operand), NOT_KEYWORD), NOT_KEYWORD
    if isinstance(e, Arith):
        op = "//" if e.op == "/" else e.op
        return binary(expr(e.left), op, expr(e.right), ADD if op in "+-" else MUL)
    if isinstance(e, Concat):
        return binary(expr(e.left), "+", expr(e.right), ADD)
    if isinstance(e, Compare):
        left, right = wrap(expr(e.left), COMPARE + 1), wrap(expr(e.right), COMPARE + 1)
        return f"{left} {e.op} {right}", COMPARE
    if isinstance(e, Logic):
        prec = AND if e.op == "and" else OR
        return binary(expr(e.left), e.op, expr(e.right), prec)
    if isinstance(e, Call):
        return f"{snake(e.func)}({', '.join(expr(a)[0] for a in e.args)})", ATOM
    if isinstance(e, Builtin):
        return builtin(e)
    raise TypeError(e)


def builtin(e: Builtin) -> Rendered:
    args = [expr(a) for a in e.args]
    recv = wrap(args[0], POSTFIX) if args else ""
    plain = [a[0] for a in args]
    op = e.op
    if op in ("len_str", "len_list"):
        return f"len({plain[0]})", ATOM
    if op in ("list_get", "char_at"):
        return f"{recv}[{plain[1]}]", POSTFIX
    if op == "int_to_str":
        return f"str({plain[0]})", ATOM
    if op == "char_to_str":
        return args[0]
    if op in ("str_contains_char", "str_contains"):
        return f"{wrap(args[1], COMPARE + 1)} in {wrap(args[0], COMPARE + 1)}", COMPARE
    if op == "starts_with":
        return f"{recv}.startswith({plain[1]})", POSTFIX
    if op == "substring":
        start = "" if plain[1] == "0" else plain[1]
        return f"{recv}[{start}:{plain[2]}]", POSTFIX
    if op in ("upper_str", "upper_char"):
        return f"{recv}.upper()", POSTFIX
    if op in ("lower_str", "lower_char"):
        return f"{recv}.lower()", POSTFIX
    if op == "char_code":
        return f"ord({plain[0]})", ATOM
    if op == "char_from_code":
        return f"chr({plain[0]})", ATOM
    if op == "repeat_str":
        return binary(args[0], "*", args[1], MUL)
    if op == "empty_list":
        return "[]", ATOM
    raise KeyError(op)


def block(body: tuple[Stmt, ...]) -> list[str]:
    lines: list[str] = []
    for s in body:
        lines.extend(stmt(s))
    return [INDENT + line for line in lines] or [INDENT + "pass"]


def stmt(s: Stmt) -> list[str]:
    if isinstance(s, Declare | Assign):
        return [f"{snake(s.var.name)} = {expr(s.value)[0]}"]
    if isinstance(s, AugAssign):
        return [f"{snake(s.var.name)} {s.op}= {expr(s.value)[0]}"]
    if isinstance(s, ListAppend):
        return [f"{snake(s.target.name)}.append({expr(s.value)[0]})"]
    if isinstance(s, If):
        lines = [f"if {expr(s.cond)[0]}:", *block(s.then)]
        orelse = s.orelse
        while len(orelse) == 1 and isinstance(orelse[0], If):
            lines += [f"elif {expr(orelse[0].cond)[0]}:", *block(orelse[0].then)]
            orelse = orelse[0].orelse
        if orelse:
            lines += ["else:", *block(orelse)]
        return lines
    if isinstance(s, ForRange):
        start, stop = expr(s.start)[0], expr(s.stop)[0]
        if s.step != 1:
            bounds = f"{start}, {stop}, {s.step}"
        else:
            bounds = stop if start == "0" else f"{start}, {stop}"
        return [f"for {snake(s.var.name)} in range({bounds}):", *block(s.body)]
    if isinstance(s, ForEach):
        return [f"for {snake(s.var.name)} in {expr(s.iterable)[0]}:", *block(s.body)]
    if isinstance(s, While):
        return [f"while {expr(s.cond)[0]}:", *block(s.body)]
    if isinstance(s, Break):
        return ["break"]
    if isinstance(s, Return):
        return [f"return {expr(s.value)[0]}"]
    if isinstance(s, Print):
        return [f"print({expr(s.value)[0]})"]
    raise TypeError(s)


def function(func: Function) -> list[str]:
    defaults = dict(func.defaults)
    params = []
    for p in func.params:
        text = f"{snake(p.name)}: {TYPES[p.type]}"
        if p.name in defaults:
            text += f" = {expr(defaults[p.name])[0]}"
        params.append(text)
    lines = [f"def {snake(func.name)}({', '.join(params)}) -> {TYPES[func.returns]}:"]
    if func.documented:
        lines.append(f'{INDENT}"""{func.summary}"""')
    return lines + block(func.body)


def module(program: Program, layout: FileLayout | None = None) -> str:
    chunks = ["\n".join(function(f)) for f in program.functions]
    return "\n\n\n".join(chunks) + "\n"


def full_program(program: Program) -> str:
    entry = program.entry
    lines: list[str] = []
    for item in input_plan(entry):
        name = snake(item.param)
        if item.type == Type.LIST:
            lines += ["input()", f"{name} = list(map(int, input().split()))"]
        elif item.type == Type.INT:
            lines.append(f"{name} = int(input())")
        elif item.type == Type.BOOL:
            lines.append(f'{name} = input().strip() == "1"')
        else:
            lines.append(f"{name} = input()")
    call = f"{snake(entry.name)}({', '.join(snake(p.name) for p in entry.params)})"
    if entry.returns == Type.BOOL:
        lines.append(f'print("YES" if {call} else "NO")')
    elif entry.returns == Type.LIST:
        lines.append(f'print(" ".join(map(str, {call})))')
    else:
        lines.append(f"print({call})")
    return module(program) + "\n\n" + "\n".join(lines) + "\n"
