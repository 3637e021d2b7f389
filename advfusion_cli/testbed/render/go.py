"""Go renderer: `package`, typed `func`, `:=`, slices with `append`, runes, exact imports."""

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
    builtins_used,
    char_quoted,
    has_print,
    indent_lines,
    input_plan,
    quoted,
    third_person,
    wrap,
)

INDENT = "\t"
TYPES = {Type.INT: "int", Type.STR: "string", Type.LIST: "[]int", Type.BOOL: "bool"}
TYPES[Type.CHAR] = "rune"

# Standard-library package each builtin needs (Go refuses unused imports).
BUILTIN_IMPORTS = {
    "int_to_str": "strconv",
    "str_contains_char": "strings",
    "str_contains": "strings",
    "starts_with": "strings",
    "upper_str": "strings",
    "lower_str": "strings",
    "repeat_str": "strings",
    "upper_char": "unicode",
    "lower_char": "unicode",
}


def _go_prec(e: Expr) -> int | None:
    """Go's operator precedence (5 `*`, 4 `+`, 3 comparisons, 2 `&&`, 1 `||`), None if atomic."""
    if isinstance(e, Arith):
        return 4 if e.op in "+-" else 5
    if isinstance(e, Concat):
        return 4
    if isinstance(e, Compare):
        return 3
    if isinstance(e, Logic):
        return 2 if e.op == "and" else 1
    return None


BinaryExpr = Arith | Concat | Compare | Logic


def _operator(e: BinaryExpr) -> str:
    if isinstance(e, Concat):
        return "+"
    if isinstance(e, Logic):
        return "&&" if e.op == "and" else "||"
    return e.op


def _mixes_add_and_mul(e: BinaryExpr) -> tuple[bool, bool]:
    """gofmt's walkBinary: whether `+`-level and `*`-level operators meet without parens."""
    prec = _go_prec(e)
    has4, has5 = prec == 4, prec == 5
    left, right = _go_prec(e.left), _go_prec(e.right)
    children = []
    if left is not None and prec is not None and left >= prec:
        children.append(e.left)
    if right is not None and prec is not None and right > prec:
        children.append(e.right)
    for child in children:
        h4, h5 = _mixes_add_and_mul(child)  # type: ignore[arg-type]
        has4, has5 = has4 or h4, has5 or h5
    return has4, has5


def _cutoff(e: BinaryExpr, depth: int) -> int:
    has4, has5 = _mixes_add_and_mul(e)
    if has4 and has5:
        return 5 if depth == 1 else 4
    return 6 if depth == 1 else 4


def _binary(e: BinaryExpr, depth: int) -> str:
    """A binary expression spaced the way gofmt spaces it (`a + b*c`, `xs[i-1]`)."""
    prec = _go_prec(e) or 0
    blank = " " if prec < _cutoff(e, depth) else ""
    left_depth = depth if _go_prec(e.left) == prec else depth + 1
    left = _operand(e.left, prec, left_depth)
    right = _operand(e.right, prec + 1, depth + 1)
    return f"{left}{blank}{_operator(e)}{blank}{right}"


def _operand(e: Expr, prec1: int, depth: int) -> str:
    prec = _go_prec(e)
    if isinstance(e, BinaryExpr) and prec is not None and prec < prec1:
        return f"({_binary(e, max(depth - 1, 1))})"  # parentheses undo one level of depth
    return expr(e, depth)[0]


def expr(e: Expr, depth: int = 1) -> Rendered:
    if isinstance(e, BinaryExpr):
        return _binary(e, depth), {1: OR, 2: AND, 3: COMPARE, 4: ADD, 5: MUL}[_go_prec(e) or 1]
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
    if isinstance(e, Neg | Not):
        operand = e.operand
        text = expr(operand, depth)[0]
        if isinstance(operand, BinaryExpr | Neg | Not):
            text = f"({text})"
        return ("-" if isinstance(e, Neg) else "!") + text, UNARY
    if isinstance(e, Call):
        return f"{camel(e.func)}({_args(e.args, depth)})", ATOM
    if isinstance(e, Builtin):
        return builtin(e, depth)
    raise TypeError(e)


def _args(args: tuple[Expr, ...], depth: int) -> str:
    inner = depth + 1 if len(args) > 1 else depth
    return ", ".join(expr(a, inner)[0] for a in args)


