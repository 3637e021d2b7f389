"""Code edits with commit subjects: the commit-message task's before/after pairs.

Each edit takes a program and returns the program before and after a realistic change
(rename, guard clause, off-by-one fix, constant change, default parameter, extracted
variable, doc comment, removed debug print) and an imperative subject naming what changed,
spelled with the language's identifiers (`count_vowels` in Python, `countVowels` in Java).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass

from .build import builtin, cmp, length, lit
from .ir import (
    Arith,
    Builtin,
    Compare,
    Declare,
    Expr,
    ForEach,
    ForRange,
    Function,
    If,
    IntLit,
    Name,
    Print,
    Program,
    Return,
    Stmt,
    Type,
    Var,
    While,
    function_exprs,
    stmt_exprs,
    walk_expr,
    walk_stmts,
)
from .naming import identifier, is_reserved
from .rewrite import (
    map_stmts,
    rename_function,
    replace_expr,
    replace_function,
    replace_var,
)
from .validate import InvalidProgram, check_program


@dataclass(frozen=True)
class Edit:
    kind: str
    before: Program
    after: Program
    subject: str


EditFn = Callable[[Program, str, random.Random], Edit | None]

SYNONYMS: dict[str, tuple[str, ...]] = {
    "count": ("matches", "tally", "num_found"),
    "matches": ("count", "num_matches"),
    "tally": ("count", "matches"),
    "hits": ("count", "num_hits"),
    "total": ("sum_so_far", "running_total", "accumulated"),
    "running_sum": ("total", "sum_so_far"),
    "result": ("output", "collected", "answer"),
    "selected": ("result", "chosen"),
    "kept": ("result", "remaining"),
    "output": ("result", "collected"),
    "best": ("top", "record"),
    "current": ("streak", "run_length"),
    "remaining": ("rest", "left"),
    "rest": ("remaining", "left"),
    "found": ("seen", "present"),
}

ABBREVIATIONS = {
    "count": "cnt",
    "number": "num",
    "total": "tot",
    "average": "avg",
    "index": "idx",
    "position": "pos",
    "temperature": "temp",
    "temperatures": "temps",
    "distance": "dist",
    "message": "msg",
    "password": "pwd",
    "characters": "chars",
    "reverse": "rev",
    "value": "val",
    "values": "vals",
    "maximum": "max",
    "minimum": "min",
    "divisors": "divs",
    "multiples": "mults",
    "calculate": "calc",
}

DOC_NOUNS = {
    "python": "docstring",
    "javascript": "JSDoc",
    "java": "Javadoc",
    "go": "doc comment",
    "ruby": "comment",
}


def _name(words: Name, language: str) -> str:
    return identifier(words, language)


def _valid(program: Program) -> bool:
    try:
        check_program(program)
    except InvalidProgram:
        return False
    return True


def _all_names(program: Program) -> set[Name]:
    names: set[Name] = set()
    for func in program.functions:
        names.add(func.name)
        names.update(p.name for p in func.params)
        names.update(e.name for e in function_exprs(func) if isinstance(e, Var))
    return names


def _target(program: Program, rng: random.Random) -> Function:
    """The function an edit touches: usually the entry point, sometimes a helper."""
    if len(program.functions) > 1 and rng.random() < 0.25:
        return rng.choice(program.functions[:-1])
    return program.entry


# ----- the edits -----------------------------------------------------------------------


def rename_local(program: Program, language: str, rng: random.Random) -> Edit | None:
    func = _target(program, rng)
    candidates = [
        s.var
        for s in walk_stmts(func.body)
        if isinstance(s, Declare) and s.var.name[-1] in SYNONYMS
    ]
    candidates += [
        p for p in func.params if p.type == Type.INT and len(p.name) == 1 and p.name[0] in SYNONYMS
    ]
    if not candidates:
        return None
    old = rng.choice(candidates)
    taken = _all_names(program)
    options = [tuple(w.split("_")) for w in SYNONYMS[old.name[-1]]]
    options = [o for o in options if o not in taken and not is_reserved(o)]
    if not options:
        return None
    new = Var(rng.choice(options), old.type)
    renamed = dataclasses.replace(
        func,
        body=replace_var(func.body, old, new),
        params=tuple(new if p == old else p for p in func.params),
    )
    before, after = program, replace_function(program, renamed)
    if rng.random() < 0.5:  # renames go both ways: towards and away from the generic word
        before, after, old, new = after, before, new, old
    o, n, f = _name(old.name, language), _name(new.name, language), _name(func.name, language)
    subject = rng.choice(
        [
            f"Rename {o} to {n} in {f}",
            f"Rename {o} variable to {n}",
            f"Use {n} instead of {o} in {f}",
        ]
    )
    return Edit("rename_variable", before, after, subject)


def rename_func(program: Program, language: str, rng: random.Random) -> Edit | None:
    func = _target(program, rng)
    short = tuple(ABBREVIATIONS.get(w, w) for w in func.name)
    if short == func.name or short in _all_names(program) or is_reserved(short):
        if len(func.name) < 3:
            return None
        short = func.name[:1] + func.name[2:]  # drop a word: count_prices_above -> count_above
        if short in _all_names(program) or is_reserved(short):
            return None
    before = rename_function(program, func.name, short)
    o, n = _name(short, language), _name(func.name, language)
    subject = rng.choice(
        [f"Rename {o} to {n}", f"Rename {o} function to {n}", f"Give {o} a clearer name"]
    )
    return Edit("rename_function", before, program, subject)


def _default_value(kind: Type) -> Expr:
    return {
        Type.INT: lit(0),
        Type.STR: lit(""),
        Type.BOOL: lit(False),
        Type.LIST: builtin("empty_list"),
    }[kind]


def add_guard(program: Program, language: str, rng: random.Random) -> Edit | None:
    func = program.entry
    first = func.body[0]
    if isinstance(first, If) and any(isinstance(s, Return) for s in first.then):
        return None  # already starts with a guard
    params = [p for p in func.params if p.type in (Type.LIST, Type.STR, Type.INT)]
    if not params:
        return None
    param = rng.choice(params)
    p, f = _name(param.name, language), _name(func.name, language)
    if param.type == Type.INT:
        cond = cmp("<", param, 0)
        subjects = [
            f"Return early for negative {p} in {f}",
            f"Guard against negative {p} in {f}",
            f"Handle negative {p} in {f}",
        ]
    else:
        cond = cmp("==", length(param), 0)
        kind = "list" if param.type == Type.LIST else "string"
        subjects = [
            f"Add guard for empty {p} in {f}",
            f"Return early when {p} is empty",
            f"Handle empty {kind} in {f}",
        ]
    guard = If(cond, (Return(_default_value(func.returns)),))
    after = replace_function(program, dataclasses.replace(func, body=(guard, *func.body)))
    return Edit("add_guard", program, after, rng.choice(subjects))


def fix_off_by_one(program: Program, language: str, rng: random.Random) -> Edit | None:
    func = _target(program, rng)
    loops = [s for s in walk_stmts(func.body) if isinstance(s, ForRange) and s.step == 1]
    loops += [
        s
        for s in walk_stmts(func.body)
        if isinstance(s, While) and isinstance(s.cond, Compare) and s.cond.op in ("<", "<=")
    ]
    if not loops:
        return None
    loop = rng.choice(loops)
    if isinstance(loop, ForRange):
        buggy: Stmt = dataclasses.replace(loop, stop=Arith("-", loop.stop, IntLit(1)))
        if rng.random() < 0.4:
            buggy = dataclasses.replace(
                loop,
                start=Arith("+", loop.start, IntLit(1))
                if not isinstance(loop.start, IntLit)
                else IntLit(loop.start.value + 1),
            )
    else:
        assert isinstance(loop.cond, Compare)
        wrong = "<=" if loop.cond.op == "<" else "<"
        buggy = dataclasses.replace(loop, cond=dataclasses.replace(loop.cond, op=wrong))
    bad_body = map_stmts(func.body, lambda s: [buggy] if s is loop else [s])
    before = replace_function(program, dataclasses.replace(func, body=bad_body))
    if not _valid(before):
        return None
    f = _name(func.name, language)
    subject = rng.choice(
        [f"Fix off-by-one in {f} loop", f"Fix off-by-one error in {f}", f"Fix loop bound in {f}"]
    )
    return Edit("fix_off_by_one", before, program, subject)


def change_constant(program: Program, language: str, rng: random.Random) -> Edit | None:
    func = _target(program, rng)
    reassigned = {
        s.var.name
        for s in walk_stmts(func.body)
        if not isinstance(s, Declare) and hasattr(s, "var")
    }
    named = [
        s
        for s in walk_stmts(func.body)
        if isinstance(s, Declare)
        and isinstance(s.value, IntLit)
        and s.var.name not in reassigned
        and s.value.value > 1
    ]
    literals = [
        e
        for e in function_exprs(func)
        if isinstance(e, Compare | Arith) and isinstance(e.right, IntLit) and e.right.value > 2
    ]
    if not named and not literals:
        return None
    f = _name(func.name, language)
    if named and (not literals or rng.random() < 0.7):
        decl = rng.choice(named)
        old_value = decl.value.value  # type: ignore[attr-defined]
        new_value = max(2, old_value + rng.choice([-1, 1]) * rng.randint(1, max(2, old_value // 2)))
        if new_value == old_value:
            new_value = old_value + 1
        changed = map_stmts(
            func.body,
            lambda s: [dataclasses.replace(s, value=IntLit(new_value))] if s is decl else [s],
        )
        c = _name(decl.var.name, language)
        verb = "Increase" if new_value > old_value else "Lower"
        subjects = [
            f"{verb} {c} from {old_value} to {new_value}",
            f"Change {c} from {old_value} to {new_value} in {f}",
            f"Set {c} to {new_value}",
        ]
    else:
        expr = rng.choice(literals)
        old_value = expr.right.value  # type: ignore[attr-defined]
        new_value = old_value + rng.choice([-1, 1])
        changed = replace_expr(func.body, expr, dataclasses.replace(expr, right=IntLit(new_value)))
        subjects = [
            f"Change {old_value} to {new_value} in {f}",
            f"Use {new_value} instead of {old_value} in {f}",
        ]
    after = replace_function(program, dataclasses.replace(func, body=changed))
    if not _valid(after):
        return None
    return Edit("change_constant", program, after, rng.choice(subjects))


FLIPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}


def fix_comparison(program: Program, language: str, rng: random.Random) -> Edit | None:
    func = _target(program, rng)
    conds = [
        s.cond
        for s in walk_stmts(func.body)
        if isinstance(s, If) and isinstance(s.cond, Compare) and s.cond.op in FLIPS
    ]
    if not conds:
        return None
    good = rng.choice(conds)
    bad = dataclasses.replace(good, op=FLIPS[good.op])
    before = replace_function(
        program, dataclasses.replace(func, body=replace_expr(func.body, good, bad))
    )
    f = _name(func.name, language)
    subjects = [f"Use {good.op} instead of {bad.op} in {f}", f"Fix boundary check in {f}"]
    if isinstance(good.right, Var):
        side = "Include" if good.op in ("<=", ">=") else "Exclude"
        subjects.append(f"{side} {_name(good.right.name, language)} itself in {f}")
    return Edit("fix_comparison", before, program, rng.choice(subjects))


def add_default(program: Program, language: str, rng: random.Random) -> Edit | None:
    if language == "go":
        return None  # Go has no default arguments
    func = program.entry
    last = func.params[-1]
    if len(func.params) < 2 or last.type != Type.INT or func.defaults:
        return None
    value = rng.choice([1, 2, 5, 10, 50, 100])
    after = replace_function(
        program, dataclasses.replace(func, defaults=((last.name, IntLit(value)),))
    )
    p, f = _name(last.name, language), _name(func.name, language)
    if language == "java":
        subjects = [
            f"Add {f} overload with default {p}",
            f"Add {f} overload defaulting {p} to {value}",
        ]
    else:
        subjects = [
            f"Default {p} to {value} in {f}",
            f"Make {p} optional in {f}",
            f"Add default value for {p}",
        ]
    return Edit("add_default", program, after, rng.choice(subjects))


def _singular(words: Name) -> Name:
    last = words[-1]
    if last.endswith("ies"):
        last = last[:-3] + "y"
    elif last.endswith(("xes", "ches", "shes")):
        last = last[:-2]
    elif last.endswith("s"):
        last = last[:-1]
    return (*words[:-1], last)


def extract_variable(program: Program, language: str, rng: random.Random) -> Edit | None:
    func = _target(program, rng)
    taken = _all_names(program)
    f = _name(func.name, language)
    # (a) an element read twice in an index loop becomes a local at the top of the body
    for loop in walk_stmts(func.body):
        if not isinstance(loop, ForRange):
            continue
        reads = [
            e
            for s in walk_stmts(loop.body)
            for e in _exprs_of(s)
            if isinstance(e, Builtin) and e.op == "list_get" and e.args[1] == loop.var
        ]
        if len(reads) >= 2 and isinstance(reads[0].args[0], Var):
            element = Var(_singular(reads[0].args[0].name), Type.INT)
            if element.name in taken or is_reserved(element.name):
                continue
            new_loop = dataclasses.replace(
                loop, body=(Declare(element, reads[0]), *replace_expr(loop.body, reads[0], element))
            )
            body = map_stmts(
                func.body, lambda s, loop=loop, new_loop=new_loop: [new_loop] if s is loop else [s]
            )
            after = replace_function(program, dataclasses.replace(func, body=body))
            if _valid(after):
                e = _name(element.name, language)
                return Edit(
                    "extract_variable",
                    program,
                    after,
                    rng.choice(
                        [f"Extract {e} variable in {f} loop", f"Introduce {e} local in {f}"]
                    ),
                )
    # (b) a length used in the function body becomes a named local
    lengths = [
        e
        for e in function_exprs(func)
        if isinstance(e, Builtin) and e.op in ("len_list", "len_str") and e.args[0] in func.params
    ]
    if not lengths:
        return None
    target = lengths[0]
    size = (
        Var(("num", *target.args[0].name), Type.INT)
        if target.op == "len_list"
        else Var((*_singular(target.args[0].name), "length"), Type.INT)
    )  # type: ignore[attr-defined]
    if size.name in taken or is_reserved(size.name):
        return None
    body = (Declare(size, target), *replace_expr(func.body, target, size))
    after = replace_function(program, dataclasses.replace(func, body=body))
    if not _valid(after):
        return None
    s, p = _name(size.name, language), _name(target.args[0].name, language)  # type: ignore[attr-defined]
    subjects = [
        f"Extract {s} variable in {f}",
        f"Store length of {p} in {s}",
        f"Compute length of {p} once in {f}",
    ]
    return Edit("extract_variable", program, after, rng.choice(subjects))


def _exprs_of(stmt: Stmt):
    for expr in stmt_exprs(stmt):
        yield from walk_expr(expr)


def add_doc_comment(program: Program, language: str, rng: random.Random) -> Edit | None:
    func = _target(program, rng)
    if func.documented:
        return None
    after = replace_function(program, dataclasses.replace(func, documented=True))
    f = _name(func.name, language)
    subjects = [f"Add {DOC_NOUNS[language]} to {f}", f"Document {f}", f"Document what {f} returns"]
    return Edit("add_doc_comment", program, after, rng.choice(subjects))


def remove_debug_print(program: Program, language: str, rng: random.Random) -> Edit | None:
    func = program.entry
    printable = [
        s.var
        for s in walk_stmts(func.body)
        if isinstance(s, Declare) and s.var.type in (Type.INT, Type.STR) and s in func.body
    ]
    loops = [s for s in func.body if isinstance(s, ForEach | ForRange | While)]
    if not printable or not loops:
        return None
    shown = rng.choice(printable)
    loop = rng.choice(loops)
    debug = Print(shown)
    with_print = dataclasses.replace(loop, body=(*loop.body, debug)) if rng.random() < 0.5 else None
    if with_print is not None and not any(isinstance(s, Return) for s in walk_stmts(loop.body)):
        body = tuple(with_print if s is loop else s for s in func.body)
    else:
        body = (*func.body[:-1], debug, func.body[-1])
    before = replace_function(program, dataclasses.replace(func, body=body))
    if not _valid(before):
        return None
    f = _name(func.name, language)
    subjects = [
        f"Remove debug print from {f}",
        f"Remove leftover debug output in {f}",
        f"Drop debug logging in {f}",
    ]
    return Edit("remove_debug_print", before, program, rng.choice(subjects))


EDITS: dict[str, EditFn] = {
    "rename_variable": rename_local,
    "rename_function": rename_func,
    "add_guard": add_guard,
    "fix_off_by_one": fix_off_by_one,
    "change_constant": change_constant,
    "fix_comparison": fix_comparison,
    "add_default": add_default,
    "extract_variable": extract_variable,
    "add_doc_comment": add_doc_comment,
    "remove_debug_print": remove_debug_print,
}


def draw_edits(program: Program, language: str, rng: random.Random, limit: int) -> list[Edit]:
    """Up to `limit` edits of different kinds, tried in random order."""
    kinds = list(EDITS)
    rng.shuffle(kinds)
    out: list[Edit] = []
    for kind in kinds:
        if len(out) == limit:
            break
        edit = EDITS[kind](program, language, rng)
        if edit is None:
            continue
        changed = [side for side in (edit.before, edit.after) if side is not program]
        if all(_valid(side) for side in changed):
            out.append(edit)
    return out
