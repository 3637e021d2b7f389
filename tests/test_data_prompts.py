"""Prompts, character for character, for the three tasks on fixtures in the real schemas.

Expected strings are written out here from the reference templates (advfusion.md section 5)
and the authors' processors (Amirresm/advfusion-cllm src/dataset/custom_processors.py), not
computed by the code under test.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from advfusion_cli.data import load_task
from advfusion_cli.data.tasks.commit_message import render_diff

FIXTURES = Path(__file__).parent / "fixtures" / "data"

HEAD = "Based on the change given, only write commit message.\n### Diff:\n"
TAIL = "\n### Commit Message:\n"


def _by_id(data):
    return {e.id: e for e in data.examples}


# ---- commit message ----------------------------------------------------------------------


def test_commit_prompt_matches_the_authors_template():
    data = load_task("commit-message", str(FIXTURES / "commitpackft"), "ruby", "all")
    example = _by_id(data)["a1" * 20]
    assert example.prompt == (
        "Based on the change given, only write commit message.\n"
        "### Diff:\n"
        "--- lib/greeter.rb\n"
        "+++ lib/greeter.rb\n"
        "@@ -1,5 +1,5 @@\n"
        " class Greeter\n"
        "   def greet(name)\n"
        '-    "Hello " + name\n'
        '+    "Hello, #{name}!"\n'
        "   end\n"
        " end\n"
        "### Commit Message:\n"
    )
    assert example.target == "Use string interpolation in greeting"
    assert example.language == "ruby" and example.task == "commit-message"
    start, end = example.meta["inner_span"]
    assert example.prompt[:start] == HEAD and example.prompt[end:] == TAIL


def test_commit_diff_without_final_newline_keeps_lines_apart():
    data = load_task("commit-message", str(FIXTURES / "commitpackft"), "ruby", "all")
    example = _by_id(data)["a2" * 20]
    assert example.prompt == (
        HEAD
        + "--- lib/greeter.rb\n+++ lib/greeter.rb\n@@ -1,2 +1,3 @@\n class Greeter\n+  VERSION = 2\n end"
        + TAIL
    )
    # The authors split without line ends and join with "\n"; a keepends rendering glues a
    # changed last line that lacks its newline to the next diff line ("-y = 2+y = 3").
    old, new = "x = 1\ny = 2", "x = 1\ny = 3"
    assert render_diff("f.py", "f.py", old, new) == (
        "--- f.py\n+++ f.py\n@@ -1,2 +1,2 @@\n x = 1\n-y = 2\n+y = 3"
    )
    keepends = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile="f.py",
            tofile="f.py",
        )
    )
    assert "-y = 2+y = 3" in keepends


def test_diff_of_crlf_files_and_renamed_names():
    diff = render_diff("old/a.py", "new/a.py", "x = 1\r\ny = 2\r\n", "x = 1\r\ny = 3\r\n")
    assert diff == "--- old/a.py\n+++ new/a.py\n@@ -1,2 +1,2 @@\n x = 1\n-y = 2\n+y = 3"
    assert render_diff("a", "a", "same\n", "same\n") == ""


def test_commitpack_config_names_map_to_canonical_languages():
    data = load_task("commit-message", str(FIXTURES / "commitpackft"), "C++", "all")
    (example,) = data.examples
    assert example.language == "cpp"
    assert example.prompt == (
        HEAD + "--- src/main.cpp\n+++ src/main.cpp\n@@ -1 +1 @@\n"
        "-int main() { return 1; }\n+int main() { return 0; }" + TAIL
    )


# ---- code generation ---------------------------------------------------------------------

SUM_PROMPT = (
    '"""\n'
    "Given two integers a and b, print their sum.\n"
    "\n"
    "Input\n"
    "One line with two integers a and b (1 <= a, b <= 100).\n"
    "\n"
    "Output\n"
    "Print a + b.\n"
    "\n"
    "Example 1\n"
    "Input:\n"
    "1 2\n"
    "Output:\n"
    "3\n"
    "\n"
    "NoteIn the first example 1 + 2 = 3.\n"
    '"""\n'
)
SUM_TESTS = (("1 2\r\n", ("3",)), ("10 20\r\n", ("30", "30\n")))