def builtin(e: Builtin, depth: int) -> Rendered:
    op = e.op
    if op in ("len_str", "len_list"):
        return f"len({_args(e.args, depth)})", ATOM
    if op in ("list_get", "char_at"):
        seq, index = e.args
        text = f"{wrap(expr(seq, 1), POSTFIX)}[{expr(index, depth + 1)[0]}]"
        # Indexing a string gives a byte; inputs are ASCII, so rune(byte) is the character.
        return (text, POSTFIX) if op == "list_get" else (f"rune({text})", ATOM)
    if op == "char_to_str" and isinstance(e.args[0], Builtin) and e.args[0].op == "char_at":
        seq, index = e.args[0].args
        return f"string({wrap(expr(seq, 1), POSTFIX)}[{expr(index, depth + 1)[0]}])", ATOM
    if op == "substring":
        text, start, stop = e.args
        binaries = _go_prec(start) is not None or _go_prec(stop) is not None
        colon = " : " if depth <= 1 and binaries else ":"
        low, high = expr(start, depth + 1)[0], expr(stop, depth + 1)[0]
        return f"{wrap(expr(text, 1), POSTFIX)}[{low}{colon}{high}]", POSTFIX
    calls = {
        "int_to_str": "strconv.Itoa",
        "char_to_str": "string",
        "str_contains_char": "strings.ContainsRune",
        "str_contains": "strings.Contains",
        "starts_with": "strings.HasPrefix",
        "upper_str": "strings.ToUpper",
        "lower_str": "strings.ToLower",
        "upper_char": "unicode.ToUpper",
        "lower_char": "unicode.ToLower",
        "char_code": "int",
        "char_from_code": "rune",
        "repeat_str": "strings.Repeat",
    }
    if op in calls:
        return f"{calls[op]}({_args(e.args, depth)})", ATOM
    if op == "empty_list":
        return "[]int{}", ATOM
    raise KeyError(op)


def block(body: tuple[Stmt, ...]) -> list[str]:
    lines: list[str] = []
    for s in body:
        lines.extend(stmt(s))
    return indent_lines(lines, INDENT)


def stmt(s: Stmt) -> list[str]:
    if isinstance(s, Declare):
        return [f"{camel(s.var.name)} := {expr(s.value)[0]}"]
    if isinstance(s, Assign):
        return [f"{camel(s.var.name)} = {expr(s.value)[0]}"]
    if isinstance(s, AugAssign):
        name = camel(s.var.name)
        if s.var.type == Type.INT and s.value == IntLit(1) and s.op in "+-":
            return [f"{name}{s.op}{s.op}"]
        return [f"{name} {s.op}= {expr(s.value)[0]}"]
    if isinstance(s, ListAppend):
        name = camel(s.target.name)
        return [f"{name} = append({name}, {expr(s.value, depth=2)[0]})"]
    if isinstance(s, If):
        lines = [f"if {expr(s.cond)[0]} {{", *block(s.then)]
        orelse = s.orelse
        while len(orelse) == 1 and isinstance(orelse[0], If):
            lines += [f"}} else if {expr(orelse[0].cond)[0]} {{", *block(orelse[0].then)]
            orelse = orelse[0].orelse
        if orelse:
            lines += ["} else {", *block(orelse)]
        return [*lines, "}"]
    if isinstance(s, ForRange):
        name = camel(s.var.name)
        if s.step < 0 and isinstance(s.stop, IntLit):
            test = Compare(">=", s.var, IntLit(s.stop.value + 1))  # i >= 0, not i > -1
        else:
            test = Compare("<" if s.step > 0 else ">", s.var, s.stop)
        cond = expr(test)[0]  # as one expression, so gofmt's spacing rules see all of it
        if s.step in (1, -1):
            step = f"{name}{'++' if s.step > 0 else '--'}"
        else:
            step = f"{name} {'+' if s.step > 0 else '-'}= {abs(s.step)}"
        head = f"{name} := {expr(s.start)[0]}; {cond}; {step}"
        return [f"for {head} {{", *block(s.body), "}"]
    if isinstance(s, ForEach):
        head = f"_, {camel(s.var.name)} := range {expr(s.iterable)[0]}"
        return [f"for {head} {{", *block(s.body), "}"]
    if isinstance(s, While):
        return [f"for {expr(s.cond)[0]} {{", *block(s.body), "}"]
    if isinstance(s, Break):
        return ["break"]
    if isinstance(s, Return):
        return [f"return {expr(s.value)[0]}"]
    if isinstance(s, Print):
        return [f"fmt.Println({expr(s.value)[0]})"]
    raise TypeError(s)


