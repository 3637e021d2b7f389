"""Program families over integers: digits, divisors, loops until a condition, tiered rules."""

from __future__ import annotations

import random

from ..build import (
    BOOL,
    INT,
    STR,
    add,
    and_,
    call,
    cmp,
    div,
    lit,
    mod,
    mul,
    name,
    or_,
    sub,
    to_str,
    var,
)
from ..ir import Assign, AugAssign, Concat, Declare, ForRange, Function, If, Return, Stmt, While
from ..vocab import Scalar
from .common import Draft, increment, int_param


def _draft(
    funcs,
    statement,
    params,
    output,
    topic="numbers",
    module=("math", "utils"),
    tags=("math",),
    context="",
    edge=(),
) -> Draft:
    return Draft(funcs, statement, params, output, tags, topic, module, context, list(edge))


def _copy_param(rng: random.Random, param_var, words=("remaining", "rest", "value")):
    """Work on a local copy rather than reassigning the parameter."""
    local = var(rng.choice(words), INT)
    return local, Declare(local, param_var)


def digit_loop(rng: random.Random) -> Draft:
    n = int_param(Scalar(rng.choice(["number", "amount", "value"]), 0, 999999))
    rest, copy = _copy_param(rng, n.var, ("remaining", "rest"))
    kind = rng.choice(["sum", "count", "reverse", "product", "largest"])
    acc = var(
        {
            "sum": "total",
            "count": "digits",
            "reverse": "reversed_value",
            "product": "product",
            "largest": "largest",
        }[kind],
        INT,
    )
    digit = var("digit", INT)
    start = {"product": 1}.get(kind, 0)
    body: list[Stmt] = [copy, Declare(acc, lit(start))]
    loop: list[Stmt] = [Declare(digit, mod(rest, 10))]
    if kind == "sum":
        loop.append(AugAssign(acc, "+", digit))
    elif kind == "count":
        loop = [increment(acc)]
    elif kind == "reverse":
        loop.append(Assign(acc, add(mul(acc, 10), digit)))
    elif kind == "product":
        loop.append(AugAssign(acc, "*", digit))
    else:
        loop.append(If(cmp(">", digit, acc), (Assign(acc, digit),)))
    loop.append(Assign(rest, div(rest, 10)))
    if kind == "count":
        body = [If(cmp("==", n.var, 0), (Return(lit(1)),)), *body]
    body += [While(cmp(">", rest, 0), tuple(loop)), Return(acc)]
    words = {
        "sum": (("digit", "sum"), "the sum of the digits of"),
        "count": (("count", "digits"), "the number of digits of"),
        "reverse": (("reverse", "digits"), "the number formed by the digits in reverse order of"),
        "product": (("digit", "product"), "the product of the digits of"),
        "largest": (("largest", "digit"), "the largest digit of"),
    }[kind]
    what = f"{words[1]} {n.var.name[0]}"
    if kind == "product":
        what += " (the product for 0 is 1)"
    func = Function(name(words[0]), (n.var,), INT, tuple(body), f"Return {what}.")
    return _draft([func], f"Find {what}.", [n], "Print one integer: the answer.", edge=[(0,), (7,)])


def is_prime(rng: random.Random) -> Draft:
    n = int_param(Scalar(rng.choice(["number", "value", "candidate"]), 0, 2000))
    divisor = var(rng.choice(["divisor", "factor", "d"]), INT)
    body = [
        If(cmp("<", n.var, 2), (Return(lit(False)),)),
        Declare(divisor, lit(2)),
        While(
            cmp("<=", mul(divisor, divisor), n.var),
            (If(cmp("==", mod(n.var, divisor), 0), (Return(lit(False)),)), increment(divisor)),
        ),
        Return(lit(True)),
    ]
    func = Function(
        name(("is", "prime")),
        (n.var,),
        BOOL,
        tuple(body),
        f"Check whether {n.var.name[0]} is a prime number.",
    )
    return _draft(
        [func],
        f"Check whether {n.var.name[0]} is a prime number.",
        [n],
        "Print YES if it is prime, otherwise print NO.",
        tags=("math", "number theory"),
        edge=[(2,), (97,), (1,)],
    )


