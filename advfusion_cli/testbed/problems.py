"""Problems: a program with an English statement, a stdin/stdout format and hidden tests.

Expected outputs come from the IR interpreter (`interpreter.py`); the tests in
`tests/test_testbed_execution.py` run the rendered programs and compare.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from .families.common import Draft, ParamSpec
from .interpreter import Divergence, Interpreter
from .ir import ForEach, ForRange, Program, Type, Var, While, walk_stmts

ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
LIST_SIZES = ("n", "m", "k")
NUM_TESTS = 8
NUM_SAMPLES = 2
MIN_TESTS = 6


@dataclass(frozen=True)
class TestCase:
    input: str  # stdin, every line ending in "\n"
    output: str  # expected stdout without the trailing newline


@dataclass(frozen=True)
class Problem:
    """One program with everything the three tasks need."""

    uid: str  # stable id shared by every language's rendering
    family: str
    program: Program
    description: str
    input_spec: str
    output_spec: str
    tests: tuple[TestCase, ...]  # the first NUM_SAMPLES are the statement's samples
    tags: tuple[str, ...]
    difficulty: int
    topic: str
    module: tuple[str, ...]

    @property
    def samples(self) -> tuple[TestCase, ...]:
        return self.tests[:NUM_SAMPLES]


def format_input(params: list[ParamSpec] | tuple[Var, ...], args: tuple) -> str:
    """Stdin for one call: one line per value; a list is its length line then its values."""
    lines = []
    for param, value in zip(params, args, strict=True):
        kind = param.var.type if isinstance(param, ParamSpec) else param.type
        if kind == Type.LIST:
            lines += [str(len(value)), " ".join(map(str, value))]
        elif kind == Type.BOOL:
            lines.append("1" if value else "0")
        else:
            lines.append(str(value))
    return "".join(line + "\n" for line in lines)


def parse_input(params: tuple[Var, ...], stdin: str) -> tuple:
    """The arguments a stdin text encodes (inverse of `format_input`)."""
    lines = iter(stdin.split("\n"))
    args: list = []
    for param in params:
        if param.type == Type.LIST:
            size = int(next(lines))
            values = [int(token) for token in next(lines).split()]
            if len(values) != size:
                raise ValueError(
                    f"{param.name}: count line says {size}, found {len(values)} values"
                )
            args.append(values)
        elif param.type == Type.INT:
            args.append(int(next(lines)))
        elif param.type == Type.BOOL:
            args.append(next(lines) == "1")
        else:
            args.append(next(lines))
    return tuple(args)


def format_output(kind: Type, value) -> str:
    if kind == Type.BOOL:
        return "YES" if value else "NO"
    if kind == Type.LIST:
        return " ".join(map(str, value))
    return str(value)


def input_spec(params: list[ParamSpec]) -> str:
    sentences, line, sizes = [], 0, iter(LIST_SIZES)
    for param in params:
        if param.var.type == Type.LIST:
            size = next(sizes)
            low, high = param.length_range
            sentences.append(
                f"The {ORDINALS[line]} line contains an integer {size} ({low} <= {size} <= {high}), "
                f"the number of {param.plural}."
            )
            sentences.append(
                f"The {ORDINALS[line + 1]} line contains {size} integers separated by spaces, "
                f"the {param.plural} ({param.value_range})."
            )
            line += 2
        else:
            sentences.append(f"The {ORDINALS[line]} line contains {param.describe}.")
            line += 1
    return " ".join(sentences)


def difficulty(program: Program) -> int:
    """A rough Codeforces-like rating from size and loop nesting: 800 to 1600."""
    stmts = [s for f in program.functions for s in walk_stmts(f.body)]
    loops = sum(isinstance(s, ForEach | ForRange | While) for s in stmts)
    score = len(stmts) // 4 + loops + len(program.functions) - 1
    return 800 + 100 * min(score, 8)


def make_tests(draft: Draft, program: Program, rng: random.Random) -> tuple[TestCase, ...] | None:
    """Draw inputs until NUM_TESTS distinct valid ones; None if the program is too fragile."""
    tests: list[TestCase] = []
    seen: set[str] = set()
    interpreter = Interpreter(program)
    drawn = (tuple(p.sample(rng) for p in draft.params) for _ in range(NUM_TESTS * 5))
    for args in itertools.chain(draft.edge_inputs, drawn):
        if len(tests) == NUM_TESTS:
            break
        stdin = format_input(draft.params, args)
        if stdin in seen:
            continue
        seen.add(stdin)
        try:
            value = interpreter.run(args)
        except Divergence:
            continue
        tests.append(TestCase(stdin, format_output(program.entry.returns, value)))
    if len(tests) < MIN_TESTS or len({t.output for t in tests}) < 2:
        return None  # too few valid inputs, or a constant answer that tests nothing
    # Put the most informative cases (distinct, non-trivial answers) first as samples.
    tests.sort(key=lambda t: (t.output in ("", "0", "-1", "NO"), len(t.input)))
    if tests[0].output == tests[1].output:
        other = next((t for t in tests[2:] if t.output != tests[0].output), None)
        if other is not None:
            tests.remove(other)
            tests.insert(1, other)
    return tuple(tests)


def make_problem(
    uid: str, family: str, draft: Draft, program: Program, rng: random.Random
) -> Problem | None:
    tests = make_tests(draft, program, rng)
    if tests is None:
        return None
    description = f"{draft.context} {draft.statement}".strip()
    return Problem(
        uid=uid,
        family=family,
        program=program,
        description=description,
        input_spec=input_spec(draft.params),
        output_spec=draft.output,
        tests=tests,
        tags=draft.tags,
        difficulty=difficulty(program),
        topic=draft.topic,
        module=draft.module,
    )
