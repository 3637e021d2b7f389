"""Program families over a list of integers (counts, sums, filters, scans, pairs)."""

from __future__ import annotations

import random

from ..build import (
    BOOL,
    INT,
    LIST,
    add,
    and_,
    builtin,
    call,
    cmp,
    div,
    get,
    length,
    lit,
    mul,
    name,
    not_,
    or_,
    sub,
    var,
)
from ..ir import (
    Assign,
    AugAssign,
    Break,
    Declare,
    ForEach,
    ForRange,
    Function,
    If,
    ListAppend,
    Neg,
    Return,
    Stmt,
    While,
)
from ..vocab import LIST_WORDS_FOR_COUNTER, LIST_WORDS_FOR_RESULT, QUANTITIES, Quantity, Scalar
from .common import (
    INDEX_NAMES,
    Draft,
    Predicate,
    bool_param,
    counter,
    increment,
    int_param,
    list_param,
    pred_name,
    predicates,
    title,
    traverse,
)


def _quantity(rng: random.Random, nonnegative: bool = False) -> Quantity:
    pool = [q for q in QUANTITIES if q.nonnegative or not nonnegative]
    return rng.choice(pool)


def _predicate_helper(
    rng: random.Random, q: Quantity, pred: Predicate
) -> tuple[list[Function], Predicate]:
    """Sometimes move a parameterless condition into its own `is_<adjective>` helper."""
    if pred.params or not pred.prefix or rng.random() < 0.6:
        return [], pred
    value = var(q.singular, INT)
    helper = Function(
        name(("is", *pred.prefix)),
        (value,),
        BOOL,
        (*pred.setup, Return(pred.test(value))),
        f"Check whether a {q.singular} is {pred.english}.",
    )
    calling = Predicate(pred.prefix, pred.suffix, pred.english, lambda x: call(helper, x))
    return [helper], calling


def _draft(
    q: Quantity, funcs, statement, params, output, tags=("implementation",), module="stats"
) -> Draft:
    return Draft(
        functions=funcs,
        statement=statement,
        params=params,
        output=output,
        tags=tags,
        topic=q.topic,
        module=(q.singular, module),
        context=q.context,
    )


def count_matching(rng: random.Random) -> Draft:
    q = _quantity(rng)
    helpers, pred = _predicate_helper(rng, q, rng.choice(predicates(rng, q)))
    items = list_param(q)
    count = counter(rng, LIST_WORDS_FOR_COUNTER)
    body = [
        *pred.setup,
        Declare(count, lit(0)),
        *traverse(rng, items.var, q.singular, lambda x: [If(pred.test(x), (increment(count),))]),
        Return(count),
    ]
    params = [items, *pred.params]
    func = Function(
        name(pred_name(("count",), pred, q.plural)),
        tuple(p.var for p in params),
        INT,
        tuple(body),
        f"Count the {q.plural} that are {pred.english}.",
    )
    return _draft(
        q,
        [*helpers, func],
        f"Count how many {q.plural} are {pred.english}.",
        params,
        f"Print one integer: the number of {q.plural} that are {pred.english}.",
    )


def sum_matching(rng: random.Random) -> Draft:
    q = _quantity(rng)
    helpers, pred = _predicate_helper(rng, q, rng.choice(predicates(rng, q)))
    items = list_param(q)
    total = var(rng.choice(["total", f"total_{q.singular}", "running_sum"]), INT)
    body = [
        *pred.setup,
        Declare(total, lit(0)),
        *traverse(
            rng, items.var, q.singular, lambda x: [If(pred.test(x), (AugAssign(total, "+", x),))]
        ),
        Return(total),
    ]
    params = [items, *pred.params]
    func = Function(
        name(pred_name(("sum",), pred, q.plural)),
        tuple(p.var for p in params),
        INT,
        tuple(body),
        f"Add up the {q.plural} that are {pred.english}.",
    )
    return _draft(
        q,
        [*helpers, func],
        f"Find the sum of the {q.plural} that are {pred.english} (0 if there are none).",
        params,
        f"Print one integer: the sum of the {q.plural} that are {pred.english}.",
    )


