"""Random programs: pick a family, build its IR, check it, attach tests; deduplicated.

Every accepted program passed `check_program` (portable to all five languages), uses no
reserved word in any language, and has at least six interpreter-computed tests with two or
more distinct answers.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator

from .families import lists, numbers, text
from .families.common import Draft
from .ir import Function, Name, Program, Var, walk_stmts
from .ir import stmt_exprs as _stmt_exprs
from .naming import is_reserved
from .problems import Problem, make_problem
from .render import render_module
from .validate import InvalidProgram, check_program

Family = Callable[[random.Random], Draft]

FAMILIES: dict[str, tuple[Family, int]] = {**lists.FAMILIES, **numbers.FAMILIES, **text.FAMILIES}


def seeded_rng(*parts: object) -> random.Random:
    """An independent, platform-stable random stream for each purpose (seeded by a hash)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _identifiers(func: Function) -> set[Name]:
    names = {func.name, *(p.name for p in func.params)}
    for stmt in walk_stmts(func.body):
        for expr in _stmt_exprs(stmt):
            if isinstance(expr, Var):
                names.add(expr.name)
    return names


def _uses_reserved(program: Program) -> bool:
    return any(is_reserved(n) for f in program.functions for n in _identifiers(f))


def fingerprint(program: Program) -> str:
    """Programs equal as Python source are the same program."""
    return hashlib.sha1(render_module(program, "python").encode()).hexdigest()


def draw_problem(rng: random.Random, uid: str, attempts: int = 50) -> Problem:
    names = sorted(FAMILIES)
    weights = [FAMILIES[n][1] for n in names]
    for _ in range(attempts):
        family = rng.choices(names, weights)[0]
        draft = FAMILIES[family][0](rng)
        program = Program(tuple(draft.functions))
        if _uses_reserved(program):
            continue
        try:
            check_program(program)
        except InvalidProgram:
            continue
        problem = make_problem(uid, family, draft, program, rng)
        if problem is not None:
            return problem
    raise RuntimeError(f"no valid program after {attempts} attempts")


def problem_stream(seed: int, stream: str, exclude: set[str] | None = None) -> Iterator[Problem]:
    """Endless distinct problems with ids `<stream>-00000`, ... (skipping `exclude` prints)."""
    rng = seeded_rng("testbed", seed, stream)
    seen = set(exclude or ())
    index = 0
    while True:
        problem = draw_problem(rng, f"{stream}-{index:05d}")
        key = fingerprint(problem.program)
        if key in seen:
            continue
        seen.add(key)
        index += 1
        yield problem
