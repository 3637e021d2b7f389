"""The testbed IR: renderers (exact source per language), interpreter rules, validator rules."""

from __future__ import annotations

import pytest

from advfusion_cli.errors import UserError
from advfusion_cli.testbed.build import (
    BOOL,
    CHAR,
    INT,
    LIST,
    STR,
    builtin,
    call,
    cmp,
    get,
    length,
    lit,
    mul,
    name,
    sub,
    to_str,
    var,
)
from advfusion_cli.testbed.interpreter import Divergence, evaluate
from advfusion_cli.testbed.ir import (
    Arith,
    AugAssign,
    Declare,
    ForEach,
    ForRange,
    Function,
    If,
    ListAppend,
    Print,
    Program,
    Return,
    While,
)
from advfusion_cli.testbed.naming import identifier, is_reserved
from advfusion_cli.testbed.render import FileLayout, render_module, render_program
from advfusion_cli.testbed.validate import InvalidProgram, check_program


def vowel_program() -> Program:
    letter, word, count, ch = (
        var("letter", CHAR),
        var("word", STR),
        var("count", INT),
        var("ch", CHAR),
    )
    is_vowel = Function(
        name("is_vowel"),
        (letter,),
        BOOL,
        (Return(builtin("str_contains_char", lit("aeiou"), letter)),),
        "Check whether letter is a vowel.",
    )
    body = (
        Declare(count, lit(0)),
        ForEach(ch, word, (If(call(is_vowel, ch), (AugAssign(count, "+", lit(1)),)),)),
        Return(count),
    )
    return Program(
        (is_vowel, Function(name("count_vowels"), (word,), INT, body, "Count the vowels in word."))
    )


def doubled_program() -> Program:
    prices, limit, result, i = (
        var("prices", LIST),
        var("limit", INT),
        var("result", LIST),
        var("i", INT),
    )
    body = (
        If(cmp("==", length(prices), 0), (Return(builtin("empty_list")),)),
        Declare(result, builtin("empty_list")),
        ForRange(
            i,
            lit(0),
            length(prices),
            1,
            (If(cmp(">", get(prices, i), limit), (ListAppend(result, mul(get(prices, i), 2)),)),),
        ),
        Return(result),
    )
    return Program(
        (
            Function(
                name("double_prices_above"),
                (prices, limit),
                LIST,
                body,
                "Double the prices above limit.",
            ),
        )
    )


EXPECTED_MODULES = {
    "python": """def is_vowel(letter: str) -> bool:
    return letter in "aeiou"


def count_vowels(word: str) -> int:
    count = 0
    for ch in word:
        if is_vowel(ch):
            count += 1
    return count
""",
    "javascript": """function isVowel(letter) {
  return "aeiou".includes(letter);
}

function countVowels(word) {
  let count = 0;
  for (const ch of word) {
    if (isVowel(ch)) {
      count++;
    }
  }
  return count;
}
""",
    "java": """public class Main {
    static boolean isVowel(char letter) {
        return "aeiou".indexOf(letter) >= 0;
    }

    static int countVowels(String word) {
        int count = 0;
        for (char ch : word.toCharArray()) {
            if (isVowel(ch)) {
                count++;
            }
        }
        return count;
    }
}
""",
    "go": """package main

import "strings"

func isVowel(letter rune) bool {
\treturn strings.ContainsRune("aeiou", letter)
}

func countVowels(word string) int {
\tcount := 0
\tfor _, ch := range word {
\t\tif isVowel(ch) {
\t\t\tcount++
\t\t}
\t}
\treturn count
}
""",
    "ruby": """def is_vowel(letter)
  "aeiou".include?(letter)
end

def count_vowels(word)
  count = 0
  word.each_char do |ch|
    count += 1 if is_vowel(ch)
  end
  count
end
""",
}


@pytest.mark.parametrize("language", sorted(EXPECTED_MODULES))
def test_module_rendering_is_idiomatic_and_exact(language):
    assert render_module(vowel_program(), language) == EXPECTED_MODULES[language]