def total_of_all(rng: random.Random) -> Draft:
    q = _quantity(rng)
    items = list_param(q)
    total = var(rng.choice(["total", "sum_so_far", f"total_{q.singular}"]), INT)
    body = [
        Declare(total, lit(0)),
        *traverse(rng, items.var, q.singular, lambda x: [AugAssign(total, "+", x)]),
        Return(total),
    ]
    func = Function(
        name(rng.choice([("total", q.singular), ("sum", q.plural), ("add", "up", q.plural)])),
        (items.var,),
        INT,
        tuple(body),
        f"Add up all the {q.plural}.",
    )
    return _draft(
        q, [func], f"Find the sum of all the {q.plural}.", [items], "Print one integer: the sum."
    )


def extreme(rng: random.Random) -> Draft:
    q = _quantity(rng)
    largest = rng.random() < 0.5
    op = ">" if largest else "<"
    words = rng.choice([("highest", "lowest"), ("max", "min"), ("largest", "smallest")])
    adjective = words[0] if largest else words[1]
    guarded = rng.random() < 0.6
    items = list_param(q, min_len=0 if guarded else 1)
    best = var(
        rng.choice(["best", adjective + "_so_far", "current_" + ("max" if largest else "min")]), INT
    )
    body: list[Stmt] = []
    if guarded:
        body.append(If(cmp("==", length(items.var), 0), (Return(lit(-1)),)))
    body.append(Declare(best, get(items.var, 0)))
    if rng.random() < 0.5:
        body += traverse(
            rng, items.var, q.singular, lambda x: [If(cmp(op, x, best), (Assign(best, x),))], "each"
        )
    else:
        i = var(rng.choice(["i", "index"]), INT)
        x = get(items.var, i)
        body.append(
            ForRange(i, lit(1), length(items.var), 1, (If(cmp(op, x, best), (Assign(best, x),)),))
        )
    body.append(Return(best))
    word = "largest" if largest else "smallest"
    func = Function(
        name(
            (rng.choice(["find", "get"]), adjective, q.singular)
            if rng.random() < 0.3
            else (adjective, q.singular)
        ),
        (items.var,),
        INT,
        tuple(body),
        f"Return the {word} {q.singular}.",
    )
    empty = " If there are no values, print -1." if guarded else ""
    return _draft(
        q,
        [func],
        f"Find the {word} of the {q.plural}.{empty}",
        [items],
        f"Print one integer: the {word} {q.singular}.",
    )


def first_index(rng: random.Random) -> Draft:
    q = _quantity(rng)
    helpers, pred = _predicate_helper(rng, q, rng.choice(predicates(rng, q)))
    items = list_param(q)
    index = var(rng.choice(INDEX_NAMES), INT)
    hit = If(pred.test(get(items.var, index)), (Return(index),))
    if rng.random() < 0.6:
        loop: list[Stmt] = [ForRange(index, lit(0), length(items.var), 1, (hit,))]
    else:
        keep_going = cmp("<", index, length(items.var))
        loop = [Declare(index, lit(0)), While(keep_going, (hit, increment(index)))]
    body = [*pred.setup, *loop, Return(lit(-1))]
    params = [items, *pred.params]
    func = Function(
        name(pred_name(("find", "first"), pred, q.singular)),
        tuple(p.var for p in params),
        INT,
        tuple(body),
        f"Return the index of the first {q.singular} that is {pred.english}, or -1.",
    )
    return _draft(
        q,
        [*helpers, func],
        f"Find the position (counting from 0) of the first {q.singular} that is {pred.english}. "
        "If there is no such value, the answer is -1.",
        params,
        "Print one integer: the position, or -1.",
        tags=("implementation", "search"),
    )


