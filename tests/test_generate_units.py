"""The generate package without a model: git diffs rewritten into the training diff, prompts
identical to the data loaders' training prompts, input checks, the cut report, and choosing
a comparison's best run."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from test_generate_support import (
    commit_row,
    function_in,
    git_diff,
    write_commits,
    write_generation,
    write_translation,
)

from advfusion_cli.data import load_task
from advfusion_cli.data.languages import LANGUAGES
from advfusion_cli.data.tasks.commit_message import render_diff
from advfusion_cli.errors import UserError
from advfusion_cli.generate.budget import auto_max_new_tokens, measure_cut, prompt_budget
from advfusion_cli.generate.diffs import parse_diff
from advfusion_cli.generate.extensions import EXTENSIONS, language_of_path
from advfusion_cli.generate.inputs import InputText, read_inputs, read_stdin
from advfusion_cli.generate.prompts import build_items
from advfusion_cli.generate.runs import best_of_compare, latest_compare

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")

OLD = "import os\n\n\ndef a():\n    return 1\n\n\ndef b():\n    return 2\n"
NEW = "import os\n\n\ndef a():\n    return 10\n\n\ndef b():\n    return 2\n\n\ndef c():\n    pass\n"


def stdin_input(text: str) -> InputText:
    return InputText("stdin", text)


# ---- diffs -----------------------------------------------------------------------------------


@needs_git
def test_git_diff_of_one_file_is_the_training_diff(tmp_path):
    text = git_diff(tmp_path / "r", {"src/m.py": (OLD, NEW)})
    assert text.startswith("diff --git a/src/m.py b/src/m.py\nindex ")
    (file,) = parse_diff(text).files
    assert file.render() == render_diff("src/m.py", "src/m.py", OLD, NEW)


@needs_git
def test_added_and_deleted_files_are_named_on_both_sides_like_commitpackft(tmp_path):
    text = git_diff(tmp_path / "r", {"new.rb": (None, "puts 1\nputs 2\n"), "old.rb": ("x\n", None)})
    assert "--- /dev/null" in text and "+++ /dev/null" in text
    files = {f.path: f for f in parse_diff(text).files}
    assert files["new.rb"].render() == render_diff("new.rb", "new.rb", "", "puts 1\nputs 2\n")
    assert files["old.rb"].render() == render_diff("old.rb", "old.rb", "x\n", "")


@needs_git
def test_function_heading_and_no_newline_marker_are_dropped(tmp_path):
    old = "def f():\n" + "".join(f"    x{i} = {i}\n" for i in range(12)) + "    return x0"
    new = old.replace("x9 = 9", "x9 = 90").replace("return x0", "return x1")
    text = git_diff(tmp_path / "r", {"f.py": (old, new)})
    assert "@@ def f():" in text and "\\ No newline at end of file" in text
    (file,) = parse_diff(text).files
    assert file.render() == render_diff("f.py", "f.py", old, new)


@needs_git
def test_multi_file_diff_keeps_file_order_and_skips_binary_files(tmp_path):
    repo = tmp_path / "r"
    text = git_diff(repo, {"a.py": ("a = 1\n", "a = 2\n"), "b.py": ("b = 1\n", "b = 3\n")})
    (repo / "logo.png").write_bytes(b"\x89PNG\x00\x01")
    binary = git_diff(tmp_path / "r2", {"c.py": ("c = 1\n", "c = 2\n")})
    parsed = parse_diff(
        text + "diff --git a/logo.png b/logo.png\nnew file mode 100644\n"
        "index 0000000..1111111\nBinary files /dev/null and b/logo.png differ\n" + binary
    )
    assert [f.path for f in parsed.files] == ["a.py", "b.py", "c.py"]
    assert parsed.skipped == ["logo.png"]
    assert parsed.render() == "\n".join(
        [
            render_diff("a.py", "a.py", "a = 1\n", "a = 2\n"),
            render_diff("b.py", "b.py", "b = 1\n", "b = 3\n"),
            render_diff("c.py", "c.py", "c = 1\n", "c = 2\n"),
        ]
    )


def test_hunk_lengths_decide_where_a_file_ends():
    """A removed line reading `-- x` followed by an added `++ y` is hunk content, not the
    next file's headers; a blank context line whose space was trimmed counts as context."""
    diff = (
        "--- q.sql\n+++ q.sql\n@@ -1,3 +1,3 @@\n--- x\n+++ y\n\n keep\n"
        "--- r.sql\n+++ r.sql\n@@ -1 +1 @@\n-a\n+b\n"
    )
    parsed = parse_diff(diff)
    assert [f.path for f in parsed.files] == ["q.sql", "r.sql"]
    assert parsed.files[0].hunks == ("@@ -1,3 +1,3 @@\n--- x\n+++ y\n \n keep",)


