"""Program families over strings: character classes, rewriting, scanning, encoding."""

from __future__ import annotations

import random

from ..build import (
    BOOL,
    CHAR,
    INT,
    STR,
    add,
    and_,
    builtin,
    call,
    cmp,
    get,
    length,
    lit,
    mod,
    name,
    not_,
    or_,
    sub,
    to_str,
    var,
)
from ..ir import Assign, AugAssign, Declare, ForEach, ForRange, Function, If, Return, Stmt, While
from ..vocab import TEXTS, Scalar, TextKind
from .common import Draft, increment, int_param, random_text, text_param


def _kind(rng: random.Random, alphabets: tuple[str, ...]) -> TextKind:
    return rng.choice([k for k in TEXTS if k.alphabet in alphabets])


def _draft(
    kind: TextKind,
    funcs,
    statement,
    params,
    output,
    module=("text", "utils"),
    tags=("strings",),
    edge=(),
) -> Draft:
    return Draft(
        funcs, statement, params, output, tags, kind.topic, module, kind.context, list(edge)
    )


def _is_vowel_helper(letter_words: str = "letter") -> Function:
    letter = var(letter_words, CHAR)
    return Function(
        name(("is", "vowel")),
        (letter,),
        BOOL,
        (Return(builtin("str_contains_char", lit("aeiouAEIOU"), letter)),),
        "Check whether letter is a vowel.",
    )


CHAR_CLASSES = {
    # class -> (words in the name, English, alphabets where it is meaningful)
    "vowels": (
        "vowels",
        "vowels (a, e, i, o, u in either case)",
        ("lower", "mixed", "capitalized"),
    ),
    "uppercase": ("uppercase", "uppercase letters", ("mixed", "capitalized", "code")),
    "digits": ("digits", "digits", ("mixed", "alnum", "code")),
    "gc": ("gc", "letters G or C", ("dna",)),
}


def _class_test(cls: str, ch, helper: Function | None):
    if cls == "vowels":
        return call(helper, ch) if helper else builtin("str_contains_char", lit("aeiouAEIOU"), ch)
    if cls == "uppercase":
        return and_(cmp(">=", ch, "A"), cmp("<=", ch, "Z"))
    if cls == "digits":
        return and_(cmp(">=", ch, "0"), cmp("<=", ch, "9"))
    return or_(cmp("==", ch, "G"), cmp("==", ch, "C"))


def count_class(rng: random.Random) -> Draft:
    cls = rng.choice(list(CHAR_CLASSES))
    words, english, alphabets = CHAR_CLASSES[cls]
    kind = _kind(rng, alphabets)
    text = text_param(kind)
    helper = _is_vowel_helper() if cls == "vowels" and rng.random() < 0.5 else None
    count = var(rng.choice(["count", "found", "total"]), INT)
    ch = var(rng.choice(["ch", "letter", "symbol"]), CHAR)
    if rng.random() < 0.6:
        loop: list[Stmt] = [
            ForEach(ch, text.var, (If(_class_test(cls, ch, helper), (increment(count),)),))
        ]
    else:
        i = var(rng.choice(["i", "index"]), INT)
        loop = [
            ForRange(
                i,
                lit(0),
                length(text.var),
                1,
                (If(_class_test(cls, get(text.var, i), helper), (increment(count),)),),
            )
        ]
    body = [Declare(count, lit(0)), *loop, Return(count)]
    func = Function(
        name(("count", words)),
        (text.var,),
        INT,
        tuple(body),
        f"Count the {english} in {kind.noun}.",
    )
    return _draft(
        kind,
        [helper, func] if helper else [func],
        f"Count the {english} in the {kind.noun}.",
        [text],
        "Print one integer: the count.",
    )


def reverse_text(rng: random.Random) -> Draft:
    kind = _kind(rng, ("lower", "mixed", "alnum", "dna", "code"))
    text = text_param(kind)
    result = var(rng.choice(["reversed_" + kind.noun, "result", "backwards"]), STR)
    if rng.random() < 0.5:
        ch = var("ch", CHAR)
        loop: Stmt = ForEach(ch, text.var, (Assign(result, add(to_str(ch), result)),))
    else:
        i = var("i", INT)
        loop = ForRange(
            i,
            sub(length(text.var), 1),
            lit(-1),
            -1,
            (AugAssign(result, "+", to_str(get(text.var, i))),),
        )
    body = [Declare(result, lit("")), loop, Return(result)]
    func = Function(
        name(("reverse", kind.noun)), (text.var,), STR, tuple(body), f"Return {kind.noun} reversed."
    )
    return _draft(
        kind,
        [func],
        f"Print the {kind.noun} written backwards.",
        [text],
        f"Print the reversed {kind.noun}.",
    )