def filter_matching(rng: random.Random) -> Draft:
    q = _quantity(rng)
    helpers, pred = _predicate_helper(rng, q, rng.choice(predicates(rng, q)))
    items = list_param(q)
    result = var(rng.choice(LIST_WORDS_FOR_RESULT), LIST)
    body = [
        *pred.setup,
        Declare(result, builtin("empty_list")),
        *traverse(
            rng, items.var, q.singular, lambda x: [If(pred.test(x), (ListAppend(result, x),))]
        ),
        Return(result),
    ]
    params = [items, *pred.params]
    verb = rng.choice(["keep", "select", "filter"])
    func = Function(
        name(pred_name((verb,), pred, q.plural)),
        tuple(p.var for p in params),
        LIST,
        tuple(body),
        f"Keep only the {q.plural} that are {pred.english}.",
    )
    return _draft(
        q,
        [*helpers, func],
        f"Keep only the {q.plural} that are {pred.english}, in their original order.",
        params,
        f"Print the kept {q.plural} separated by spaces (an empty line if none are kept).",
        tags=("implementation", "filtering"),
    )


def _appending(result, value):
    """Loop body: append `value(x)` for every element x."""
    return lambda x: [ListAppend(result, value(x))]


def _replacing(result, test, replacement):
    """Loop body: append `replacement(x)` where `test(x)` holds, else x itself."""
    return lambda x: [If(test(x), (ListAppend(result, replacement(x)),), (ListAppend(result, x),))]


def transform_each(rng: random.Random) -> Draft:
    q = _quantity(rng)
    items = list_param(q)
    result = var(rng.choice(["result", "adjusted", "updated", "converted"]), LIST)
    kinds = ["scale", "bonus", "square", "cap", "floor"] + ([] if q.nonnegative else ["absolute"])
    kind = rng.choice(kinds)
    extra: list = []
    if kind == "scale":
        factor = int_param(Scalar(rng.choice(["factor", "multiplier"]), 1, 9))
        extra, fname = [factor], ("scale", q.plural)
        step = _appending(result, lambda x: mul(x, factor.var))
        what = f"multiply every {q.singular} by {factor.var.name[0]}"
    elif kind == "bonus":
        bonus = int_param(Scalar(rng.choice(["bonus", "offset", "increment"]), 0, 50))
        extra, fname = [bonus], ("add", bonus.var.name[0], "to", q.plural)
        step = _appending(result, lambda x: add(x, bonus.var))
        what = f"add {bonus.var.name[0]} to every {q.singular}"
    elif kind == "square":
        fname, what = ("square", q.plural), f"replace every {q.singular} by its square"
        step = _appending(result, lambda x: mul(x, x))
    elif kind in ("cap", "floor"):
        words = ["cap", "ceiling", "maximum"] if kind == "cap" else ["floor", "minimum"]
        bound = int_param(Scalar(rng.choice(words), q.low, q.high))
        bound_name = bound.var.name[0]
        extra = [bound]
        if kind == "cap":
            fname = ("cap", q.plural)
            what = f"replace every {q.singular} greater than {bound_name} by {bound_name}"
            step = _replacing(result, lambda x: cmp(">", x, bound.var), lambda x: bound.var)
        else:
            fname = ("raise", q.plural, "to", bound_name)
            what = f"replace every {q.singular} smaller than {bound_name} by {bound_name}"
            step = _replacing(result, lambda x: cmp("<", x, bound.var), lambda x: bound.var)
    else:
        fname, what = ("absolute", q.plural), f"replace every {q.singular} by its absolute value"
        step = _replacing(result, lambda x: cmp("<", x, 0), Neg)
    body = [
        Declare(result, builtin("empty_list")),
        *traverse(rng, items.var, q.singular, step),
        Return(result),
    ]
    params = [items, *extra]
    func = Function(name(fname), tuple(p.var for p in params), LIST, tuple(body), title(what) + ".")
    return _draft(
        q,
        [func],
        f"Build a new list: {what}.",
        params,
        "Print the new values separated by spaces (an empty line for an empty list).",
    )


