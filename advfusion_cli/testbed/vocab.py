"""Domain vocabularies: what the numbers and strings of a generated program are *about*.

Names carry meaning (`count_prices_above`, `longest_warm_streak`) and every program comes
with an English statement, so translation and commit subjects have words to copy across
languages, as real code does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quantity:
    """A list of integers with a meaning: `prices`, each between `low` and `high`."""

    singular: str
    plural: str
    low: int
    high: int
    context: str  # one sentence of story for the problem statement
    topic: str  # package / repository theme

    @property
    def nonnegative(self) -> bool:
        return self.low >= 0


QUANTITIES: tuple[Quantity, ...] = (
    Quantity(
        "price", "prices", 1, 500, "A shop lists the prices of the items in a basket.", "shop"
    ),
    Quantity("score", "scores", 0, 100, "A teacher records the test scores of a class.", "grades"),
    Quantity(
        "temperature",
        "temperatures",
        -20,
        40,
        "A weather station logs the temperature every hour.",
        "weather",
    ),
    Quantity(
        "distance",
        "distances",
        0,
        900,
        "A courier notes the distance of each delivery in kilometres.",
        "delivery",
    ),
    Quantity(
        "weight", "weights", 1, 200, "A warehouse weighs every parcel before shipping.", "warehouse"
    ),
    Quantity("age", "ages", 0, 99, "A clinic keeps the ages of its patients.", "clinic"),
    Quantity(
        "vote", "votes", 0, 60, "An election office counts the votes of each candidate.", "election"
    ),
    Quantity(
        "height",
        "heights",
        100,
        210,
        "A coach measures the heights of the players in centimetres.",
        "team",
    ),
    Quantity(
        "speed",
        "speeds",
        0,
        180,
        "A traffic camera records the speed of each passing car.",
        "traffic",
    ),
    Quantity(
        "balance",
        "balances",
        -500,
        500,
        "A bank tracks the balance of each account at the end of the day.",
        "bank",
    ),
    Quantity("reading", "readings", -99, 99, "A sensor reports a sequence of readings.", "sensor"),
    Quantity(
        "delay",
        "delays",
        0,
        120,
        "A train operator logs the delay of every train in minutes.",
        "transit",
    ),
    Quantity("rating", "ratings", 1, 10, "An app collects user ratings for a product.", "reviews"),
    Quantity(
        "page", "pages", 1, 900, "A library records the number of pages of each book.", "library"
    ),
    Quantity("sale", "sales", 0, 300, "A store records its daily sales.", "store"),
    Quantity(
        "point", "points", 0, 100, "A game stores the points a player earned in each round.", "game"
    ),
    Quantity(
        "duration",
        "durations",
        1,
        240,
        "A gym logs the duration of every workout in minutes.",
        "fitness",
    ),
    Quantity("cost", "costs", 1, 400, "A project tracks the cost of each task.", "budget"),
    Quantity(
        "visit", "visits", 0, 999, "A website counts the daily visits to each page.", "analytics"
    ),
    Quantity(
        "goal", "goals", 0, 9, "A football club records the goals scored in each match.", "league"
    ),
    Quantity(
        "deposit",
        "deposits",
        1,
        1000,
        "A savings account receives a series of deposits.",
        "savings",
    ),
    Quantity(
        "expense", "expenses", 1, 800, "A family writes down its monthly expenses.", "finance"
    ),
    Quantity(
        "reward",
        "rewards",
        0,
        100,
        "A loyalty program hands out reward points per purchase.",
        "loyalty",
    ),
    Quantity("mark", "marks", 0, 100, "An examiner lists the marks of the candidates.", "exams"),
    Quantity(
        "altitude", "altitudes", 0, 900, "A drone reports its altitude every second.", "flight"
    ),
    Quantity(
        "signal", "signals", -50, 50, "A radio receiver samples the strength of a signal.", "radio"
    ),
    Quantity(
        "ticket", "tickets", 0, 50, "A cinema counts the tickets sold for each show.", "cinema"
    ),
    Quantity(
        "order",
        "orders",
        0,
        80,
        "A restaurant counts the orders it receives every hour.",
        "kitchen",
    ),
)


@dataclass(frozen=True)
class TextKind:
    """A string parameter with a meaning and an alphabet: `word` of lower-case letters."""

    noun: str
    alphabet: str  # "lower", "capitalized", "mixed", "alnum", "code", "dna"
    min_len: int
    max_len: int
    context: str
    topic: str


TEXTS: tuple[TextKind, ...] = (
    TextKind("word", "lower", 0, 12, "A word game works with single words.", "words"),
    TextKind("name", "capitalized", 1, 10, "A registration form asks for a name.", "forms"),
    TextKind("label", "lower", 0, 10, "A warehouse prints a label on every shelf.", "labels"),
    TextKind("password", "mixed", 0, 12, "A website checks the passwords of new users.", "auth"),
    TextKind("title", "mixed", 1, 12, "A blog stores the title of every post.", "blog"),
    TextKind("message", "lower", 0, 14, "A chat app processes short messages.", "chat"),
    TextKind("username", "alnum", 1, 10, "A forum validates usernames.", "forum"),
    TextKind("city", "capitalized", 1, 10, "A travel site stores city names.", "travel"),
    TextKind(
        "code", "code", 1, 8, "A parcel service prints a tracking code on every box.", "tracking"
    ),
    TextKind(
        "strand",
        "dna",
        0,
        14,
        "A biology lab stores DNA strands as strings of A, C, G and T.",
        "genomics",
    ),
    TextKind("token", "lower", 0, 12, "A parser splits its input into tokens.", "parser"),
)


@dataclass(frozen=True)
class Scalar:
    """An integer parameter with a meaning, e.g. `limit` between 0 and 100."""

    name: str
    low: int
    high: int


LIST_WORDS_FOR_COUNTER = ("count", "matches", "tally", "hits")
LIST_WORDS_FOR_RESULT = ("result", "selected", "kept", "output")

# GitHub-like owners and project words for the synthetic commit repositories.
OWNERS = (
    "acme",
    "bluefin",
    "northwind",
    "orbitdev",
    "kestrel",
    "tidewater",
    "quartzsoft",
    "maplecode",
    "lumenworks",
    "ironbark",
    "cobaltlabs",
    "redfern",
    "silverpine",
    "brightline",
    "oakridge",
    "harborio",
    "nimbusorg",
    "fjordtech",
    "emberhq",
    "pinecrest",
)
PROJECT_SUFFIXES = ("utils", "tools", "core", "lib", "kit", "helpers", "service", "engine")
