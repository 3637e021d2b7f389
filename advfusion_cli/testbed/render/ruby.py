"""Ruby renderer: `def ... end`, snake_case, blocks (`each`, `times`), implicit last return."""

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
from ..naming import pascal, snake
from .common import (
    ADD,
    AND,
    ATOM,
    COMPARE,
    MUL,
    OR,
    POSTFIX,
    UNARY,
    FileLayout,
    Rendered,
    binary,
    indent_lines,
    input_plan,
    quoted,
    wrap,
)

INDENT = "  "
# Single statements that read naturally as `statement if condition`.
MODIFIABLE = (Return, Break, AugAssign, Assign, ListAppend)


def expr(e: Expr) -> Rendered:
    if isinstance(e, IntLit):
        return str(e.value), UNARY if e.value < 0 else ATOM
    if isinstance(e, StrLit | CharLit):
        return quoted(e.value), ATOM
    if isinstance(e, BoolLit):
        return ("true" if e.value else "false"), ATOM
    if isinstance(e, Var):
        return snake(e.name), ATOM
    if isinstance(e, Neg):
        return "-" + wrap(expr(e.operand), UNARY + 1), UNARY
    if isinstance(e, Not):
        return "!" + wrap(expr(e.operand), UNARY), UNARY
    if isinstance(e, Arith):
        return binary(expr(e.left), e.op, expr(e.right), ADD if e.op in "+-" else MUL)
    if isinstance(e, Concat):
        return binary(expr(e.left), "+", expr(e.right), ADD)
    if isinstance(e, Compare):
        if _is_empty_check(e):
            text = f"{wrap(expr(e.left.args[0]), POSTFIX)}.empty?"  # type: ignore[attr-defined]
            return (text, POSTFIX) if e.op == "==" else ("!" + text, UNARY)
        left, right = wrap(expr(e.left), COMPARE + 1), wrap(expr(e.right), COMPARE + 1)
        return f"{left} {e.op} {right}", COMPARE
    if isinstance(e, Logic):
        prec = AND if e.op == "and" else OR
        return binary(expr(e.left), "&&" if e.op == "and" else "||", expr(e.right), prec)
    if isinstance(e, Call):
        return f"{snake(e.func)}({', '.join(expr(a)[0] for a in e.args)})", ATOM
    if isinstance(e, Builtin):
        return builtin(e)
    raise TypeError(e)


def _is_empty_check(e: Compare) -> bool:
    """`len(x) == 0` reads `x.empty?` in Ruby."""
    return (
        e.op in ("==", "!=")
        and isinstance(e.left, Builtin)
        and e.left.op in ("len_str", "len_list")
        and e.right == IntLit(0)
    )


def builtin(e: Builtin) -> Rendered:
    args = [expr(a) for a in e.args]
    recv = wrap(args[0], POSTFIX) if args else ""
    plain = [a[0] for a in args]
    op = e.op
    if op in ("len_str", "len_list"):
        return f"{recv}.length", POSTFIX
    if op in ("list_get", "char_at"):
        return f"{recv}[{plain[1]}]", POSTFIX
    if op == "int_to_str":
        return f"{recv}.to_s", POSTFIX
    if op == "char_to_str":
        return args[0]
    if op in ("str_contains_char", "str_contains"):
        return f"{recv}.include?({plain[1]})", POSTFIX
    if op == "starts_with":
        return f"{recv}.start_with?({plain[1]})", POSTFIX
    if op == "substring":
        return f"{recv}[{plain[1]}...{plain[2]}]", POSTFIX
    if op in ("upper_str", "upper_char"):
        return f"{recv}.upcase", POSTFIX
    if op in ("lower_str", "lower_char"):
        return f"{recv}.downcase", POSTFIX
    if op == "char_code":
        return f"{recv}.ord", POSTFIX
    if op == "char_from_code":
        return f"{recv}.chr", POSTFIX
    if op == "repeat_str":
        return binary(args[0], "*", args[1], MUL)
    if op == "empty_list":
        return "[]", ATOM
    raise KeyError(op)


def block(body: tuple[Stmt, ...], last_is_value: bool = False) -> list[str]:
    lines: list[str] = []
    for index, s in enumerate(body):
        if last_is_value and index == len(body) - 1 and isinstance(s, Return):
            lines.append(expr(s.value)[0])  # Ruby returns the last expression
        else:
            lines.extend(stmt(s))
    return indent_lines(lines, INDENT)