def running_totals(rng: random.Random) -> Draft:
    q = _quantity(rng)
    items = list_param(q)
    running = var(rng.choice(["running", "total", "so_far"]), INT)
    result = var(rng.choice(["totals", "result", "prefix_sums"]), LIST)
    body = [
        Declare(running, lit(0)),
        Declare(result, builtin("empty_list")),
        *traverse(
            rng,
            items.var,
            q.singular,
            lambda x: [AugAssign(running, "+", x), ListAppend(result, running)],
        ),
        Return(result),
    ]
    func = Function(
        name(rng.choice([("running", "totals"), ("cumulative", q.plural), ("prefix", "sums")])),
        (items.var,),
        LIST,
        tuple(body),
        f"Return the running totals of the {q.plural}.",
    )
    return _draft(
        q,
        [func],
        f"For every position, compute the sum of the {q.plural} up to and including it.",
        [items],
        "Print the running totals separated by spaces (an empty line for an empty list).",
    )


def is_sorted(rng: random.Random) -> Draft:
    q = _quantity(rng)
    items = list_param(q, max_len=6)
    i = var(rng.choice(["i", "index"]), INT)
    previous, current = get(items.var, sub(i, 1)), get(items.var, i)
    if rng.random() < 0.4:  # the direction is a boolean input
        flag = bool_param("descending", "for non-increasing order")
        wrong = or_(
            and_(flag.var, cmp("<", previous, current)),
            and_(not_(flag.var), cmp(">", previous, current)),
        )
        params, words = [items, flag], ("is", "sorted")
        order = "non-increasing order if descending is 1 and in non-decreasing order otherwise"
    else:
        descending = rng.random() < 0.3
        wrong = cmp("<" if descending else ">", previous, current)
        order = ("non-increasing" if descending else "non-decreasing") + " order"
        params = [items]
        words = (
            ("is", "non", "increasing")
            if descending
            else rng.choice([("is", "sorted"), ("is", "non", "decreasing"), ("in", "order")])
        )
    body = [
        ForRange(i, lit(1), length(items.var), 1, (If(wrong, (Return(lit(False)),)),)),
        Return(lit(True)),
    ]
    func = Function(
        name(words),
        tuple(p.var for p in params),
        BOOL,
        tuple(body),
        f"Check whether the {q.plural} are in {order}.",
    )
    sorted_example = tuple(sorted(rng.sample(range(q.low, q.high + 1), 4)))
    draft = _draft(
        q,
        [func],
        f"Check whether the {q.plural} are in {order}.",
        params,
        f"Print YES if the {q.plural} are in {order}, otherwise print NO.",
        tags=("implementation", "sortings"),
    )
    if len(params) == 1:
        draft.edge_inputs = [(list(sorted_example),), (list(sorted_example[::-1]),)]
    else:
        draft.edge_inputs = [(list(sorted_example), False), (list(sorted_example[::-1]), True)]
    return draft


def count_changes(rng: random.Random) -> Draft:
    q = _quantity(rng)
    items = list_param(q)
    rising = rng.random() < 0.5
    count = counter(rng, ("count", "changes", "steps_up" if rising else "steps_down"))
    i = var(rng.choice(["i", "day", "index"]), INT)
    op = ">" if rising else "<"
    body = [
        Declare(count, lit(0)),
        ForRange(
            i,
            lit(1),
            length(items.var),
            1,
            (If(cmp(op, get(items.var, i), get(items.var, sub(i, 1))), (increment(count),)),),
        ),
        Return(count),
    ]
    word = "increases" if rising else "decreases"
    fname = (
        ("count", word)
        if rng.random() < 0.5
        else ("count", "rising" if rising else "falling", q.plural)
    )
    func = Function(
        name(fname),
        (items.var,),
        INT,
        tuple(body),
        f"Count how often a {q.singular} {word[:-1]}s from the previous one.",
    )
    bigger = "greater" if rising else "smaller"
    return _draft(
        q,
        [func],
        f"Count the positions where a {q.singular} is strictly {bigger} than the {q.singular} just before it.",
        [items],
        "Print one integer: the number of such positions.",
    )