def test_full_programs_read_stdin_and_print_in_each_language():
    program = doubled_program()
    python = render_program(program, "python")
    assert python.endswith(
        'input()\nprices = list(map(int, input().split()))\nlimit = int(input())\nprint(" ".join(map(str, double_prices_above(prices, limit))))\n'
    )
    java = render_program(program, "java")
    assert (
        "public class Main {" in java
        and "public static void main(String[] args) throws IOException {" in java
    )
    assert "static List<Integer> doublePricesAbove(List<Integer> prices, int limit) {" in java
    assert "if (prices.isEmpty()) {" in java and "result.add(prices.get(i) * 2);" in java
    go = render_program(program, "go")
    assert go.startswith(
        'package main\n\nimport (\n\t"bufio"\n\t"fmt"\n\t"os"\n\t"strconv"\n\t"strings"\n)\n'
    )
    assert "func doublePricesAbove(prices []int, limit int) []int {" in go
    assert "result = append(result, prices[i]*2)" in go  # gofmt spacing inside call arguments
    ruby = render_program(program, "ruby")
    assert "def double_prices_above(prices, limit)\n  return [] if prices.empty?\n" in ruby
    assert ruby.endswith(
        'gets\nprices = gets.split.map(&:to_i)\nlimit = gets.to_i\nputs double_prices_above(prices, limit).join(" ")\n'
    )
    js = render_program(program, "javascript")
    assert "function doublePricesAbove(prices, limit) {" in js and "const result = [];" in js
    assert 'const prices = lines[1].split(" ").filter(Boolean).map(Number);' in js


def test_library_layouts_wrap_code_like_real_files():
    layout = FileLayout(package=("text",), module=("vowel", "stats"), owner="acme")
    java = render_module(vowel_program(), "java", layout)
    assert java.startswith(
        "package com.acme.text;\n\npublic class VowelStats {\n    public static boolean isVowel("
    )
    assert render_module(vowel_program(), "go", layout).startswith("package text\n")
    ruby = render_module(vowel_program(), "ruby", layout)
    assert ruby.startswith("module VowelStats\n  module_function\n\n  def is_vowel(letter)\n")
    js = render_module(vowel_program(), "javascript", layout)
    assert js.startswith('"use strict";\n') and js.endswith(
        "module.exports = { isVowel, countVowels };\n"
    )


def test_doc_comments_and_defaults_follow_each_language():
    program = doubled_program()
    func = program.entry
    documented = Program(
        (
            Function(
                func.name,
                func.params,
                func.returns,
                func.body,
                func.summary,
                ((name("limit"), lit(10)),),
                True,
            ),
        )
    )
    assert (
        'def double_prices_above(prices: list[int], limit: int = 10) -> list[int]:\n    """Double the prices above limit."""'
        in render_module(documented, "python")
    )
    assert (
        "/**\n * Double the prices above limit.\n */\nfunction doublePricesAbove(prices, limit = 10) {"
        in render_module(documented, "javascript")
    )
    java = render_module(documented, "java")
    assert (
        "static List<Integer> doublePricesAbove(List<Integer> prices) {\n        return doublePricesAbove(prices, 10);"
        in java
    )
    assert (
        "// doublePricesAbove doubles the prices above limit.\nfunc doublePricesAbove("
        in render_module(documented, "go")
    )
    assert (
        "# Double the prices above limit.\ndef double_prices_above(prices, limit = 10)"
        in render_module(documented, "ruby")
    )


def test_precedence_parentheses_are_kept_where_needed():
    a, b, c = var("a", INT), var("b", INT), var("c", INT)
    expr = sub(a, sub(b, c))  # a - (b - c) must keep its parentheses
    func = Function(name("f"), (a, b, c), INT, (Return(mul(expr, Arith("+", a, b))),), "f.")
    program = Program((func,))
    assert "return (a - (b - c)) * (a + b)" in render_module(program, "python")
    assert "return (a - (b - c)) * (a + b)" in render_module(program, "go")
    assert evaluate(program, (10, 4, 1)) == (10 - (4 - 1)) * (10 + 4)


