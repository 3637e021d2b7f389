"""JavaScript renderer: camelCase, `function`, `const`/`let`, strict equality, Node stdin."""

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
    Name,
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
from ..naming import camel
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
    input_plan,
    loop_condition,
    quoted,
    reassigned,
    wrap,
)

INDENT = "  "
STRICT = {"==": "===", "!=": "!=="}


def expr(e: Expr) -> Rendered:
    if isinstance(e, IntLit):
        return str(e.value), UNARY if e.value < 0 else ATOM
    if isinstance(e, StrLit | CharLit):
        return quoted(e.value), ATOM
    if isinstance(e, BoolLit):
        return ("true" if e.value else "false"), ATOM
    if isinstance(e, Var):
        return camel(e.name), ATOM
    if isinstance(e, Neg):
        return "-" + wrap(expr(e.operand), UNARY + 1), UNARY
    if isinstance(e, Not):
        return "!" + wrap(expr(e.operand), UNARY), UNARY
    if isinstance(e, Arith):
        if e.op == "/":  # integer division; operands are never negative
            return f"Math.floor({expr(e.left)[0]} / {expr(e.right)[0]})", ATOM
        return binary(expr(e.left), e.op, expr(e.right), ADD if e.op in "+-" else MUL)
    if isinstance(e, Concat):
        return binary(expr(e.left), "+", expr(e.right), ADD)
    if isinstance(e, Compare):
        left, right = wrap(expr(e.left), COMPARE + 1), wrap(expr(e.right), COMPARE + 1)
        return f"{left} {STRICT.get(e.op, e.op)} {right}", COMPARE
    if isinstance(e, Logic):
        prec = AND if e.op == "and" else OR
        return binary(expr(e.left), "&&" if e.op == "and" else "||", expr(e.right), prec)
    if isinstance(e, Call):
        return f"{camel(e.func)}({', '.join(expr(a)[0] for a in e.args)})", ATOM
    if isinstance(e, Builtin):
        return builtin(e)
    raise TypeError(e)


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
        return f"String({plain[0]})", ATOM
    if op == "char_to_str":
        return args[0]
    if op in ("str_contains_char", "str_contains"):
        return f"{recv}.includes({plain[1]})", POSTFIX
    if op == "starts_with":
        return f"{recv}.startsWith({plain[1]})", POSTFIX
    if op == "substring":
        return f"{recv}.slice({plain[1]}, {plain[2]})", POSTFIX
    if op in ("upper_str", "upper_char"):
        return f"{recv}.toUpperCase()", POSTFIX
    if op in ("lower_str", "lower_char"):
        return f"{recv}.toLowerCase()", POSTFIX
    if op == "char_code":
        return f"{recv}.charCodeAt(0)", POSTFIX
    if op == "char_from_code":
        return f"String.fromCharCode({plain[0]})", ATOM
    if op == "repeat_str":
        return f"{recv}.repeat({plain[1]})", POSTFIX
    if op == "empty_list":
        return "[]", ATOM
    raise KeyError(op)


class _Function:
    def __init__(self, func: Function):
        self.mutable: set[Name] = reassigned(func)

    def block(self, body: tuple[Stmt, ...]) -> list[str]:
        lines: list[str] = []
        for s in body:
            lines.extend(self.stmt(s))
        return [INDENT + line for line in lines]

    def stmt(self, s: Stmt) -> list[str]:
        if isinstance(s, Declare):
            keyword = "let" if s.var.name in self.mutable else "const"
            return [f"{keyword} {camel(s.var.name)} = {expr(s.value)[0]};"]
        if isinstance(s, Assign):
            return [f"{camel(s.var.name)} = {expr(s.value)[0]};"]
        if isinstance(s, AugAssign):
            return [_aug(camel(s.var.name), s.op, s.value, s.var.type)]
        if isinstance(s, ListAppend):
            return [f"{camel(s.target.name)}.push({expr(s.value)[0]});"]
        if isinstance(s, If):
            lines = [f"if ({expr(s.cond)[0]}) {{", *self.block(s.then)]
            orelse = s.orelse
            while len(orelse) == 1 and isinstance(orelse[0], If):
                lines += [f"}} else if ({expr(orelse[0].cond)[0]}) {{", *self.block(orelse[0].then)]
                orelse = orelse[0].orelse
            if orelse:
                lines += ["} else {", *self.block(orelse)]
            return [*lines, "}"]
        if isinstance(s, ForRange):
            name = camel(s.var.name)
            cond = loop_condition(name, s.step, s.stop, expr(s.stop)[0])
            head = f"let {name} = {expr(s.start)[0]}; {cond}; {_step(name, s.step)}"
            return [f"for ({head}) {{", *self.block(s.body), "}"]
        if isinstance(s, ForEach):
            head = f"const {camel(s.var.name)} of {expr(s.iterable)[0]}"
            return [f"for ({head}) {{", *self.block(s.body), "}"]
        if isinstance(s, While):
            return [f"while ({expr(s.cond)[0]}) {{", *self.block(s.body), "}"]
        if isinstance(s, Break):
            return ["break;"]
        if isinstance(s, Return):
            return [f"return {expr(s.value)[0]};"]
        if isinstance(s, Print):
            return [f"console.log({expr(s.value)[0]});"]
        raise TypeError(s)


def _step(name: str, step: int) -> str:
    if step == 1:
        return f"{name}++"
    if step == -1:
        return f"{name}--"
    return f"{name} {'+' if step > 0 else '-'}= {abs(step)}"


def _aug(name: str, op: str, value: Expr, var_type: Type) -> str:
    if var_type == Type.INT and isinstance(value, IntLit) and value.value == 1 and op in "+-":
        return f"{name}{op}{op};"
    return f"{name} {op}= {expr(value)[0]};"


def function(func: Function) -> list[str]:
    defaults = dict(func.defaults)
    params = []
    for p in func.params:
        text = camel(p.name)
        if p.name in defaults:
            text += f" = {expr(defaults[p.name])[0]}"
        params.append(text)
    lines = []
    if func.documented:
        lines += ["/**", f" * {func.summary}", " */"]
    lines.append(f"function {camel(func.name)}({', '.join(params)}) {{")
    return [*lines, *_Function(func).block(func.body), "}"]


def module(program: Program, layout: FileLayout | None = None) -> str:
    chunks = ["\n".join(function(f)) for f in program.functions]
    text = "\n\n".join(chunks) + "\n"
    if layout is not None:
        exported = ", ".join(camel(f.name) for f in program.functions)
        text = '"use strict";\n\n' + text + f"\nmodule.exports = {{ {exported} }};\n"
    return text


def full_program(program: Program) -> str:
    entry = program.entry
    lines = ['const lines = require("fs").readFileSync(0, "utf8").split("\\n");']
    for item in input_plan(entry):
        name, line = camel(item.param), f"lines[{item.line}]"
        if item.type == Type.LIST:
            value = f'{line}.split(" ").filter(Boolean).map(Number)'
        elif item.type == Type.INT:
            value = f"Number({line})"
        elif item.type == Type.BOOL:
            value = f'{line}.trim() === "1"'
        else:
            value = line
        lines.append(f"const {name} = {value};")
    call = f"{camel(entry.name)}({', '.join(camel(p.name) for p in entry.params)})"
    if entry.returns == Type.BOOL:
        lines.append(f'console.log({call} ? "YES" : "NO");')
    elif entry.returns == Type.LIST:
        lines.append(f'console.log({call}.join(" "));')
    else:
        lines.append(f"console.log({call});")
    return module(program) + "\n" + "\n".join(lines) + "\n"
