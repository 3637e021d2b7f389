"""What a program family returns (a `Draft`) and the pieces families share."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field

from ..build import BOOL, INT, LIST, STR, and_, cmp, get, length, lit, mod, var
from ..ir import (
    AugAssign,
    Declare,
    Expr,
    ForEach,
    ForRange,
    Function,
    Stmt,
    Type,
    Var,
    While,
)
from ..vocab import Quantity, Scalar, TextKind

Sampler = Callable[[random.Random], object]


@dataclass(frozen=True)
class ParamSpec:
    """One stdin value of the entry function: its variable, how to draw it, how to describe it."""

    var: Var
    sample: Sampler
    describe: str  # e.g. "an integer limit (0 <= limit <= 100)"
    plural: str = "integers"  # for lists: what the values are ("prices")
    value_range: str = ""  # for lists: "1 <= each price <= 500"
    length_range: tuple[int, int] = (0, 0)  # for lists: bounds on their length


@dataclass
class Draft:
    """A family's output: the functions, the problem statement and the input domains."""

    functions: list[Function]
    statement: str  # what to compute, in English
    params: list[ParamSpec]
    output: str  # the output specification sentence
    tags: tuple[str, ...]
    topic: str  # package / repository theme
    module: tuple[str, ...]  # file/class stem words, e.g. ("price", "stats")
    context: str = ""
    edge_inputs: list[tuple] = field(default_factory=list)  # inputs always tried first


def title(text: str) -> str:
    return text[:1].upper() + text[1:]


# ----- input domains -------------------------------------------------------------------


def list_param(
    q: Quantity, min_len: int = 0, max_len: int = 12, name: str | None = None
) -> ParamSpec:
    low, high = q.low, q.high

    def sample(rng: random.Random) -> list[int]:
        return [rng.randint(low, high) for _ in range(rng.randint(min_len, max_len))]

    return ParamSpec(
        var(name or q.plural, LIST),
        sample,
        f"the {q.plural}",
        plural=q.plural,
        value_range=f"{low} <= each {q.singular} <= {high}",
        length_range=(min_len, max_len),
    )


def int_param(scalar: Scalar, describe: str | None = None) -> ParamSpec:
    low, high = scalar.low, scalar.high
    text = describe or f"an integer {scalar.name.replace('_', ' ')}"
    return ParamSpec(
        var(scalar.name, INT),
        lambda rng: rng.randint(low, high),
        f"{text} ({low} <= {scalar.name} <= {high})",
    )


ALPHABETS = {
    "lower": string.ascii_lowercase,
    "mixed": string.ascii_letters + "0123456789",
    "alnum": string.ascii_lowercase + "0123456789",
    "code": string.ascii_uppercase + "0123456789",
    "dna": "ACGT",
}

ALPHABET_TEXT = {
    "lower": "lowercase English letters",
    "capitalized": "English letters, the first one uppercase and the rest lowercase",
    "mixed": "English letters and digits",
    "alnum": "lowercase English letters and digits",
    "code": "uppercase English letters and digits",
    "dna": "the letters A, C, G and T",
}


def random_text(rng: random.Random, kind: TextKind, min_len: int | None = None) -> str:
    size = rng.randint(kind.min_len if min_len is None else min_len, kind.max_len)
    if kind.alphabet == "capitalized":
        if size == 0:
            return ""
        rest = "".join(rng.choice(string.ascii_lowercase) for _ in range(size - 1))
        return rng.choice(string.ascii_uppercase) + rest
    return "".join(rng.choice(ALPHABETS[kind.alphabet]) for _ in range(size))


def text_param(
    kind: TextKind, sample: Sampler | None = None, min_len: int | None = None
) -> ParamSpec:
    low = kind.min_len if min_len is None else min_len
    return ParamSpec(
        var(kind.noun, STR),
        sample or (lambda rng: random_text(rng, kind, min_len)),
        f"a string {kind.noun} of {low} to {kind.max_len} characters, "
        f"consisting of {ALPHABET_TEXT[kind.alphabet]}",
    )


def bool_param(words: str, meaning: str) -> ParamSpec:
    return ParamSpec(
        var(words, BOOL),
        lambda rng: rng.random() < 0.5,
        f"a flag {words} (1 {meaning}, 0 otherwise)",
    )


# ----- predicates on list elements -----------------------------------------------------