def test_plain_diff_u_output_loses_its_timestamps():
    diff = "--- a.go\t2024-01-01 10:00:00 +0000\n+++ a.go\t2024-01-02 10:00:00 +0000\n@@ -1 +1 @@\n-a\n+b\n"
    (file,) = parse_diff(diff).files
    assert file.render() == "--- a.go\n+++ a.go\n@@ -1 +1 @@\n-a\n+b"


# ---- prompts exactly as in training ------------------------------------------------------------


@needs_git
def test_commit_message_prompt_from_git_diff_equals_the_training_prompt(tmp_path):
    write_commits(tmp_path / "commits", per_language=3)
    examples = load_task("commit-message", str(tmp_path / "commits"), ["ruby"], "all").examples
    example = next(e for e in examples if e.id == "ruby0001")
    row = commit_row("ruby", 1)
    text = git_diff(tmp_path / "r", {row["new_file"]: (row["old_contents"], row["new_contents"])})
    (item,) = build_items("commit-message", stdin_input(text), run_target="ruby")
    assert item.example.prompt == example.prompt
    assert item.example.meta["inner_span"] == example.meta["inner_span"]


def test_multi_file_diff_is_one_prompt_or_one_per_file():
    diff = "--- a.py\n+++ a.py\n@@ -1 +1 @@\n-a\n+b\n--- b.py\n+++ b.py\n@@ -1 +1 @@\n-c\n+d\n"
    (combined,) = build_items("commit-message", stdin_input(diff), run_target="python")
    first, second = (
        "--- a.py\n+++ a.py\n@@ -1 +1 @@\n-a\n+b",
        "--- b.py\n+++ b.py\n@@ -1 +1 @@\n-c\n+d",
    )
    head = "Based on the change given, only write commit message.\n### Diff:\n"
    assert combined.example.prompt == head + first + "\n" + second + "\n### Commit Message:\n"
    assert combined.example.meta["file_ends"] == [
        len(head + first),
        len(head + first) + 1 + len(second),
    ]
    per_file = build_items("commit-message", stdin_input(diff), run_target="python", per_file=True)
    assert [i.id for i in per_file] == ["stdin:a.py", "stdin:b.py"]
    assert per_file[1].example.prompt == head + second + "\n### Commit Message:\n"


def test_translation_prompt_equals_the_training_prompt(tmp_path):
    write_translation(tmp_path / "trans", per_split=2)
    examples = load_task("code-translation", str(tmp_path / "trans"), ["ruby"], "train").examples
    example = next(e for e in examples if e.source_language == "java")
    path = tmp_path / "Main.java"
    path.write_text(function_in("java", example.meta["name"]))
    (item,) = build_items("code-translation", read_inputs([path])[0], run_target="ruby")
    assert item.example.prompt == example.prompt
    assert item.example.source_language == "java" and item.example.language == "ruby"
    (to_python,) = build_items(
        "code-translation",
        stdin_input("puts 1\n"),
        run_target="ruby",
        source_language="rb",
        target_language="Python",
    )
    assert (
        to_python.example.prompt
        == "### Code written in Ruby:\nputs 1\n\n### Code written in Python:\n"
    )


def test_generation_prompt_equals_the_training_prompt(tmp_path):
    from advfusion_cli.data.tasks.code_generation import DOCSTRING

    write_generation(tmp_path / "gen", per_split=2)
    example = load_task("code-generation", str(tmp_path / "gen"), ["ruby"], "train").examples[0]
    statement = example.prompt[len(DOCSTRING) : -len("\n" + DOCSTRING)]
    problem = tmp_path / "problem.md"
    problem.write_text(statement + "\n")  # a file's final newline is not part of the statement
    (item,) = build_items("code-generation", read_inputs([problem])[0], run_target="ruby")
    assert item.example.prompt == example.prompt