def test_code_generation_prompt_is_a_docstring_and_target_the_solution():
    data = load_task("code-generation", str(FIXTURES / "xcodeeval"), "ruby", "train")
    example = _by_id(data)["u-rb-sum"]
    assert example.prompt == SUM_PROMPT
    assert example.target == "a, b = gets.split.map(&:to_i)\nputs a + b\n"
    assert example.tests == SUM_TESTS
    # the reference's rule: the prompt is everything up to the last '"""' + newline
    assert example.prompt.rsplit('"""\n', 1)[1] == ""


def test_code_generation_language_header_option_and_two_samples():
    data = load_task(
        "code-generation", str(FIXTURES / "xcodeeval"), "js", "train", language_header=True
    )
    (example,) = data.examples
    assert example.language == "javascript"
    assert example.prompt == (
        '"""\n'
        "Language: JavaScript\n"
        "Print the given word reversed.\n\n"
        "Input\nA single word s.\n\n"
        "Output\nThe word s reversed.\n\n"
        "Example 1\nInput:\nabc\nOutput:\ncba\n\n"
        "Example 2\nInput:\nx\nOutput:\nx\n"
        '"""\n'
    )
    start, end = example.meta["inner_span"]
    assert example.prompt[start:end].startswith("Print the given word")


# ---- code translation --------------------------------------------------------------------


def test_translation_prompt_and_direction_from_key_order():
    data = load_task("code-translation", str(FIXTURES / "codetransocean"), "ruby", "train")
    by_id = _by_id(data)
    # NicheTrans row {id, name, Python, Ruby}: 3rd key is the source, 4th the target
    example = by_id["NicheTrans:train:0"]
    assert example.source_language == "python" and example.language == "ruby"
    assert example.prompt == (
        "### Code written in Python:\nprint('hello')\n\n### Code written in Ruby:\n"
    )
    assert example.target == "puts 'hello'\n"
    # the row {id, name, Ruby, Go} translates *from* Ruby, so it is not a Ruby-target example
    assert "NicheTrans:train:1" not in by_id
    assert sorted(by_id) == ["NicheTrans:train:0", "NicheTrans:train:2"]


def test_llmtrans_direction_is_fourth_key_to_third_and_output_is_a_test():
    data = load_task("code-translation", str(FIXTURES / "codetransocean"), "python", "test")
    example = _by_id(data)["LLMTrans:test:1"]
    assert example.source_language == "cpp" and example.language == "python"
    assert example.prompt == (
        "### Code written in C++:\n"
        '#include <iostream>\nint main() { std::cout << "hello\\n"; }\n'
        "\n### Code written in Python:\n"
    )
    assert example.target == "print('hello')\n"
    assert example.tests == (("", ("hello\n",)),)


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        ("train", ["MultilingualTrans:train:1"]),
        ("validation", []),
        ("test", ["LLMTrans:test:0", "LLMTrans:test:1"]),
    ],
)
def test_translation_splits_come_from_the_files(split, expected):
    data = load_task("code-translation", str(FIXTURES / "codetransocean"), None, "all")
    python_targets = sorted(e.id for e in data.split(split) if e.language == "python")
    assert python_targets == expected
    assert data.stats.counts[("python", "test")] == 2
    assert data.stats.counts[("cpp", "validation")] == 1


def test_translation_source_language_filter_and_subsets():
    root = str(FIXTURES / "codetransocean")
    data = load_task("code-translation", root, "ruby", "train", source_languages=["Java"])
    assert [e.id for e in data.examples] == ["NicheTrans:train:2"]
    data = load_task("code-translation", root, "go", "train", subsets=["MultilingualTrans"])
    assert [(e.id, e.source_language) for e in data.examples] == [
        ("MultilingualTrans:train:0", "python")
    ]