def gcd(rng: random.Random) -> Draft:
    first, second = rng.choice([("a", "b"), ("width", "height"), ("first", "second")])
    a = int_param(Scalar(first, 1, 1000))
    b = int_param(Scalar(second, 1, 1000))
    x, y = var("x", INT), var("y", INT)
    rest = var(rng.choice(["remainder", "rest"]), INT)
    body = [
        Declare(x, a.var),
        Declare(y, b.var),
        While(cmp("!=", y, 0), (Declare(rest, mod(x, y)), Assign(x, y), Assign(y, rest))),
        Return(x),
    ]
    func = Function(
        name(rng.choice([("gcd",), ("greatest", "common", "divisor")])),
        (a.var, b.var),
        INT,
        tuple(body),
        f"Return the greatest common divisor of {first} and {second}.",
    )
    edge = [(12, 18), (7, 13)]
    if rng.random() < 0.4:
        lcm = Function(
            name(("least", "common", "multiple")),
            (a.var, b.var),
            INT,
            (Return(mul(div(a.var, call(func, a.var, b.var)), b.var)),),
            f"Return the least common multiple of {first} and {second}.",
        )
        return _draft(
            [func, lcm],
            f"Find the least common multiple of {first} and {second}.",
            [a, b],
            "Print one integer: the least common multiple.",
            tags=("math", "number theory"),
            edge=edge,
        )
    return _draft(
        [func],
        f"Find the greatest common divisor of {first} and {second}.",
        [a, b],
        "Print one integer: the greatest common divisor.",
        tags=("math", "number theory"),
        edge=edge,
    )


def multiples_below(rng: random.Random) -> Draft:
    limit = int_param(Scalar(rng.choice(["limit", "bound"]), 1, 200))
    divisor = int_param(Scalar(rng.choice(["divisor", "step"]), 1, 12))
    i = var(rng.choice(["i", "candidate", "value"]), INT)
    total = var(rng.choice(["total", "count"]), INT)
    counting = total.name == ("count",)
    update = increment(total) if counting else AugAssign(total, "+", i)
    body = [
        Declare(total, lit(0)),
        ForRange(i, lit(1), limit.var, 1, (If(cmp("==", mod(i, divisor.var), 0), (update,)),)),
        Return(total),
    ]
    lname, dname = limit.var.name[0], divisor.var.name[0]
    what = "how many" if counting else "the sum of the"
    fname = ("count", "multiples") if counting else ("sum", "of", "multiples")
    func = Function(
        name(fname),
        (limit.var, divisor.var),
        INT,
        tuple(body),
        f"Find {what} positive multiples of {dname} below {lname}.",
    )
    return _draft(
        [func],
        f"Find {what} positive integers below {lname} that are multiples of {dname}.",
        [limit, divisor],
        "Print one integer: the answer.",
    )


def power_loop(rng: random.Random) -> Draft:
    base = int_param(Scalar("base", 0, 9))
    exponent = int_param(Scalar("exponent", 0, 9))
    result = var(rng.choice(["result", "power", "product"]), INT)
    i = var("i", INT)
    body = [
        Declare(result, lit(1)),
        ForRange(i, lit(0), exponent.var, 1, (AugAssign(result, "*", base.var),)),
        Return(result),
    ]
    func = Function(
        name(rng.choice([("power",), ("raise", "to", "power")])),
        (base.var, exponent.var),
        INT,
        tuple(body),
        "Return base raised to the power exponent.",
    )
    return _draft(
        [func],
        "Compute base raised to the power exponent (any number to the power 0 is 1).",
        [base, exponent],
        "Print one integer: the power.",
    )


def factorial(rng: random.Random) -> Draft:
    n = int_param(Scalar(rng.choice(["n", "count", "size"]), 0, 12))
    result = var(rng.choice(["result", "product"]), INT)
    i = var("i", INT)
    body = [
        Declare(result, lit(1)),
        ForRange(i, lit(2), add(n.var, 1), 1, (AugAssign(result, "*", i),)),
        Return(result),
    ]
    func = Function(
        name(("factorial",)),
        (n.var,),
        INT,
        tuple(body),
        f"Return the factorial of {n.var.name[0]}.",
    )
    return _draft(
        [func],
        f"Compute the factorial of {n.var.name[0]}: the product of all integers from 1 to {n.var.name[0]} (the factorial of 0 is 1).",
        [n],
        "Print one integer: the factorial.",
        edge=[(0,), (5,)],
    )