# ---- input of the wrong kind ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "text", "path", "flags", "message"),
    [
        ("commit-message", "just some prose\n", None, {}, "is not a unified diff"),
        ("code-translation", "--- a\n+++ a\n@@ -1 +1 @@\n-a\n+b\n", None, {}, "looks like a diff"),
        (
            "code-generation",
            "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
            None,
            {},
            "looks like a diff",
        ),
        ("code-generation", "print(1)\n", "solve.py", {}, "looks like Python source code"),
        ("code-translation", "x\n", "prog.xyz", {}, "from its extension (.xyz); pass --from"),
        ("code-translation", "x\n", None, {}, "pass --from"),
        (
            "code-translation",
            "x\n",
            None,
            {"source_language": "jvaa"},
            "--from: Unknown language 'jvaa'. Did you mean 'java'?",
        ),
        (
            "code-translation",
            "x\n",
            None,
            {"source_language": "java", "target_language": "rubyy"},
            "--to: Unknown language 'rubyy'. Did you mean 'ruby'?",
        ),
        ("code-translation", "x = 1\n", "a.rb", {}, "is already Ruby"),
        (
            "commit-message",
            "--- a\n+++ a\n@@ -1 +1 @@\n-a\n+b\n",
            None,
            {"source_language": "go"},
            "--from applies to code-translation only",
        ),
        (
            "code-generation",
            "Add two numbers.\n",
            None,
            {"target_language": "java"},
            "trained for ruby and its prompt names no language",
        ),
    ],
)
def test_wrong_input_is_a_one_line_user_error(task, text, path, flags, message):
    source = InputText(path or "stdin", text, Path(path) if path else None)
    with pytest.raises(UserError) as err:
        build_items(task, source, run_target="ruby", **flags)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_binary_only_diff_has_no_text_changes():
    diff = (
        "diff --git a/x.png b/x.png\nindex 1..2 100644\nBinary files a/x.png and b/x.png differ\n"
    )
    with pytest.raises(UserError, match=r"no text changes \(only x.png"):
        build_items("commit-message", stdin_input(diff), run_target="go")


def test_reading_inputs(tmp_path):
    (tmp_path / "bom.txt").write_bytes("\ufeffAdd one.\n".encode())
    (tmp_path / "empty.txt").write_text(" \n\n")
    (tmp_path / "bin.dat").write_bytes(b"a\x00b")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    assert read_inputs([tmp_path / "bom.txt"])[0].text == "Add one.\n"
    cases = {
        "empty.txt": "is empty",
        "bin.dat": "is binary",
        "latin.txt": "is not UTF-8 text",
        "missing.txt": "does not exist",
    }
    for name, message in cases.items():
        with pytest.raises(UserError, match=message):
            read_inputs([tmp_path / name])
    with pytest.raises(UserError, match="is a folder"):
        read_inputs([tmp_path])
    piped = io.TextIOWrapper(io.BytesIO("héllo\n".encode()), encoding="utf-8")
    assert read_inputs([], stdin=piped)[0] == InputText("stdin", "héllo\n")
    with pytest.raises(UserError, match="Standard input is empty"):
        read_stdin(io.BytesIO(b"  \n"))
    with pytest.raises(UserError, match="only once"):
        read_inputs(["-", "-"])

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with pytest.raises(UserError, match="No input: pass a file, or pipe text"):
        read_stdin(Terminal())


def test_every_extension_names_a_known_language():
    assert set(EXTENSIONS.values()) <= set(LANGUAGES)
    assert language_of_path("src/Main.JAVA") == "java" and language_of_path("x.cc") == "cpp"
    assert language_of_path("notes.md") is None


# ---- budgets and the cut report ------------------------------------------------------------------


def test_budget_and_new_tokens():
    assert prompt_budget(300, 512, 100) == 300
    assert prompt_budget(300, 512, 400) == 112
    assert prompt_budget(300, None, 10_000) == 300
    assert auto_max_new_tokens([100], None) == 512
    assert auto_max_new_tokens([100, 300], 512) == 212  # what the positions leave
    assert auto_max_new_tokens([500], 512) == 128  # never below a quarter of the positions
    assert auto_max_new_tokens([10], 4096) == 512  # the authors' cap