def longest_streak(rng: random.Random) -> Draft:
    q = _quantity(rng)
    helpers, pred = _predicate_helper(rng, q, rng.choice(predicates(rng, q)))
    items = list_param(q)
    best = var(rng.choice(["best", "longest"]), INT)
    current = var(rng.choice(["current", "run", "streak"]), INT)

    def step(x):
        grow = (increment(current), If(cmp(">", current, best), (Assign(best, current),)))
        return [If(pred.test(x), grow, (Assign(current, lit(0)),))]

    body = [
        *pred.setup,
        Declare(best, lit(0)),
        Declare(current, lit(0)),
        *traverse(rng, items.var, q.singular, step),
        Return(best),
    ]
    params = [items, *pred.params]
    func = Function(
        name(("longest", *pred.prefix, "streak", *pred.suffix)),
        tuple(p.var for p in params),
        INT,
        tuple(body),
        f"Return the length of the longest run of consecutive {q.plural} that are {pred.english}.",
    )
    return _draft(
        q,
        [*helpers, func],
        f"Find the length of the longest block of consecutive {q.plural} that are all {pred.english}.",
        params,
        "Print one integer: the length of the longest such block (0 if there is none).",
    )


def average(rng: random.Random) -> Draft:
    q = _quantity(rng, nonnegative=True)
    items = list_param(q)
    total = var(rng.choice(["total", "sum_so_far"]), INT)
    body = [
        If(cmp("==", length(items.var), 0), (Return(lit(0)),)),
        Declare(total, lit(0)),
        *traverse(rng, items.var, q.singular, lambda x: [AugAssign(total, "+", x)], "each"),
        Return(div(total, length(items.var))),
    ]
    func = Function(
        name(("average", q.singular)),
        (items.var,),
        INT,
        tuple(body),
        f"Return the average {q.singular}, rounded down.",
    )
    return _draft(
        q,
        [func],
        f"Find the average of the {q.plural}, rounded down. The average of an empty list is 0.",
        [items],
        "Print one integer: the rounded-down average.",
        tags=("implementation", "math"),
    )


def spread(rng: random.Random) -> Draft:
    q = _quantity(rng)
    items = list_param(q, min_len=1)
    low, high = var("lowest", INT), var("highest", INT)

    def step(x):
        return [If(cmp("<", x, low), (Assign(low, x),)), If(cmp(">", x, high), (Assign(high, x),))]

    body = [
        Declare(low, get(items.var, 0)),
        Declare(high, get(items.var, 0)),
        *traverse(rng, items.var, q.singular, step, "each"),
        Return(sub(high, low)),
    ]
    func = Function(
        name(("spread", "of", q.plural)),
        (items.var,),
        INT,
        tuple(body),
        f"Return the difference between the largest and smallest {q.singular}.",
    )
    return _draft(
        q,
        [func],
        f"Find the difference between the largest and the smallest of the {q.plural}.",
        [items],
        "Print one integer: the difference.",
    )


def reverse_list(rng: random.Random) -> Draft:
    q = _quantity(rng)
    items = list_param(q)
    result = var(rng.choice(["reversed_" + q.plural, "result", "backwards"]), LIST)
    i = var(rng.choice(["i", "index"]), INT)
    body = [
        Declare(result, builtin("empty_list")),
        ForRange(
            i, sub(length(items.var), 1), lit(-1), -1, (ListAppend(result, get(items.var, i)),)
        ),
        Return(result),
    ]
    func = Function(
        name(("reverse", q.plural)),
        (items.var,),
        LIST,
        tuple(body),
        f"Return the {q.plural} in reverse order.",
    )
    return _draft(
        q,
        [func],
        f"Print the {q.plural} in reverse order.",
        [items],
        "Print the values separated by spaces (an empty line for an empty list).",
    )