def collatz(rng: random.Random) -> Draft:
    n = int_param(Scalar(rng.choice(["start", "number", "value"]), 1, 300))
    current, copy = _copy_param(rng, n.var, ("current", "value_now"))
    steps = var("steps", INT)
    body = [
        copy,
        Declare(steps, lit(0)),
        While(
            cmp("!=", current, 1),
            (
                If(
                    cmp("==", mod(current, 2), 0),
                    (Assign(current, div(current, 2)),),
                    (Assign(current, add(mul(current, 3), 1)),),
                ),
                increment(steps),
            ),
        ),
        Return(steps),
    ]
    func = Function(
        name(("collatz", "steps")),
        (n.var,),
        INT,
        tuple(body),
        "Count the Collatz steps needed to reach 1.",
    )
    return _draft(
        [func],
        "Repeat until the number becomes 1: halve it when it is even, otherwise multiply it by 3 and add 1. Count the steps.",
        [n],
        "Print one integer: the number of steps.",
        edge=[(1,), (6,)],
    )


def count_divisors(rng: random.Random) -> Draft:
    n = int_param(Scalar(rng.choice(["number", "value", "area"]), 1, 300))
    count = var(rng.choice(["count", "divisors"]), INT)
    d = var(rng.choice(["d", "candidate", "divisor"]), INT)
    body = [
        Declare(count, lit(0)),
        ForRange(
            d, lit(1), add(n.var, 1), 1, (If(cmp("==", mod(n.var, d), 0), (increment(count),)),)
        ),
        Return(count),
    ]
    func = Function(
        name(("count", "divisors")),
        (n.var,),
        INT,
        tuple(body),
        f"Count the positive divisors of {n.var.name[0]}.",
    )
    return _draft(
        [func],
        f"Count the positive integers that divide {n.var.name[0]} exactly.",
        [n],
        "Print one integer: the number of divisors.",
        tags=("math", "number theory"),
    )


TIERED = (
    # function words, parameter, unit, statement subject
    (("shipping", "cost"), "weight", "kilograms", "A courier charges for parcels by weight."),
    (("parking", "fee"), "hours", "hours", "A car park charges by the number of hours parked."),
    (("late", "fee"), "days", "days", "A library charges a fee for books returned late."),
    (
        ("delivery", "charge"),
        "distance",
        "kilometres",
        "A pizzeria charges for delivery by distance.",
    ),
    (("water", "bill"), "usage", "cubic metres", "A water company bills households by usage."),
    (("storage", "cost"), "boxes", "boxes", "A storage company charges by the number of boxes."),
)


def tiered_fee(rng: random.Random) -> Draft:
    words, param, unit, context = rng.choice(TIERED)
    x = int_param(Scalar(param, 0, 60))
    first = rng.randint(1, 10)
    second = first + rng.randint(2, 15)
    base, middle, rate = rng.randint(0, 10), rng.randint(11, 30), rng.randint(1, 6)
    base_fee, middle_fee = (
        var("base_fee", INT),
        var(rng.choice(["standard_fee", "middle_fee"]), INT),
    )
    per_unit = var(rng.choice(["rate", "extra_per_unit"]), INT)
    body = [
        Declare(base_fee, lit(base)),
        Declare(middle_fee, lit(middle)),
        Declare(per_unit, lit(rate)),
        If(
            cmp("<=", x.var, first),
            (Return(base_fee),),
            (If(cmp("<=", x.var, second), (Return(middle_fee),)),),
        ),
        Return(add(middle_fee, mul(sub(x.var, second), per_unit))),
    ]
    func = Function(
        name(words),
        (x.var,),
        INT,
        tuple(body),
        f"Compute the {' '.join(words)} for the given {param}.",
    )
    statement = (
        f"Up to {first} {unit} cost {base}; up to {second} {unit} cost {middle}; beyond that, "
        f"every {unit.rstrip('s') if unit.endswith('s') else unit} over {second} adds {rate} to {middle}. Compute the {' '.join(words)}."
    )
    return _draft(
        [func],
        statement,
        [x],
        f"Print one integer: the {' '.join(words)}.",
        topic="billing",
        module=("fees",),
        tags=("implementation",),
        context=context,
        edge=[(first,), (second,), (second + 1,)],
    )


