"""Java renderer: `public class` with static methods, `List<Integer>`, `equals` on strings."""

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
from ..naming import camel, pascal
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
    char_quoted,
    indent_lines,
    input_plan,
    loop_condition,
    quoted,
    uses_type,
    wrap,
)

INDENT = "    "
TYPES = {
    Type.INT: "int",
    Type.STR: "String",
    Type.LIST: "List<Integer>",
    Type.BOOL: "boolean",
    Type.CHAR: "char",
}


def _is_boxed(e: Expr) -> bool:
    """`list.get(i)` is an Integer: `==` between two of them compares references."""
    return isinstance(e, Builtin) and e.op == "list_get"


def expr(e: Expr) -> Rendered:
    if isinstance(e, IntLit):
        return str(e.value), UNARY if e.value < 0 else ATOM
    if isinstance(e, StrLit):
        return quoted(e.value), ATOM
    if isinstance(e, CharLit):
        return char_quoted(e.value), ATOM
    if isinstance(e, BoolLit):
        return ("true" if e.value else "false"), ATOM
    if isinstance(e, Var):
        return camel(e.name), ATOM
    if isinstance(e, Neg):
        return "-" + wrap(expr(e.operand), UNARY + 1), UNARY
    if isinstance(e, Not):
        return "!" + wrap(expr(e.operand), UNARY), UNARY
    if isinstance(e, Arith):
        return binary(expr(e.left), e.op, expr(e.right), ADD if e.op in "+-" else MUL)
    if isinstance(e, Concat):
        return binary(_concat_operand(e.left, e.right), "+", _concat_operand(e.right, e.left), ADD)
    if isinstance(e, Compare):
        return compare(e)
    if isinstance(e, Logic):
        prec = AND if e.op == "and" else OR
        return binary(expr(e.left), "&&" if e.op == "and" else "||", expr(e.right), prec)
    if isinstance(e, Call):
        return f"{camel(e.func)}({', '.join(expr(a)[0] for a in e.args)})", ATOM
    if isinstance(e, Builtin):
        return builtin(e)
    raise TypeError(e)


def _concat_operand(e: Expr, other: Expr) -> Rendered:
    # `text + c` appends a char directly; only char + char would add the codes as ints.
    other_is_char = isinstance(other, Builtin) and other.op == "char_to_str"
    if isinstance(e, Builtin) and e.op == "char_to_str" and not other_is_char:
        return expr(e.args[0])
    return expr(e)


def compare(e: Compare) -> Rendered:
    is_length = isinstance(e.left, Builtin) and e.left.op in ("len_str", "len_list")
    if is_length and e.right == IntLit(0) and e.op in ("==", "!="):
        text = f"{wrap(expr(e.left.args[0]), POSTFIX)}.isEmpty()"  # type: ignore[attr-defined]
        return (text, POSTFIX) if e.op == "==" else ("!" + text, UNARY)
    left, right = expr(e.left), expr(e.right)
    if e.left.type == Type.STR:
        call = f"{wrap(left, POSTFIX)}.equals({right[0]})"
        return (call, POSTFIX) if e.op == "==" else ("!" + call, UNARY)
    if _is_boxed(e.left) and _is_boxed(e.right):
        left = (f"(int) {left[0]}", UNARY)
    return f"{wrap(left, COMPARE + 1)} {e.op} {wrap(right, COMPARE + 1)}", COMPARE