def _params(func: Function) -> str:
    """`a, b int, xs []int`: consecutive parameters of one type share it, as gofmt code does."""
    groups: list[tuple[list[str], str]] = []
    for p in func.params:
        if groups and groups[-1][1] == TYPES[p.type]:
            groups[-1][0].append(camel(p.name))
        else:
            groups.append(([camel(p.name)], TYPES[p.type]))
    return ", ".join(f"{', '.join(names)} {type_}" for names, type_ in groups)


def function(func: Function) -> list[str]:
    lines = []
    if func.documented:
        lines.append(f"// {camel(func.name)} {third_person(func.summary)}")
    head = f"func {camel(func.name)}({_params(func)}) {TYPES[func.returns]} {{"
    return [*lines, head, *block(func.body), "}"]


def _imports(packages: set[str]) -> list[str]:
    if not packages:
        return []
    if len(packages) == 1:
        return [f'import "{next(iter(packages))}"', ""]
    return ["import (", *(f'\t"{p}"' for p in sorted(packages)), ")", ""]


def _program_imports(program: Program) -> set[str]:
    packages = {BUILTIN_IMPORTS[op] for op in builtins_used(program) if op in BUILTIN_IMPORTS}
    if has_print(program):
        packages.add("fmt")
    return packages


def _functions(program: Program) -> list[str]:
    lines: list[str] = []
    for func in program.functions:
        if lines:
            lines.append("")
        lines.extend(function(func))
    return lines


def module(program: Program, layout: FileLayout | None = None) -> str:
    package = layout.package[-1] if layout is not None else "main"
    lines = [f"package {package}", "", *_imports(_program_imports(program)), *_functions(program)]
    return "\n".join(lines) + "\n"


READ_INTS = [
    "func readInts(line string) []int {",
    "\tvalues := []int{}",
    "\tfor _, field := range strings.Fields(line) {",
    "\t\tvalue, _ := strconv.Atoi(field)",
    "\t\tvalues = append(values, value)",
    "\t}",
    "\treturn values",
    "}",
]


def full_program(program: Program) -> str:
    entry = program.entry
    plan = input_plan(entry)
    packages = _program_imports(program) | {"bufio", "fmt", "os"}
    main = ["scanner := bufio.NewScanner(os.Stdin)"]
    for item in plan:
        name = camel(item.param)
        if item.type == Type.LIST:
            main += ["scanner.Scan()", "scanner.Scan()", f"{name} := readInts(scanner.Text())"]
            packages |= {"strings", "strconv"}
        elif item.type == Type.INT:
            main += [
                "scanner.Scan()",
                f"{name}, _ := strconv.Atoi(strings.TrimSpace(scanner.Text()))",
            ]
            packages |= {"strings", "strconv"}
        elif item.type == Type.BOOL:
            main += ["scanner.Scan()", f'{name} := strings.TrimSpace(scanner.Text()) == "1"']
            packages.add("strings")
        else:
            main += ["scanner.Scan()", f"{name} := scanner.Text()"]
    call = f"{camel(entry.name)}({', '.join(camel(p.name) for p in entry.params)})"
    if entry.returns == Type.BOOL:
        main += [f"if {call} {{", '\tfmt.Println("YES")', "} else {", '\tfmt.Println("NO")', "}"]
    elif entry.returns == Type.LIST:
        main += [
            "parts := []string{}",
            f"for _, value := range {call} {{",
            "\tparts = append(parts, strconv.Itoa(value))",
            "}",
            'fmt.Println(strings.Join(parts, " "))',
        ]
        packages |= {"strings", "strconv"}
    else:
        main.append(f"fmt.Println({call})")
    lines = ["package main", "", *_imports(packages), *_functions(program), ""]
    if any(item.type == Type.LIST for item in plan):
        lines += [*READ_INTS, ""]
    lines += ["func main() {", *indent_lines(main, INDENT), "}"]
    return "\n".join(lines) + "\n"