@dataclass(frozen=True)
class Predicate:
    """A condition on one element, with the words that name it and the English that states it."""

    prefix: tuple[str, ...]  # words before the plural: ("even",) -> even_scores
    suffix: tuple[str, ...]  # words after the plural: ("above",) -> prices_above
    english: str  # completes "... that are {english}"
    test: Callable[[Expr], Expr]
    params: tuple[ParamSpec, ...] = ()
    setup: tuple[Stmt, ...] = ()  # e.g. a named constant the test reads


def predicates(rng: random.Random, q: Quantity) -> list[Predicate]:
    """Every condition that makes sense for the values of quantity `q`."""
    span = Scalar("limit", q.low, q.high)
    out = []
    for name, op, words in (
        ("limit", ">", "strictly greater than limit"),
        ("minimum", ">=", "at least minimum"),
        ("limit", "<", "strictly less than limit"),
        ("maximum", "<=", "at most maximum"),
        ("threshold", ">", "strictly greater than threshold"),
        ("cutoff", "<", "below cutoff"),
    ):
        param = int_param(Scalar(name, span.low, span.high))
        suffix = {">": ("above",), ">=": ("at", "least"), "<": ("below",), "<=": ("at", "most")}[op]
        out.append(
            Predicate((), suffix, words, lambda x, op=op, p=param.var: cmp(op, x, p), (param,))
        )
    middle = rng.randint(q.low + (q.high - q.low) // 4, q.high - (q.high - q.low) // 4)
    const = var(rng.choice(["threshold", "cutoff", "limit"]), INT)
    for op, adjective, words in ((">", "large", "greater than"), ("<", "small", "less than")):
        out.append(
            Predicate(
                (adjective,),
                (),
                f"{words} {middle}",
                lambda x, op=op, c=const: cmp(op, x, c),
                setup=(Declare(const, lit(middle)),),
            )
        )
    if q.nonnegative:
        out.append(Predicate(("even",), (), "even", lambda x: cmp("==", mod(x, 2), 0)))
        out.append(Predicate(("odd",), (), "odd", lambda x: cmp("==", mod(x, 2), 1)))
        divisor = int_param(Scalar("divisor", 2, 9))
        out.append(
            Predicate(
                (),
                ("divisible", "by"),
                "divisible by divisor",
                lambda x, d=divisor.var: cmp("==", mod(x, d), 0),
                (divisor,),
            )
        )
    if q.low < 0:
        out.append(Predicate(("negative",), (), "negative", lambda x: cmp("<", x, 0)))
        out.append(Predicate(("positive",), (), "positive", lambda x: cmp(">", x, 0)))
    elif q.low == 0:
        out.append(Predicate(("nonzero",), (), "not zero", lambda x: cmp("!=", x, 0)))
    low = int_param(Scalar("low", q.low, q.high))
    high = int_param(Scalar("high", q.low, q.high))
    out.append(
        Predicate(
            (),
            ("between",),
            "between low and high inclusive",
            lambda x, lo=low.var, hi=high.var: and_(cmp(">=", x, lo), cmp("<=", x, hi)),
            (low, high),
        )
    )
    return out


def pred_name(
    verb: tuple[str, ...], pred: Predicate, noun: str, tail: tuple[str, ...] = ()
) -> tuple[str, ...]:
    return (*verb, *pred.prefix, *noun.split("_"), *pred.suffix, *tail)


# ----- traversals: the same loop in three shapes ---------------------------------------

INDEX_NAMES = ("i", "index", "position", "idx")


def traverse(
    rng: random.Random,
    items: Var,
    element_words: str,
    body: Callable[[Expr], list[Stmt]],
    style: str | None = None,
) -> list[Stmt]:
    """Loop over `items`, calling `body(element)`: for-each, index loop, or while loop."""
    style = style or rng.choice(["each", "each", "index", "while"])
    if style == "each":
        element = var(element_words, INT if items.type == LIST else Type.CHAR)
        return [ForEach(element, items, tuple(body(element)))]
    index = var(rng.choice(INDEX_NAMES), INT)
    element_expr = get(items, index)
    if style == "index":
        return [ForRange(index, lit(0), length(items), 1, tuple(body(element_expr)))]
    step = AugAssign(index, "+", lit(1))
    loop = While(cmp("<", index, length(items)), (*body(element_expr), step))
    return [Declare(index, lit(0)), loop]


def counter(rng: random.Random, words: tuple[str, ...]) -> Var:
    return var(rng.choice(words), INT)


def increment(v: Var) -> AugAssign:
    return AugAssign(v, "+", lit(1))