LABELS = (
    (
        ("grade", "letter"),
        "score",
        0,
        100,
        ("A", "B", "C", "F"),
        "An exam turns scores into letter grades.",
    ),
    (
        ("temperature", "label"),
        "temperature",
        -20,
        45,
        ("hot", "warm", "mild", "cold"),
        "A weather app labels temperatures.",
    ),
    (
        ("speed", "category"),
        "speed",
        0,
        200,
        ("fast", "normal", "slow", "stopped"),
        "A tracker labels vehicle speeds.",
    ),
    (
        ("battery", "status"),
        "charge",
        0,
        100,
        ("full", "good", "low", "empty"),
        "A phone shows the battery status.",
    ),
)


def threshold_label(rng: random.Random) -> Draft:
    words, param, low, high, labels, context = rng.choice(LABELS)
    x = int_param(Scalar(param, low, high))
    cuts = sorted(rng.sample(range(low + 1, high), 3), reverse=True)
    stmts = _flatten_chain(x.var, cuts, labels)
    rules = "; ".join(f"at least {c} gives {lab}" for c, lab in zip(cuts, labels[:3], strict=True))
    func = Function(
        name(words),
        (x.var,),
        STR,
        tuple(stmts),
        f"Return the {' '.join(words)} for the given {param}.",
    )
    statement = f"The rules, checked from the top: {rules}; anything lower gives {labels[3]}. Print the {' '.join(words)}."
    return _draft(
        [func],
        statement,
        [x],
        f"Print the {' '.join(words)}.",
        topic="labels",
        module=(words[0], "labels"),
        tags=("implementation",),
        context=context,
        edge=[(c,) for c in cuts],
    )


def _flatten_chain(x, cuts, labels) -> list[Stmt]:
    """`if x >= c1: return l1` / `elif` ... then a final `return` outside the chain."""
    chain: tuple[Stmt, ...] = ()
    for cut, label in reversed(list(zip(cuts[1:], labels[1:3], strict=True))):
        chain = (If(cmp(">=", x, cut), (Return(lit(label)),), chain),)
    return [If(cmp(">=", x, cuts[0]), (Return(lit(labels[0])),), chain), Return(lit(labels[3]))]


WORD_PAIRS = (("Fizz", "Buzz"), ("Ping", "Pong"), ("Tick", "Tock"), ("Foo", "Bar"), ("Zig", "Zag"))


def fizz_buzz(rng: random.Random) -> Draft:
    first_word, second_word = rng.choice(WORD_PAIRS)
    a, b = rng.sample(range(2, 8), 2)
    n = int_param(Scalar(rng.choice(["number", "n", "turn"]), 1, 100))
    first_hit, second_hit = cmp("==", mod(n.var, a), 0), cmp("==", mod(n.var, b), 0)
    body = [
        If(and_(first_hit, second_hit), (Return(lit(first_word + second_word)),)),
        If(first_hit, (Return(lit(first_word)),)),
        If(second_hit, (Return(lit(second_word)),)),
        Return(to_str(n.var)),
    ]
    func = Function(
        name((first_word.lower(), second_word.lower())),
        (n.var,),
        STR,
        tuple(body),
        f"Return the {first_word}{second_word} word for {n.var.name[0]}.",
    )
    statement = (
        f"Print {first_word}{second_word} if the number is divisible by both {a} and {b}, {first_word} if it is divisible only by {a}, "
        f"{second_word} if it is divisible only by {b}, and the number itself otherwise."
    )
    return _draft(
        [func],
        statement,
        [n],
        "Print one word or number.",
        tags=("implementation",),
        edge=[(a * b,), (a,), (b,)],
    )


def leap_year(rng: random.Random) -> Draft:
    year = int_param(Scalar("year", 1, 3000))
    cond = or_(
        and_(cmp("==", mod(year.var, 4), 0), cmp("!=", mod(year.var, 100), 0)),
        cmp("==", mod(year.var, 400), 0),
    )
    func = Function(
        name(("is", "leap", "year")),
        (year.var,),
        BOOL,
        (Return(cond),),
        "Check whether year is a leap year.",
    )
    return _draft(
        [func],
        "A year is a leap year if it is divisible by 4 but not by 100, or if it is divisible by 400. Check whether the year is a leap year.",
        [year],
        "Print YES for a leap year, otherwise print NO.",
        topic="calendar",
        module=("calendar", "utils"),
        edge=[(2000,), (1900,), (2024,)],
    )