def is_palindrome(rng: random.Random) -> Draft:
    kind = _kind(rng, ("lower", "dna", "alnum"))

    def sample(r: random.Random) -> str:
        half = random_text(r, kind)[: kind.max_len // 2]
        if r.random() < 0.5:
            return (
                half
                + (r.choice("abc") if r.random() < 0.5 and kind.alphabet == "lower" else "")
                + half[::-1]
            )
        return random_text(r, kind)

    text = text_param(kind, sample)
    left, right = var("left", INT), var("right", INT)
    body = [
        Declare(left, lit(0)),
        Declare(right, sub(length(text.var), 1)),
        While(
            cmp("<", left, right),
            (
                If(cmp("!=", get(text.var, left), get(text.var, right)), (Return(lit(False)),)),
                increment(left),
                AugAssign(right, "-", lit(1)),
            ),
        ),
        Return(lit(True)),
    ]
    func = Function(
        name(("is", "palindrome")),
        (text.var,),
        BOOL,
        tuple(body),
        f"Check whether {kind.noun} reads the same backwards.",
    )
    return _draft(
        kind,
        [func],
        f"Check whether the {kind.noun} reads the same forwards and backwards.",
        [text],
        "Print YES if it does, otherwise print NO.",
    )


def mask_chars(rng: random.Random) -> Draft:
    cls = rng.choice(["vowels", "digits"])
    words, english, alphabets = CHAR_CLASSES[cls]
    kind = _kind(rng, alphabets)
    text = text_param(kind)
    mark = rng.choice(["*", "#", "_"])
    helper = _is_vowel_helper() if cls == "vowels" and rng.random() < 0.5 else None
    result = var(rng.choice(["masked", "result", "hidden"]), STR)
    ch = var("ch", CHAR)
    step = If(
        _class_test(cls, ch, helper),
        (AugAssign(result, "+", lit(mark)),),
        (AugAssign(result, "+", to_str(ch)),),
    )
    body = [Declare(result, lit("")), ForEach(ch, text.var, (step,)), Return(result)]
    func = Function(
        name(("mask", words)),
        (text.var,),
        STR,
        tuple(body),
        f"Replace the {english} in {kind.noun} with {mark}.",
    )
    funcs = [helper, func] if helper else [func]
    return _draft(
        kind,
        funcs,
        f"Replace every one of the {english} in the {kind.noun} with the character {mark}.",
        [text],
        "Print the resulting string.",
    )


def capitalize(rng: random.Random) -> Draft:
    kind = _kind(rng, ("lower", "mixed"))
    text = text_param(kind)
    first = builtin("upper_str", builtin("substring", text.var, lit(0), lit(1)))
    rest = builtin("lower_str", builtin("substring", text.var, lit(1), length(text.var)))
    body = [If(cmp("==", length(text.var), 0), (Return(text.var),)), Return(add(first, rest))]
    func = Function(
        name(("capitalize", kind.noun)), (text.var,), STR, tuple(body), f"Capitalize {kind.noun}."
    )
    return _draft(
        kind,
        [func],
        f"Make the first character of the {kind.noun} uppercase and all other characters lowercase.",
        [text],
        "Print the resulting string.",
    )


def repeat_joined(rng: random.Random) -> Draft:
    kind = _kind(rng, ("lower", "capitalized", "code"))
    text = text_param(kind, min_len=1)
    times = int_param(Scalar("times", 0, 6))
    sep = rng.choice(["-", "+", "."])
    result, i = var("result", STR), var("i", INT)
    body = [
        Declare(result, lit("")),
        ForRange(
            i,
            lit(0),
            times.var,
            1,
            (
                If(cmp(">", i, 0), (AugAssign(result, "+", lit(sep)),)),
                AugAssign(result, "+", text.var),
            ),
        ),
        Return(result),
    ]
    func = Function(
        name(("repeat", kind.noun)),
        (text.var, times.var),
        STR,
        tuple(body),
        f"Repeat {kind.noun} times times, joined by {sep}.",
    )
    return _draft(
        kind,
        [func],
        f"Write the {kind.noun} times times in a row, with {sep} between consecutive copies.",
        [text, times],
        "Print the resulting string (an empty line if times is 0).",
    )


def pad_left(rng: random.Random) -> Draft:
    kind = _kind(rng, ("code", "alnum", "dna"))
    text = text_param(kind)
    width = int_param(Scalar("width", 0, 12))
    fill = rng.choice(["0", ".", "*"])
    missing = sub(width.var, length(text.var))
    body = [
        If(cmp(">=", length(text.var), width.var), (Return(text.var),)),
        Return(add(builtin("repeat_str", lit(fill), missing), text.var)),
    ]
    func = Function(
        name(("pad", kind.noun)),
        (text.var, width.var),
        STR,
        tuple(body),
        f"Pad {kind.noun} on the left with {fill} up to width characters.",
    )
    return _draft(
        kind,
        [func],
        f"Add {fill} characters to the left of the {kind.noun} until it is width characters long (longer strings stay unchanged).",
        [text, width],
        "Print the padded string.",
    )


def longest_run(rng: random.Random) -> Draft:
    kind = _kind(rng, ("dna", "lower"))
    text = text_param(kind)
    best, current, i = var("best", INT), var("current", INT), var("i", INT)
    same = cmp("==", get(text.var, i), get(text.var, sub(i, 1)))
    body = [
        If(cmp("==", length(text.var), 0), (Return(lit(0)),)),
        Declare(best, lit(1)),
        Declare(current, lit(1)),
        ForRange(
            i,
            lit(1),
            length(text.var),
            1,
            (
                If(
                    same,
                    (increment(current), If(cmp(">", current, best), (Assign(best, current),))),
                    (Assign(current, lit(1)),),
                ),
            ),
        ),
        Return(best),
    ]
    func = Function(
        name(("longest", "run")),
        (text.var,),
        INT,
        tuple(body),
        f"Return the length of the longest run of equal characters in {kind.noun}.",
    )
    return _draft(
        kind,
        [func],
        f"Find the length of the longest block of equal consecutive characters in the {kind.noun} (0 for an empty string).",
        [text],
        "Print one integer: the length.",
    )


def run_length(rng: random.Random) -> Draft:
    kind = _kind(rng, ("dna",))
    text = text_param(kind)
    result, run, i = var(rng.choice(["encoded", "result"]), STR), var("run", INT), var("i", INT)
    flush = AugAssign(result, "+", add(to_str(get(text.var, sub(i, 1))), to_str(run)))
    body = [
        If(cmp("==", length(text.var), 0), (Return(lit("")),)),
        Declare(result, lit("")),
        Declare(run, lit(1)),
        ForRange(
            i,
            lit(1),
            length(text.var),
            1,
            (
                If(
                    cmp("==", get(text.var, i), get(text.var, sub(i, 1))),
                    (increment(run),),
                    (flush, Assign(run, lit(1))),
                ),
            ),
        ),
        Return(add(result, add(to_str(get(text.var, sub(length(text.var), 1))), to_str(run)))),
    ]
    func = Function(
        name(("run", "length", "encode")),
        (text.var,),
        STR,
        tuple(body),
        f"Run-length encode {kind.noun}.",
    )
    return _draft(
        kind,
        [func],
        f"Encode the {kind.noun} by replacing every block of equal consecutive letters with the letter followed by the block length (AAC becomes A2C1).",
        [text],
        "Print the encoded string (an empty line for an empty string).",
        tags=("strings", "implementation"),
    )


def caesar(rng: random.Random) -> Draft:
    kind = _kind(rng, ("lower",))
    text = text_param(kind)
    shift = int_param(Scalar(rng.choice(["shift", "key"]), 0, 25))
    result, ch, code = (
        var(rng.choice(["encrypted", "result", "shifted"]), STR),
        var("ch", CHAR),
        var("code", INT),
    )
    base = 97
    body = [
        Declare(result, lit("")),
        ForEach(
            ch,
            text.var,
            (
                Declare(
                    code, add(mod(add(sub(builtin("char_code", ch), base), shift.var), 26), base)
                ),
                AugAssign(result, "+", to_str(builtin("char_from_code", code))),
            ),
        ),
        Return(result),
    ]
    func = Function(
        name(("caesar", "shift")),
        (text.var, shift.var),
        STR,
        tuple(body),
        f"Shift every letter of {kind.noun} forward by {shift.var.name[0]}.",
    )
    return _draft(
        kind,
        [func],
        f"Move every letter of the {kind.noun} forward in the alphabet by {shift.var.name[0]} positions, wrapping around from z to a.",
        [text, shift],
        "Print the encrypted string.",
        tags=("strings", "implementation"),
    )


def count_distinct(rng: random.Random) -> Draft:
    kind = _kind(rng, ("lower", "dna", "code"))
    text = text_param(kind)
    seen, ch = var(rng.choice(["seen", "distinct"]), STR), var("ch", CHAR)
    body = [
        Declare(seen, lit("")),
        ForEach(
            ch,
            text.var,
            (
                If(
                    not_(builtin("str_contains_char", seen, ch)),
                    (AugAssign(seen, "+", to_str(ch)),),
                ),
            ),
        ),
        Return(length(seen)),
    ]
    func = Function(
        name(("count", "distinct", "characters")),
        (text.var,),
        INT,
        tuple(body),
        f"Count the different characters in {kind.noun}.",
    )
    return _draft(
        kind,
        [func],
        f"Count how many different characters appear in the {kind.noun}.",
        [text],
        "Print one integer: the number of different characters.",
    )


def count_motif(rng: random.Random) -> Draft:
    kind = next(k for k in TEXTS if k.alphabet == "dna")
    strand = text_param(kind)
    motif_kind = TextKind("motif", "dna", 1, 2, "", kind.topic)
    motif = text_param(motif_kind, min_len=1)
    count, i = var("count", INT), var("i", INT)
    window = builtin("substring", strand.var, i, add(i, length(motif.var)))
    body = [
        Declare(count, lit(0)),
        ForRange(
            i,
            lit(0),
            add(sub(length(strand.var), length(motif.var)), 1),
            1,
            (If(cmp("==", window, motif.var), (increment(count),)),),
        ),
        Return(count),
    ]
    func = Function(
        name(("count", "motif")),
        (strand.var, motif.var),
        INT,
        tuple(body),
        "Count the positions where motif occurs in strand.",
    )
    return _draft(
        kind,
        [func],
        "Count the positions where the motif occurs in the strand (occurrences may overlap).",
        [strand, motif],
        "Print one integer: the number of occurrences.",
        module=("dna", "tools"),
    )


def alternate_case(rng: random.Random) -> Draft:
    kind = _kind(rng, ("lower", "mixed", "capitalized"))
    text = text_param(kind)
    result, i = var("result", STR), var("i", INT)
    letter = get(text.var, i)
    step = If(
        cmp("==", mod(i, 2), 0),
        (AugAssign(result, "+", to_str(builtin("upper_char", letter))),),
        (AugAssign(result, "+", to_str(builtin("lower_char", letter))),),
    )
    body = [
        Declare(result, lit("")),
        ForRange(i, lit(0), length(text.var), 1, (step,)),
        Return(result),
    ]
    func = Function(
        name(("alternate", "case")),
        (text.var,),
        STR,
        tuple(body),
        f"Alternate upper and lower case in {kind.noun}.",
    )
    return _draft(
        kind,
        [func],
        f"Make the characters of the {kind.noun} at even positions (from 0) uppercase and the others lowercase.",
        [text],
        "Print the resulting string.",
    )


def password_check(rng: random.Random) -> Draft:
    kind = next(k for k in TEXTS if k.noun == "password")
    text = text_param(kind)
    min_length = int_param(Scalar("min_length", 1, 10))
    has_digit, has_upper, ch = var("has_digit", BOOL), var("has_upper", BOOL), var("ch", CHAR)
    body = [
        Declare(has_digit, lit(False)),
        Declare(has_upper, lit(False)),
        ForEach(
            ch,
            text.var,
            (
                If(_class_test("digits", ch, None), (Assign(has_digit, lit(True)),)),
                If(_class_test("uppercase", ch, None), (Assign(has_upper, lit(True)),)),
            ),
        ),
        Return(and_(and_(cmp(">=", length(text.var), min_length.var), has_digit), has_upper)),
    ]
    func = Function(
        name(("is", "strong", "password")),
        (text.var, min_length.var),
        BOOL,
        tuple(body),
        "Check whether password is strong.",
    )
    return _draft(
        kind,
        [func],
        "A password is strong if it has at least min_length characters, at least one digit and at least one uppercase letter. Check whether the password is strong.",
        [text, min_length],
        "Print YES if the password is strong, otherwise print NO.",
        module=("password", "rules"),
        edge=[("Secret42", 6), ("abc", 2)],
    )


def dna_complement(rng: random.Random) -> Draft:
    kind = next(k for k in TEXTS if k.alphabet == "dna")
    text = text_param(kind)
    result, ch = var(rng.choice(["complement", "result", "paired"]), STR), var("base", CHAR)
    pairs = (("A", "T"), ("T", "A"), ("C", "G"))
    chain: tuple[Stmt, ...] = (AugAssign(result, "+", lit("C")),)
    for source, target in reversed(pairs):
        chain = (If(cmp("==", ch, source), (AugAssign(result, "+", lit(target)),), chain),)
    body = [Declare(result, lit("")), ForEach(ch, text.var, chain), Return(result)]
    func = Function(
        name(("complement", "strand")),
        (text.var,),
        STR,
        tuple(body),
        "Return the complementary DNA strand.",
    )
    return _draft(
        kind,
        [func],
        "Replace every A by T, T by A, C by G and G by C.",
        [text],
        "Print the complementary strand.",
        module=("dna", "tools"),
    )


def abbreviate(rng: random.Random) -> Draft:
    kind = _kind(rng, ("lower", "capitalized", "mixed"))
    text = text_param(kind)
    limit = int_param(Scalar(rng.choice(["max_length", "limit", "width"]), 1, 10))
    body = [
        If(cmp("<=", length(text.var), limit.var), (Return(text.var),)),
        Return(add(builtin("substring", text.var, lit(0), limit.var), lit("."))),
    ]
    func = Function(
        name(("abbreviate", kind.noun)),
        (text.var, limit.var),
        STR,
        tuple(body),
        f"Shorten {kind.noun} to {limit.var.name[0]} characters plus a dot.",
    )
    lname = " ".join(limit.var.name)
    return _draft(
        kind,
        [func],
        f"If the {kind.noun} is longer than {lname} characters, keep its first {lname} characters and add a dot; otherwise keep it unchanged.",
        [text, limit],
        "Print the result.",
    )


def strip_prefix(rng: random.Random) -> Draft:
    kind = _kind(rng, ("lower", "dna"))
    text = text_param(kind)
    prefix_kind = TextKind("prefix", kind.alphabet, 0, 2, "", kind.topic)
    prefix = text_param(prefix_kind)
    body = [
        If(
            builtin("starts_with", text.var, prefix.var),
            (Return(builtin("substring", text.var, length(prefix.var), length(text.var))),),
        ),
        Return(text.var),
    ]
    func = Function(
        name(("strip", "prefix")),
        (text.var, prefix.var),
        STR,
        tuple(body),
        f"Remove prefix from the start of {kind.noun}.",
    )
    edge = (
        [("abcde", "ab"), ("hello", "h")]
        if kind.alphabet == "lower"
        else [("ACGT", "AC"), ("GGA", "G")]
    )
    return _draft(
        kind,
        [func],
        f"If the {kind.noun} starts with the prefix, remove the prefix; otherwise keep the {kind.noun} unchanged.",
        [text, prefix],
        "Print the result.",
        edge=edge,
    )


SPAM_WORDS = ("free", "win", "cash", "prize", "offer", "bonus")


def keyword_alert(rng: random.Random) -> Draft:
    kind = next(k for k in TEXTS if k.noun == "message")
    first, second = rng.sample(SPAM_WORDS, 2)

    def sample(r: random.Random) -> str:
        base = random_text(r, kind)
        if r.random() < 0.5:
            cut = r.randint(0, len(base))
            return (base[:cut] + r.choice((first, second)) + base[cut:])[: kind.max_len + 5]
        return base

    text = text_param(
        TextKind(kind.noun, kind.alphabet, 0, kind.max_len + 5, kind.context, kind.topic), sample
    )
    hit = or_(
        builtin("str_contains", text.var, lit(first)),
        builtin("str_contains", text.var, lit(second)),
    )
    func = Function(
        name(("looks", "like", "spam")),
        (text.var,),
        BOOL,
        (Return(hit),),
        f"Check whether message mentions {first} or {second}.",
    )
    return _draft(
        kind,
        [func],
        f"A message looks like spam if it contains {first} or {second}. Check the message.",
        [text],
        "Print YES if it looks like spam, otherwise print NO.",
        module=("spam", "filter"),
        edge=[(f"get{first}now",), ("hello",)],
    )


FAMILIES = {
    "count_class": (count_class, 4),
    "reverse_text": (reverse_text, 1),
    "is_palindrome": (is_palindrome, 1),
    "mask_chars": (mask_chars, 2),
    "capitalize": (capitalize, 1),
    "repeat_joined": (repeat_joined, 1),
    "pad_left": (pad_left, 1),
    "longest_run": (longest_run, 1),
    "run_length": (run_length, 1),
    "caesar": (caesar, 1),
    "count_distinct": (count_distinct, 1),
    "count_motif": (count_motif, 1),
    "alternate_case": (alternate_case, 1),
    "password_check": (password_check, 1),
    "dna_complement": (dna_complement, 1),
    "abbreviate": (abbreviate, 1),
    "strip_prefix": (strip_prefix, 1),
    "keyword_alert": (keyword_alert, 1),
}