def contains_value(rng: random.Random) -> Draft:
    q = _quantity(rng)
    target = int_param(Scalar("target", q.low, min(q.high, q.low + 12)))
    items = list_param(
        Quantity(q.singular, q.plural, q.low, min(q.high, q.low + 12), q.context, q.topic),
        max_len=8,
    )
    count_them = rng.random() < 0.5
    if count_them:
        count = counter(rng, ("count", "occurrences", "matches"))
        body = [
            Declare(count, lit(0)),
            *traverse(
                rng,
                items.var,
                q.singular,
                lambda x: [If(cmp("==", x, target.var), (increment(count),))],
            ),
            Return(count),
        ]
        func = Function(
            name(("count", q.singular, "occurrences")),
            (items.var, target.var),
            INT,
            tuple(body),
            f"Count how many times target appears among the {q.plural}.",
        )
        return _draft(
            q,
            [func],
            f"Count how many of the {q.plural} are equal to target.",
            [items, target],
            "Print one integer: the number of occurrences.",
            tags=("implementation", "search"),
        )
    body = [
        *traverse(
            rng,
            items.var,
            q.singular,
            lambda x: [If(cmp("==", x, target.var), (Return(lit(True)),))],
        ),
        Return(lit(False)),
    ]
    func = Function(
        name(("has", q.singular)),
        (items.var, target.var),
        BOOL,
        tuple(body),
        f"Check whether target appears among the {q.plural}.",
    )
    return _draft(
        q,
        [func],
        f"Check whether one of the {q.plural} is equal to target.",
        [items, target],
        "Print YES if target appears, otherwise print NO.",
        tags=("implementation", "search"),
    )


def every_other(rng: random.Random) -> Draft:
    q = _quantity(rng)
    items = list_param(q)
    start = rng.choice([0, 1])
    total = var(rng.choice(["total", "sum_so_far"]), INT)
    i = var(rng.choice(["i", "index", "position"]), INT)
    body = [
        Declare(total, lit(0)),
        ForRange(i, lit(start), length(items.var), 2, (AugAssign(total, "+", get(items.var, i)),)),
        Return(total),
    ]
    parity = "even" if start == 0 else "odd"
    func = Function(
        name(("sum", parity, "positions")),
        (items.var,),
        INT,
        tuple(body),
        f"Add up the {q.plural} at {parity} positions.",
    )
    return _draft(
        q,
        [func],
        f"Add up the {q.plural} standing at {parity} positions, counting positions from 0.",
        [items],
        "Print one integer: the sum.",
    )


def total_cost(rng: random.Random) -> Draft:
    q = _quantity(rng, nonnegative=True)
    counts = list_param(Quantity("quantity", "quantities", 0, 9, "", q.topic), name="quantities")
    items = list_param(q)
    size = var(rng.choice(["size", "pairs", "limit"]), INT)
    total = var(rng.choice(["total", "weighted_sum"]), INT)
    i = var(rng.choice(["i", "index"]), INT)
    body = [
        Declare(size, length(counts.var)),
        If(cmp("<", length(items.var), size), (Assign(size, length(items.var)),)),
        Declare(total, lit(0)),
        ForRange(
            i, lit(0), size, 1, (AugAssign(total, "+", mul(get(counts.var, i), get(items.var, i))),)
        ),
        Return(total),
    ]
    func = Function(
        name(("weighted", "total")),
        (counts.var, items.var),
        INT,
        tuple(body),
        f"Multiply each quantity by its {q.singular} and add the products.",
    )
    return _draft(
        q,
        [func],
        f"Two lists are given: quantities and {q.plural}. Multiply each quantity by the {q.singular} at the same position and add the products; "
        "when the lists differ in length, extra values are ignored.",
        [counts, items],
        "Print one integer: the total.",
        tags=("implementation", "math"),
    )