def builtin(e: Builtin) -> Rendered:
    args = [expr(a) for a in e.args]
    recv = wrap(args[0], POSTFIX) if args else ""
    plain = [a[0] for a in args]
    second = plain[1] if len(plain) > 1 else ""
    op = e.op
    simple = {
        "len_str": f"{recv}.length()",
        "len_list": f"{recv}.size()",
        "list_get": f"{recv}.get({second})",
        "char_at": f"{recv}.charAt({second})",
        "str_contains": f"{recv}.contains({second})",
        "starts_with": f"{recv}.startsWith({second})",
        "upper_str": f"{recv}.toUpperCase()",
        "lower_str": f"{recv}.toLowerCase()",
        "repeat_str": f"{recv}.repeat({second})",
    }
    if op in simple:
        return simple[op], POSTFIX
    if op in ("int_to_str", "char_to_str"):
        return f"String.valueOf({plain[0]})", ATOM
    if op == "str_contains_char":
        return f"{recv}.indexOf({plain[1]}) >= 0", COMPARE
    if op == "substring":
        return f"{recv}.substring({plain[1]}, {plain[2]})", POSTFIX
    if op == "upper_char":
        return f"Character.toUpperCase({plain[0]})", ATOM
    if op == "lower_char":
        return f"Character.toLowerCase({plain[0]})", ATOM
    if op == "char_code":
        return f"(int) {wrap(args[0], UNARY)}", UNARY
    if op == "char_from_code":
        return f"(char) {wrap(args[0], UNARY + 1)}", UNARY
    if op == "empty_list":
        return "new ArrayList<>()", ATOM
    raise KeyError(op)


def block(body: tuple[Stmt, ...]) -> list[str]:
    lines: list[str] = []
    for s in body:
        lines.extend(stmt(s))
    return indent_lines(lines, INDENT)


def stmt(s: Stmt) -> list[str]:
    if isinstance(s, Declare):
        return [f"{TYPES[s.var.type]} {camel(s.var.name)} = {expr(s.value)[0]};"]
    if isinstance(s, Assign):
        return [f"{camel(s.var.name)} = {expr(s.value)[0]};"]
    if isinstance(s, AugAssign):
        name = camel(s.var.name)
        if s.var.type == Type.INT and s.value == IntLit(1) and s.op in "+-":
            return [f"{name}{s.op}{s.op};"]
        value = s.value
        if isinstance(value, Builtin) and value.op == "char_to_str":
            value = value.args[0]  # `text += c` appends the char
        return [f"{name} {s.op}= {expr(value)[0]};"]
    if isinstance(s, ListAppend):
        return [f"{camel(s.target.name)}.add({expr(s.value)[0]});"]
    if isinstance(s, If):
        lines = [f"if ({expr(s.cond)[0]}) {{", *block(s.then)]
        orelse = s.orelse
        while len(orelse) == 1 and isinstance(orelse[0], If):
            lines += [f"}} else if ({expr(orelse[0].cond)[0]}) {{", *block(orelse[0].then)]
            orelse = orelse[0].orelse
        if orelse:
            lines += ["} else {", *block(orelse)]
        return [*lines, "}"]
    if isinstance(s, ForRange):
        name = camel(s.var.name)
        if s.step in (1, -1):
            step = f"{name}{'++' if s.step > 0 else '--'}"
        else:
            step = f"{name} {'+' if s.step > 0 else '-'}= {abs(s.step)}"
        cond = loop_condition(name, s.step, s.stop, expr(s.stop)[0])
        head = f"int {name} = {expr(s.start)[0]}; {cond}; {step}"
        return [f"for ({head}) {{", *block(s.body), "}"]
    if isinstance(s, ForEach):
        source = expr(s.iterable)
        if s.iterable.type == Type.STR:
            head = f"char {camel(s.var.name)} : {wrap(source, POSTFIX)}.toCharArray()"
        else:
            head = f"int {camel(s.var.name)} : {source[0]}"
        return [f"for ({head}) {{", *block(s.body), "}"]
    if isinstance(s, While):
        return [f"while ({expr(s.cond)[0]}) {{", *block(s.body), "}"]
    if isinstance(s, Break):
        return ["break;"]
    if isinstance(s, Return):
        return [f"return {expr(s.value)[0]};"]
    if isinstance(s, Print):
        return [f"System.out.println({expr(s.value)[0]});"]
    raise TypeError(s)


