"""Static checks that make an IR program compile and mean the same thing in all five languages.

Go rejects unused locals, Java rejects unreachable statements and reads of names out of
scope, Python and Ruby let a local shadow a function: so the IR keeps to one strict subset
(every local read, no shadowing, no code after `return`/`break`, loop bounds not changed
inside the loop, a final `return`). `check_program` raises `InvalidProgram` naming the rule.
"""

from __future__ import annotations

from .ir import (
    BUILTINS,
    COMPARE_OPS,
    Arith,
    Assign,
    AugAssign,
    Break,
    Builtin,
    Call,
    Compare,
    Concat,
    Declare,
    Expr,
    ForEach,
    ForRange,
    Function,
    If,
    ListAppend,
    Logic,
    Name,
    Neg,
    Not,
    Print,
    Program,
    Return,
    Stmt,
    Type,
    Var,
    While,
    walk_expr,
    walk_stmts,
)


class InvalidProgram(Exception):
    """The program breaks one of the cross-language rules."""


def _fail(func: Function, message: str) -> InvalidProgram:
    return InvalidProgram(f"{'_'.join(func.name)}: {message}")


class _FunctionChecker:
    def __init__(self, program: Program, func: Function):
        self.program = program
        self.func = func
        self.signatures = {f.name: f for f in program.functions}
        self.order = {f.name: index for index, f in enumerate(program.functions)}
        self.scopes: list[dict[Name, Type]] = [{p.name: p.type for p in func.params}]
        self.loop_vars: set[Name] = set()
        self.declared: set[Name] = {p.name for p in func.params}
        self.reads: set[Name] = set()

    def lookup(self, name: Name) -> Type:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        raise _fail(self.func, f"{'_'.join(name)} used out of scope")

    def declare(self, var: Var) -> None:
        if any(var.name in scope for scope in self.scopes):
            raise _fail(self.func, f"{'_'.join(var.name)} shadows an enclosing name")
        if var.name in self.declared:
            raise _fail(self.func, f"{'_'.join(var.name)} declared twice")
        if var.name in self.signatures:
            raise _fail(self.func, f"{'_'.join(var.name)} shadows a function")
        self.scopes[-1][var.name] = var.type
        self.declared.add(var.name)

    def expr(self, expr: Expr) -> Type:
        if isinstance(expr, Var):
            if self.lookup(expr.name) != expr.type:
                raise _fail(self.func, f"{'_'.join(expr.name)} has inconsistent types")
            self.reads.add(expr.name)
        elif isinstance(expr, Neg):
            self.want(expr.operand, Type.INT)
        elif isinstance(expr, Not):
            self.want(expr.operand, Type.BOOL)
        elif isinstance(expr, Arith):
            self.want(expr.left, Type.INT)
            self.want(expr.right, Type.INT)
        elif isinstance(expr, Concat):
            self.want(expr.left, Type.STR)
            self.want(expr.right, Type.STR)
        elif isinstance(expr, Logic):
            self.want(expr.left, Type.BOOL)
            self.want(expr.right, Type.BOOL)
        elif isinstance(expr, Compare):
            left, right = self.expr(expr.left), self.expr(expr.right)
            if left != right or left == Type.LIST or expr.op not in COMPARE_OPS:
                raise _fail(self.func, f"cannot compare {left.value} {expr.op} {right.value}")
            if expr.op not in ("==", "!=") and left not in (Type.INT, Type.CHAR):
                raise _fail(self.func, f"ordering on {left.value}")
        elif isinstance(expr, Call):
            callee = self.signatures.get(expr.func)
            if callee is None or self.order[expr.func] >= self.order[self.func.name]:
                raise _fail(
                    self.func, f"{'_'.join(expr.func)}: only helpers defined earlier may be called"
                )
            if len(expr.args) != len(callee.params) or expr.type != callee.returns:
                raise _fail(self.func, f"call to {'_'.join(expr.func)} does not match")
            for arg, param in zip(expr.args, callee.params, strict=True):
                self.want(arg, param.type)
        elif isinstance(expr, Builtin):
            arg_types, _ = BUILTINS[expr.op]
            if len(arg_types) != len(expr.args):
                raise _fail(self.func, f"{expr.op} takes {len(arg_types)} arguments")
            for arg, wanted in zip(expr.args, arg_types, strict=True):
                self.want(arg, wanted)
        return expr.type

    def want(self, expr: Expr, wanted: Type) -> None:
        if self.expr(expr) != wanted:
            raise _fail(self.func, f"expected {wanted.value}, got {expr.type.value}")

    def assigned_in(self, body: tuple[Stmt, ...]) -> set[Name]:
        names: set[Name] = set()
        for stmt in walk_stmts(body):
            if isinstance(stmt, Assign | AugAssign | Declare):
                names.add(stmt.var.name)
            elif isinstance(stmt, ListAppend):
                names.add(stmt.target.name)
        return names

    def block(self, body: tuple[Stmt, ...], in_loop: bool, new_scope: dict | None = None) -> bool:
        """Check a block; returns True when it always ends in return/break."""
        self.scopes.append(dict(new_scope or {}))
        terminated = False
        for stmt in body:
            if terminated:
                raise _fail(self.func, "statement after return/break")
            terminated = self.stmt(stmt, in_loop)
        self.scopes.pop()
        return terminated

    def stmt(self, stmt: Stmt, in_loop: bool) -> bool:
        if isinstance(stmt, Declare):
            self.want(stmt.value, stmt.var.type)
            self.declare(stmt.var)
        elif isinstance(stmt, Assign | AugAssign):
            if stmt.var.name in self.loop_vars:
                raise _fail(self.func, "assignment to a loop variable")
            if self.lookup(stmt.var.name) != stmt.var.type:
                raise _fail(self.func, "assignment changes a type")
            self.want(stmt.value, stmt.var.type)
            if isinstance(stmt, AugAssign):
                ok = stmt.op in ("+", "-", "*") if stmt.var.type == Type.INT else stmt.op == "+"
                if not ok or stmt.var.type not in (Type.INT, Type.STR):
                    raise _fail(self.func, f"bad compound assignment {stmt.op}=")
        elif isinstance(stmt, ListAppend):
            if self.lookup(stmt.target.name) != Type.LIST:
                raise _fail(self.func, "append to a non-list")
            self.want(stmt.value, Type.INT)
        elif isinstance(stmt, If):
            self.want(stmt.cond, Type.BOOL)
            then_ends = self.block(stmt.then, in_loop)
            else_ends = self.block(stmt.orelse, in_loop) if stmt.orelse else False
            return then_ends and else_ends
        elif isinstance(stmt, ForRange):
            if stmt.step == 0 or stmt.var.type != Type.INT:
                raise _fail(self.func, "bad range loop")
            self.want(stmt.start, Type.INT)
            self.want(stmt.stop, Type.INT)
            bound_names = {e.name for e in walk_expr(stmt.stop) if isinstance(e, Var)}
            if bound_names & self.assigned_in(stmt.body):
                raise _fail(self.func, "loop bound changes inside the loop")
            self.reads.add(stmt.var.name)  # read by the loop header in C-style languages
            self.loop_body(stmt.var, stmt.body)
        elif isinstance(stmt, ForEach):
            source = self.expr(stmt.iterable)
            item = {Type.LIST: Type.INT, Type.STR: Type.CHAR}.get(source)
            if item is None or stmt.var.type != item:
                raise _fail(self.func, "bad for-each loop")
            iterated = {e.name for e in walk_expr(stmt.iterable) if isinstance(e, Var)}
            if iterated & self.assigned_in(stmt.body):
                raise _fail(self.func, "for-each source changes inside the loop")
            self.loop_body(stmt.var, stmt.body)
        elif isinstance(stmt, While):
            self.want(stmt.cond, Type.BOOL)
            self.block(stmt.body, in_loop=True)
        elif isinstance(stmt, Break):
            if not in_loop:
                raise _fail(self.func, "break outside a loop")
            return True
        elif isinstance(stmt, Return):
            self.want(stmt.value, self.func.returns)
            return True
        elif isinstance(stmt, Print):
            if self.expr(stmt.value) == Type.LIST:
                raise _fail(self.func, "printing a list differs across languages")
        else:
            raise _fail(self.func, f"unknown statement {type(stmt).__name__}")
        return False

    def loop_body(self, var: Var, body: tuple[Stmt, ...]) -> None:
        if any(var.name in scope for scope in self.scopes) or var.name in self.signatures:
            raise _fail(self.func, f"loop variable {'_'.join(var.name)} shadows a name")
        self.loop_vars.add(var.name)
        self.declared.add(var.name)
        self.block(body, in_loop=True, new_scope={var.name: var.type})

    def check(self) -> None:
        body = self.func.body
        if not body or not isinstance(body[-1], Return):
            raise _fail(self.func, "must end with a return")
        self.block(body, in_loop=False)
        unread = self.declared - self.reads
        if unread:
            names = ", ".join(sorted("_".join(n) for n in unread))
            raise _fail(self.func, f"never read: {names}")
        defaults = [name for name, _ in self.func.defaults]
        trailing = [p.name for p in self.func.params[len(self.func.params) - len(defaults) :]]
        if defaults != trailing:
            raise _fail(self.func, "defaults must cover trailing parameters")


def check_program(program: Program) -> None:
    """Raise `InvalidProgram` unless the program is inside the portable subset."""
    names = [f.name for f in program.functions]
    if len(set(names)) != len(names):
        raise InvalidProgram("duplicate function names")
    for func in program.functions:
        _FunctionChecker(program, func).check()