def series_sum(rng: random.Random) -> Draft:
    n = int_param(Scalar(rng.choice(["n", "count", "terms"]), 0, 100))
    kind = rng.choice(["squares", "odd", "triangular"])
    total, i = var("total", INT), var("i", INT)
    term = {"squares": mul(i, i), "odd": sub(mul(i, 2), 1), "triangular": i}[kind]
    body = [
        Declare(total, lit(0)),
        ForRange(i, lit(1), add(n.var, 1), 1, (AugAssign(total, "+", term),)),
        Return(total),
    ]
    what = {
        "squares": "the squares of the integers",
        "odd": "the first odd numbers, one for each integer",
        "triangular": "the integers",
    }[kind]
    fname = {
        "squares": ("sum", "of", "squares"),
        "odd": ("sum", "of", "odd", "numbers"),
        "triangular": ("triangular", "number"),
    }[kind]
    func = Function(
        name(fname), (n.var,), INT, tuple(body), f"Add up {what} from 1 to {n.var.name[0]}."
    )
    return _draft(
        [func],
        f"Add up {what} from 1 to {n.var.name[0]}.",
        [n],
        "Print one integer: the sum.",
        edge=[(0,), (3,)],
    )


def to_binary(rng: random.Random) -> Draft:
    n = int_param(Scalar(rng.choice(["number", "value"]), 0, 5000))
    rest, copy = _copy_param(rng, n.var, ("remaining", "rest"))
    bits = var(rng.choice(["bits", "digits", "binary"]), STR)
    body = [
        If(cmp("==", n.var, 0), (Return(lit("0")),)),
        copy,
        Declare(bits, lit("")),
        While(
            cmp(">", rest, 0),
            (Assign(bits, Concat(to_str(mod(rest, 2)), bits)), Assign(rest, div(rest, 2))),
        ),
        Return(bits),
    ]
    func = Function(
        name(("to", "binary")),
        (n.var,),
        STR,
        tuple(body),
        f"Return the binary representation of {n.var.name[0]}.",
    )
    return _draft(
        [func],
        f"Write {n.var.name[0]} in binary, without leading zeros.",
        [n],
        "Print the binary representation.",
        edge=[(0,), (5,)],
    )


def doubling(rng: random.Random) -> Draft:
    start = int_param(Scalar(rng.choice(["population", "amount", "followers"]), 1, 50))
    goal = int_param(Scalar(rng.choice(["goal", "target"]), 1, 100000))
    current, copy = _copy_param(rng, start.var, ("current", "size"))
    days = var(rng.choice(["days", "steps", "rounds"]), INT)
    body = [
        copy,
        Declare(days, lit(0)),
        While(cmp("<", current, goal.var), (AugAssign(current, "*", lit(2)), increment(days))),
        Return(days),
    ]
    sname, gname = start.var.name[0], goal.var.name[0]
    func = Function(
        name(("days", "to", "reach", gname)),
        (start.var, goal.var),
        INT,
        tuple(body),
        f"Count the doublings of {sname} needed to reach {gname}.",
    )
    return _draft(
        [func],
        f"Every day the {sname} doubles. Count the days until it is at least {gname}.",
        [start, goal],
        "Print one integer: the number of days.",
        tags=("implementation", "math"),
    )


FAMILIES = {
    "digit_loop": (digit_loop, 3),
    "is_prime": (is_prime, 1),
    "gcd": (gcd, 1),
    "multiples_below": (multiples_below, 1),
    "power_loop": (power_loop, 1),
    "factorial": (factorial, 1),
    "collatz": (collatz, 1),
    "count_divisors": (count_divisors, 1),
    "tiered_fee": (tiered_fee, 2),
    "threshold_label": (threshold_label, 2),
    "fizz_buzz": (fizz_buzz, 1),
    "leap_year": (leap_year, 1),
    "series_sum": (series_sum, 1),
    "to_binary": (to_binary, 1),
    "doubling": (doubling, 1),
}