def function(func: Function, modifiers: str) -> list[str]:
    params = ", ".join(f"{TYPES[p.type]} {camel(p.name)}" for p in func.params)
    ret = TYPES[func.returns]
    lines = []
    if func.documented:
        lines += ["/**", f" * {func.summary}", " */"]
    lines += [f"{modifiers} {ret} {camel(func.name)}({params}) {{", *block(func.body), "}"]
    if func.defaults:
        # Java has no default arguments: the idiom is an overload that fills them in.
        kept = func.params[: len(func.params) - len(func.defaults)]
        defaults = dict(func.defaults)
        head = ", ".join(f"{TYPES[p.type]} {camel(p.name)}" for p in kept)
        args = [
            camel(p.name) if p.name not in defaults else expr(defaults[p.name])[0]
            for p in func.params
        ]
        lines += [
            "",
            f"{modifiers} {ret} {camel(func.name)}({head}) {{",
            f"{INDENT}return {camel(func.name)}({', '.join(args)});",
            "}",
        ]
    return lines


def _class_body(program: Program, modifiers: str) -> list[str]:
    lines: list[str] = []
    for func in program.functions:
        if lines:
            lines.append("")
        lines.extend(function(func, modifiers))
    return indent_lines(lines, INDENT)


def module(program: Program, layout: FileLayout | None = None) -> str:
    uses_list = uses_type(program, Type.LIST)
    if layout is None:
        header = ["import java.util.*;", ""] if uses_list else []
        lines = [*header, "public class Main {", *_class_body(program, "static"), "}"]
        return "\n".join(lines) + "\n"
    package = ".".join(("com", layout.owner, *layout.package))
    header = [f"package {package};", ""]
    if uses_list:
        header += ["import java.util.ArrayList;", "import java.util.List;", ""]
    body = _class_body(program, "public static")
    return "\n".join([*header, f"public class {pascal(layout.module)} {{", *body, "}"]) + "\n"


READ_INTS = [
    "static List<Integer> readInts(String line) {",
    "    List<Integer> values = new ArrayList<>();",
    "    StringTokenizer tokens = new StringTokenizer(line);",
    "    while (tokens.hasMoreTokens()) {",
    "        values.add(Integer.parseInt(tokens.nextToken()));",
    "    }",
    "    return values;",
    "}",
]


def full_program(program: Program) -> str:
    entry = program.entry
    plan = input_plan(entry)
    main = ["BufferedReader reader = new BufferedReader(new InputStreamReader(System.in));"]
    for item in plan:
        name = camel(item.param)
        if item.type == Type.LIST:
            main += ["reader.readLine();", f"List<Integer> {name} = readInts(reader.readLine());"]
        elif item.type == Type.INT:
            main.append(f"int {name} = Integer.parseInt(reader.readLine().trim());")
        elif item.type == Type.BOOL:
            main.append(f'boolean {name} = reader.readLine().trim().equals("1");')
        else:
            main.append(f"String {name} = reader.readLine();")
    call = f"{camel(entry.name)}({', '.join(camel(p.name) for p in entry.params)})"
    if entry.returns == Type.BOOL:
        main.append(f'System.out.println({call} ? "YES" : "NO");')
    elif entry.returns == Type.LIST:
        joined = f'{call}.stream().map(String::valueOf).collect(Collectors.joining(" "))'
        main.append(f"System.out.println({joined});")
    else:
        main.append(f"System.out.println({call});")
    imports = ["import java.io.*;", "import java.util.*;"]
    if entry.returns == Type.LIST:
        imports.append("import java.util.stream.*;")
    body = _class_body(program, "static")
    if any(item.type == Type.LIST for item in plan):
        body += ["", *indent_lines(READ_INTS, INDENT)]
    main_method = [
        "public static void main(String[] args) throws IOException {",
        *indent_lines(main, INDENT),
        "}",
    ]
    body += ["", *indent_lines(main_method, INDENT)]
    return "\n".join([*imports, "", "public class Main {", *body, "}"]) + "\n"