def alternating_sum(rng: random.Random) -> Draft:
    q = _quantity(rng)
    items = list_param(q)
    total, sign = var("total", INT), var("sign", INT)
    body = [
        Declare(total, lit(0)),
        Declare(sign, lit(1)),
        *traverse(
            rng,
            items.var,
            q.singular,
            lambda x: [AugAssign(total, "+", mul(sign, x)), Assign(sign, Neg(sign))],
            "each",
        ),
        Return(total),
    ]
    func = Function(
        name(("alternating", "sum")),
        (items.var,),
        INT,
        tuple(body),
        f"Add and subtract the {q.plural} in turn.",
    )
    return _draft(
        q,
        [func],
        f"Compute the first {q.singular} minus the second plus the third minus the fourth, and so on.",
        [items],
        "Print one integer: the alternating sum.",
        tags=("implementation", "math"),
    )


def count_pairs(rng: random.Random) -> Draft:
    q = rng.choice([q for q in QUANTITIES if 0 <= q.low <= 5])
    q = Quantity(q.singular, q.plural, q.low, min(q.high, 20), q.context, q.topic)
    items = list_param(q, max_len=8)
    target = int_param(Scalar("target", 0, 40))
    count = counter(rng, ("count", "pairs"))
    i, j = var("i", INT), var("j", INT)
    inner = ForRange(
        j,
        add(i, 1),
        length(items.var),
        1,
        (
            If(
                cmp("==", add(get(items.var, i), get(items.var, j)), target.var),
                (increment(count),),
            ),
        ),
    )
    body = [
        Declare(count, lit(0)),
        ForRange(i, lit(0), length(items.var), 1, (inner,)),
        Return(count),
    ]
    func = Function(
        name(("count", "pairs", "with", "sum")),
        (items.var, target.var),
        INT,
        tuple(body),
        "Count the pairs of positions whose values add up to target.",
    )
    return _draft(
        q,
        [func],
        f"Count the pairs of positions i < j such that the {q.plural} at i and j add up to target.",
        [items, target],
        "Print one integer: the number of pairs.",
        tags=("brute force",),
    )


def unique_values(rng: random.Random) -> Draft:
    q = _quantity(rng)
    q = Quantity(q.singular, q.plural, q.low, min(q.high, q.low + 9), q.context, q.topic)
    items = list_param(q)
    result = var(rng.choice(["unique", "seen", "result"]), LIST)
    found = var(rng.choice(["found", "duplicate", "already_seen"]), BOOL)
    x, y = var(q.singular, INT), var("other", INT)
    inner = ForEach(y, result, (If(cmp("==", y, x), (Assign(found, lit(True)), Break())),))
    loop = ForEach(
        x, items.var, (Declare(found, lit(False)), inner, If(not_(found), (ListAppend(result, x),)))
    )
    body = [Declare(result, builtin("empty_list")), loop, Return(result)]
    func = Function(
        name(("unique", q.plural)),
        (items.var,),
        LIST,
        tuple(body),
        f"Return the {q.plural} without repeats, keeping first occurrences.",
    )
    return _draft(
        q,
        [func],
        f"Remove repeated {q.plural}, keeping only the first occurrence of each value.",
        [items],
        "Print the remaining values separated by spaces (an empty line for an empty list).",
    )


FAMILIES = {
    "count_matching": (count_matching, 4),
    "sum_matching": (sum_matching, 3),
    "total_of_all": (total_of_all, 1),
    "extreme": (extreme, 3),
    "first_index": (first_index, 2),
    "filter_matching": (filter_matching, 3),
    "transform_each": (transform_each, 3),
    "running_totals": (running_totals, 1),
    "is_sorted": (is_sorted, 1),
    "count_changes": (count_changes, 1),
    "longest_streak": (longest_streak, 2),
    "average": (average, 1),
    "spread": (spread, 1),
    "reverse_list": (reverse_list, 1),
    "contains_value": (contains_value, 2),
    "every_other": (every_other, 1),
    "total_cost": (total_cost, 1),
    "alternating_sum": (alternating_sum, 1),
    "count_pairs": (count_pairs, 1),
    "unique_values": (unique_values, 1),
}