def _plus_one(e: Expr) -> str:
    if isinstance(e, IntLit):
        return str(e.value + 1)
    return binary(expr(e), "+", ("1", ATOM), ADD)[0]


def stmt(s: Stmt) -> list[str]:
    if isinstance(s, Declare | Assign):
        return [f"{snake(s.var.name)} = {expr(s.value)[0]}"]
    if isinstance(s, AugAssign):
        return [f"{snake(s.var.name)} {s.op}= {expr(s.value)[0]}"]
    if isinstance(s, ListAppend):
        return [f"{snake(s.target.name)} << {wrap(expr(s.value), ADD)}"]
    if isinstance(s, If):
        if not s.orelse and len(s.then) == 1 and isinstance(s.then[0], MODIFIABLE):
            line = f"{stmt(s.then[0])[0]} if {expr(s.cond)[0]}"  # modifier-if idiom
            if len(line) <= 60:
                return [line]
        lines = [f"if {expr(s.cond)[0]}", *block(s.then)]
        orelse = s.orelse
        while len(orelse) == 1 and isinstance(orelse[0], If):
            lines += [f"elsif {expr(orelse[0].cond)[0]}", *block(orelse[0].then)]
            orelse = orelse[0].orelse
        if orelse:
            lines += ["else", *block(orelse)]
        return [*lines, "end"]
    if isinstance(s, ForRange):
        name, start, stop = snake(s.var.name), expr(s.start), expr(s.stop)
        if s.step == 1 and start[0] == "0":
            head = f"{wrap(stop, POSTFIX)}.times"
        elif s.step == 1:
            head = f"({start[0]}...{stop[0]}).each"
        elif s.step > 0:
            head = f"({start[0]}...{stop[0]}).step({s.step})"
        elif s.step == -1:
            head = f"{wrap(start, POSTFIX)}.downto({_plus_one(s.stop)})"
        else:
            head = f"{wrap(start, POSTFIX)}.step({_plus_one(s.stop)}, {s.step})"
        return [f"{head} do |{name}|", *block(s.body), "end"]
    if isinstance(s, ForEach):
        method = "each_char" if s.iterable.type == Type.STR else "each"
        source = wrap(expr(s.iterable), POSTFIX)
        return [f"{source}.{method} do |{snake(s.var.name)}|", *block(s.body), "end"]
    if isinstance(s, While):
        return [f"while {expr(s.cond)[0]}", *block(s.body), "end"]
    if isinstance(s, Break):
        return ["break"]
    if isinstance(s, Return):
        return [f"return {expr(s.value)[0]}"]
    if isinstance(s, Print):
        return [f"puts {expr(s.value)[0]}"]
    raise TypeError(s)


def function(func: Function) -> list[str]:
    defaults = dict(func.defaults)
    params = []
    for p in func.params:
        text = snake(p.name)
        if p.name in defaults:
            text += f" = {expr(defaults[p.name])[0]}"
        params.append(text)
    lines = [f"# {func.summary}"] if func.documented else []
    lines.append(f"def {snake(func.name)}({', '.join(params)})")
    return [*lines, *block(func.body, last_is_value=True), "end"]


def _functions(program: Program) -> list[str]:
    lines: list[str] = []
    for func in program.functions:
        if lines:
            lines.append("")
        lines.extend(function(func))
    return lines


def module(program: Program, layout: FileLayout | None = None) -> str:
    lines = _functions(program)
    if layout is not None:
        body = ["module_function", "", *lines]
        lines = [f"module {pascal(layout.module)}", *indent_lines(body, INDENT), "end"]
    return "\n".join(lines) + "\n"


def full_program(program: Program) -> str:
    entry = program.entry
    lines: list[str] = []
    for item in input_plan(entry):
        name = snake(item.param)
        if item.type == Type.LIST:
            lines += ["gets", f"{name} = gets.split.map(&:to_i)"]
        elif item.type == Type.INT:
            lines.append(f"{name} = gets.to_i")
        elif item.type == Type.BOOL:
            lines.append(f"{name} = gets.to_i == 1")
        else:
            lines.append(f"{name} = gets.chomp")
    call = f"{snake(entry.name)}({', '.join(snake(p.name) for p in entry.params)})"
    if entry.returns == Type.BOOL:
        lines.append(f'puts {call} ? "YES" : "NO"')
    elif entry.returns == Type.LIST:
        lines.append(f'puts {call}.join(" ")')
    else:
        lines.append(f"puts {call}")
    return module(program) + "\n" + "\n".join(lines) + "\n"