def test_cut_report_counts_characters_tokens_and_whole_files(tmp_path):
    """With one token per character the numbers are exact: a 20-token budget keeps
    20 - len(template) characters of the diff."""
    from test_generate_support import make_model
    from transformers import AutoTokenizer

    from advfusion_cli.data.encoding import encode_prompt_for_generation

    tokenizer = AutoTokenizer.from_pretrained(make_model(tmp_path / "m", positions=64))
    diff = "--- a.py\n+++ a.py\n@@ -1 +1 @@\n-a\n+b\n--- b.py\n+++ b.py\n@@ -1 +1 @@\n-c\n+d\n"
    (item,) = build_items("commit-message", stdin_input(diff), run_target="python")
    example = item.example
    start, end = example.meta["inner_span"]
    template = len(example.prompt) - (end - start)
    budget = template + 40  # the first file's diff is 37 characters: it survives whole
    feature = encode_prompt_for_generation(tokenizer, example, max_prompt_tokens=budget)
    cut = measure_cut(tokenizer, example, feature, budget, "diff")
    assert (cut.full_tokens, cut.kept_tokens) == (len(example.prompt), budget)
    assert (cut.total_chars, cut.kept_chars) == (end - start, 40)
    assert (cut.total_files, cut.whole_files) == (2, 1)
    assert cut.message("stdin") == (
        f"stdin: the diff was cut to fit the prompt budget of {budget} tokens (kept {budget} of "
        f"{len(example.prompt)} prompt tokens; {end - start - 40} of the {end - start} characters "
        "of the diff cut; 1 of 2 files whole)."
    )


# ---- a comparison's best run -------------------------------------------------------------------


def _finished_run(workdir: Path, run_id: str) -> None:
    run = workdir / "runs" / run_id
    (run / "final").mkdir(parents=True)
    (run / "job.yaml").write_text("preset: testbed\n")
    (run / "status.json").write_text(json.dumps({"status": "finished"}))


def _compare(workdir: Path, name: str, rows: list[dict], *, target="ruby", created="2026-01-01"):
    folder = workdir / "compare" / name
    folder.mkdir(parents=True)
    payload = {
        "created": created,
        "task": "code-translation",
        "target": target,
        "table_metrics": ["bleu4_smooth_13a_corpus", "exact_match"],
        "rows": rows,
    }
    (folder / "results.json").write_text(json.dumps(payload))
    return folder


def _row(method: str, mean: float, per_seed: list[float], run_ids: list[str | None]) -> dict:
    runs = [{"seed": i, "run_id": r, "run_dir": f"elsewhere/{r}"} for i, r in enumerate(run_ids)]
    metric = {"mean": mean, "per_seed": per_seed, "is_best": False}
    return {
        "method": method,
        "runs": runs,
        "metrics": {"bleu4_smooth_13a_corpus": metric, "exact_match": {"mean": 99.0}},
    }


def test_best_of_compare_picks_the_headline_metric_and_the_best_seed(tmp_path):
    work = tmp_path / "w"
    for run_id in ("lora-ruby-1", "advfusion-ruby-1", "advfusion-ruby-2"):
        _finished_run(work, run_id)
    rows = [
        _row("base", 50.0, [50.0], [None]),  # best of all, but not a trained run
        _row("lora", 20.0, [20.0], ["lora-ruby-1"]),
        _row("advfusion", 30.0, [28.0, 32.0], ["advfusion-ruby-1", "advfusion-ruby-2"]),
    ]
    folder = _compare(work, "code-translation-ruby-aaaa", rows)
    resolved = best_of_compare(folder / "results.json")
    assert resolved.run.path == work / "runs" / "advfusion-ruby-2"
    assert "advfusion (bleu4_smooth_13a_corpus 30)" in resolved.how

    _compare(
        work,
        "code-translation-ruby-bbbb",
        [_row("lora", 1.0, [1.0], ["lora-ruby-1"])],
        created="2026-02-01",
    )
    _compare(
        work,
        "code-translation-java-cccc",
        [_row("lora", 1.0, [1.0], ["lora-ruby-1"])],
        target="java",
        created="2026-03-01",
    )
    assert latest_compare(work, "ruby", None).parent.name == "code-translation-ruby-bbbb"
    assert latest_compare(work, None, None).parent.name == "code-translation-java-cccc"
    with pytest.raises(UserError, match="No commit-message comparison for 'ruby'"):
        latest_compare(work, "ruby", "commit-message")


def test_best_of_compare_errors(tmp_path):
    work = tmp_path / "w"
    only_base = _compare(work, "x", [_row("base", 5.0, [5.0], [None])])
    with pytest.raises(UserError, match="no trained run scored on bleu4_smooth_13a_corpus"):
        best_of_compare(only_base / "results.json")
    unfinished = _compare(work, "y", [_row("lora", 5.0, [5.0], ["lora-ruby-9"])])
    (work / "runs" / "lora-ruby-9").mkdir(parents=True)
    (work / "runs" / "lora-ruby-9" / "job.yaml").write_text("preset: testbed\n")
    with pytest.raises(UserError, match="Run 'lora-ruby-9' is not finished"):
        best_of_compare(unfinished / "results.json")
    broken = work / "compare" / "z"
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        best_of_compare(broken / "results.json")