def test_string_equality_in_java_uses_equals_and_chars_concatenate():
    word, other, out, i = var("word", STR), var("other", STR), var("out", STR), var("i", INT)
    body = (
        Declare(out, lit("")),
        ForRange(
            i, sub(length(word), 1), lit(-1), -1, (AugAssign(out, "+", to_str(get(word, i))),)
        ),
        If(cmp("==", out, other), (Return(lit(True)),)),
        Return(lit(False)),
    )
    program = Program((Function(name("is_reverse_of"), (word, other), BOOL, body, "x."),))
    java = render_module(program, "java")
    assert "if (out.equals(other)) {" in java and "out += word.charAt(i);" in java
    assert "for (int i = word.length() - 1; i >= 0; i--) {" in java
    assert "out += string(word[i])" in render_module(program, "go")
    assert "(word.length - 1).downto(0) do |i|" in render_module(program, "ruby")
    assert evaluate(program, ("abc", "cba")) is True and evaluate(program, ("abc", "abc")) is False


def test_interpreter_refuses_what_languages_disagree_on():
    a, b = var("a", INT), var("b", INT)
    divide = Program((Function(name("divide"), (a, b), INT, (Return(Arith("/", a, b)),), "x."),))
    assert evaluate(divide, (7, 2)) == 3
    with pytest.raises(Divergence):
        evaluate(divide, (-7, 2))  # Python floors, Java/Go/JS truncate
    with pytest.raises(Divergence):
        evaluate(divide, (7, 0))
    square = Program((Function(name("square"), (a,), INT, (Return(mul(a, a)),), "x."),))
    with pytest.raises(Divergence):
        evaluate(square, (70000,))  # overflows Java's 32-bit int
    xs = var("xs", LIST)
    first = Program((Function(name("first"), (xs,), INT, (Return(get(xs, 0)),), "x."),))
    with pytest.raises(Divergence):
        evaluate(first, ([],))


def test_interpreter_stops_runaway_loops():
    n = var("n", INT)
    body = (While(cmp(">", n, -1), (AugAssign(n, "+", lit(0)),)), Return(n))
    with pytest.raises(Divergence):
        evaluate(Program((Function(name("spin"), (n,), INT, body, "x."),)), (1,))


@pytest.mark.parametrize(
    "body, rule",
    [
        ((Declare(var("unused", INT), lit(1)), Return(lit(0))), "never read"),
        ((Return(lit(0)), Return(lit(1))), "after return"),
        ((Declare(var("n", INT), lit(1)), Return(var("n", INT))), "shadows"),
        ((Print(lit(1)),), "must end with a return"),
        (
            (
                ForRange(
                    var("i", INT),
                    lit(0),
                    var("n", INT),
                    1,
                    (AugAssign(var("i", INT), "+", lit(1)),),
                ),
                Return(lit(0)),
            ),
            "loop variable",
        ),
    ],
)
def test_validator_rejects_code_some_language_would_reject(body, rule):
    program = Program((Function(name("f"), (var("n", INT),), INT, body, "x."),))
    with pytest.raises(InvalidProgram, match=rule):
        check_program(program)


def test_naming_follows_each_convention_and_avoids_keywords():
    words = ("count", "vowels")
    assert [identifier(words, lang) for lang in ("python", "ruby", "javascript", "java", "go")] == [
        "count_vowels",
        "count_vowels",
        "countVowels",
        "countVowels",
        "countVowels",
    ]
    assert is_reserved(("range",)) and is_reserved(("end",)) and is_reserved(("strings",))
    assert not is_reserved(("count", "vowels"))


def test_config_rejects_bad_values_with_user_errors():
    from advfusion_cli.testbed import TestbedConfig

    with pytest.raises(UserError, match="Unknown testbed language 'rubyy'. Did you mean 'ruby'"):
        TestbedConfig(languages=("python", "rubyy"))
    with pytest.raises(UserError, match="target_language 'go'"):
        TestbedConfig(languages=("python", "ruby"), target_language="go")
    with pytest.raises(UserError, match="train_per_language"):
        TestbedConfig(train_per_language=0)
    with pytest.raises(UserError, match="target_train_ratio"):
        TestbedConfig(target_train_ratio=1.5)
    assert TestbedConfig().train_size("ruby") == 200 and TestbedConfig().train_size("go") == 2000
