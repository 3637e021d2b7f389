"""Generic rebuilding of IR trees (frozen dataclasses): substitute expressions or statements."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .ir import Call, Expr, Function, Name, Program, Stmt, Var, child_blocks


def map_exprs(node, fn: Callable[[Expr], Expr]):
    """Rebuild `node` bottom-up, replacing every expression `e` by `fn(e)`."""
    if isinstance(node, tuple):
        return tuple(map_exprs(item, fn) for item in node)
    if isinstance(node, Expr | Stmt):
        changes = {}
        for field in dataclasses.fields(node):
            if not field.init:
                continue
            value = getattr(node, field.name)
            if isinstance(value, Expr | Stmt | tuple):
                changes[field.name] = map_exprs(value, fn)
        rebuilt = dataclasses.replace(node, **changes) if changes else node
        return fn(rebuilt) if isinstance(rebuilt, Expr) else rebuilt
    return node


def map_stmts(body: tuple[Stmt, ...], fn: Callable[[Stmt], list[Stmt]]) -> tuple[Stmt, ...]:
    """Rebuild a block top-down; `fn(stmt)` returns the statements that replace `stmt`."""
    out: list[Stmt] = []
    for stmt in body:
        for new in fn(stmt):
            blocks = child_blocks(new)
            if blocks:
                new = _with_blocks(new, tuple(map_stmts(block, fn) for block in blocks))
            out.append(new)
    return tuple(out)


def _with_blocks(stmt: Stmt, blocks: tuple[tuple[Stmt, ...], ...]) -> Stmt:
    if hasattr(stmt, "orelse"):
        return dataclasses.replace(stmt, then=blocks[0], orelse=blocks[1])  # type: ignore[type-var]
    return dataclasses.replace(stmt, body=blocks[0])  # type: ignore[type-var]


def replace_var(node, old: Var | Name, new: Var | Name):
    """Rename one variable everywhere inside `node`."""
    old_name = old.name if isinstance(old, Var) else old
    new_name = new.name if isinstance(new, Var) else new

    def swap(e: Expr) -> Expr:
        return Var(new_name, e.type) if isinstance(e, Var) and e.name == old_name else e

    return map_exprs(node, swap)


def replace_expr(node, target: Expr, replacement: Expr):
    return map_exprs(node, lambda e: replacement if e == target else e)


def rename_function(program: Program, old: Name, new: Name) -> Program:
    """Rename a function and every call to it."""

    def swap(e: Expr) -> Expr:
        return dataclasses.replace(e, func=new) if isinstance(e, Call) and e.func == old else e

    functions = []
    for func in program.functions:
        body = map_exprs(func.body, swap)
        functions.append(
            dataclasses.replace(func, name=new if func.name == old else func.name, body=body)
        )
    return Program(tuple(functions))


def replace_function(program: Program, func: Function) -> Program:
    return Program(tuple(func if f.name == func.name else f for f in program.functions))
