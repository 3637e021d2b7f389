"""`advfusion generate` end to end on runs trained through the real CLI (a tiny random Llama,
one LoRA run per task and an AdvFusion run for translation): each task through standard
input and a file, stdout holding only the generation (also in a real subprocess), stable
samples under a seed, --json records, the cut warning, the Python API, and one-line errors."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from test_generate_support import (
    PROMPT_BUDGET,
    function_in,
    make_model,
    training_args,
    write_commits,
    write_generation,
    write_translation,
)

DIFF = (
    "diff --git a/lib/price.rb b/lib/price.rb\n"
    "index 1111111..2222222 100644\n"
    "--- a/lib/price.rb\n"
    "+++ b/lib/price.rb\n"
    "@@ -1,3 +1,3 @@ module Price\n"
    " x = 1\n"
    "-y = 2\n"
    "+y = 3\n"
    " z = 4\n"
)
PROBLEM = "Add 3 to n.\n\nInput\nOne integer n.\n\nOutput\nPrint n plus 3.\n"
NEW_TOKENS = ["--max-new-tokens", "24"]
PROMPT_HEAD = "Based on the change given, only write commit message.\n### Diff:\n"
PROMPT_TAIL = "\n### Commit Message:\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A workdir with finished lora runs (target ruby) for the three tasks and an advfusion
    translation run fused over java, python and ruby."""
    from conftest import run_cli

    root = tmp_path_factory.mktemp("generate")
    model = make_model(root / "model")
    workdir = root / "work"
    data = {
        "commit-message": write_commits(root / "commits"),
        "code-translation": write_translation(root / "trans"),
        "code-generation": write_generation(root / "gen"),
    }
    jobs = [(task, ["train-adapters", "--langs", "ruby", "--kind", "lora"]) for task in data]
    jobs.append(
        ("code-translation", ["adv-fuse", "--target", "ruby", "--langs", "java,python,ruby"])
    )
    for task, command in jobs:
        result = run_cli(*command, *training_args(model, data[task], task, workdir))
        assert result.exit_code == 0, result.stderr
    runs = {}
    for folder in (workdir / "runs").iterdir():
        spec = yaml.safe_load((folder / "job.yaml").read_text())
        runs[(spec["method"]["name"], spec["data"]["task"])] = folder
    return {"root": root, "model": model, "workdir": workdir, "runs": runs}


def lora(world, task: str) -> Path:
    return world["runs"][("lora", task)]


def gen(cli, world, *args: str):
    return cli("generate", "--workdir", str(world["workdir"]), *NEW_TOKENS, *args)


def pipe(monkeypatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-8"))))


def api_generator(world, task: str, run: str | None = None):
    from advfusion_cli.generate import Generator

    return Generator(run or str(lora(world, task)), task=task, workdir=world["workdir"])


def one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


# ---- each task, from standard input and from a file ------------------------------------------


def test_commit_message_from_stdin_and_from_a_file(cli, world, monkeypatch, tmp_path):
    expected = api_generator(world, "commit-message").generate(DIFF, max_new_tokens=24)
    assert len(expected) == 1 and "\n" not in expected[0]  # the subject line only
    pipe(monkeypatch, DIFF)
    piped = gen(cli, world, "--run", "lora/ruby", "--task", "commit-message")
    assert piped.exit_code == 0, piped.stderr
    assert piped.stdout == expected[0] + "\n"
    assert "loading run lora-ruby-" in piped.stderr
    patch = tmp_path / "change.diff"
    patch.write_text(DIFF)
    from_file = gen(cli, world, "--run", str(lora(world, "commit-message")), str(patch), "-q")
    assert (from_file.exit_code, from_file.stdout, from_file.stderr) == (0, piped.stdout, "")


def test_translation_from_a_file_and_from_stdin(cli, world, monkeypatch, tmp_path):
    from advfusion_cli.data.tasks.code_translation import render_prompt

    code = function_in("java", "addUp")
    source = tmp_path / "Main.java"
    source.write_text(code)
    run = ["--run", "lora/ruby", "--task", "code-translation"]
    by_file = gen(cli, world, *run, str(source), "--json")
    assert by_file.exit_code == 0, by_file.stderr
    (record,) = [json.loads(line) for line in by_file.stdout.splitlines()]
    assert record["prompt"] == render_prompt("java", code, "ruby")[0]  # --from from .java
    assert (record["id"], record["source_language"], record["language"]) == (
        str(source),
        "java",
        "ruby",
    )
    assert record["run"] == lora(world, "code-translation").name and record["method"] == "lora"
    pipe(monkeypatch, code)
    by_stdin = gen(cli, world, *run, "--from", "Java", "--to", "rb")
    assert by_stdin.exit_code == 0, by_stdin.stderr
    assert by_stdin.stdout == record["prediction"] + "\n"


def test_generation_samples_are_stable_under_a_seed(cli, world, monkeypatch, tmp_path):
    problem = tmp_path / "problem.md"
    problem.write_text(PROBLEM)
    sampled = ["--run", "lora/ruby", "--task", "code-generation", "-n", "3", "--temperature", "0.8"]
    first = gen(cli, world, *sampled, "--seed", "1", str(problem), "--json")
    again = gen(cli, world, *sampled, "--seed", "1", str(problem), "--json")
    other = gen(cli, world, *sampled, "--seed", "2", str(problem), "--json")
    assert first.exit_code == 0, first.stderr
    assert first.stdout == again.stdout and first.stdout != other.stdout
    records = [json.loads(line) for line in first.stdout.splitlines()]
    assert [r["sample"] for r in records] == [0, 1, 2]
    assert {r["id"] for r in records} == {str(problem)}
    assert records[0]["prompt"] == '"""\n' + PROBLEM.strip() + '\n"""\n'
    assert all(0 < r["new_tokens"] <= 24 and not r["truncated"] for r in records)

    pipe(monkeypatch, PROBLEM)
    plain = gen(cli, world, *sampled, "--seed", "1")
    from advfusion_cli.generate.cli import format_plain

    assert plain.stdout == format_plain([r["prediction"] for r in records])


def test_stdout_holds_only_the_generation_in_a_real_pipe(world):
    """A separate process: anything a library prints to stdout would show up here."""
    expected = api_generator(world, "commit-message").generate(DIFF, max_new_tokens=24)[0]
    command = [sys.executable, "-m", "advfusion_cli", "generate", "--run", "lora/ruby"]
    command += ["--task", "commit-message", "--workdir", str(world["workdir"]), *NEW_TOKENS]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run(command, input=DIFF.encode(), capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == expected + "\n"
    assert "loading run lora-ruby-" in done.stderr.decode()


# ---- long inputs, several inputs, other runs ---------------------------------------------------


def test_long_input_is_cut_as_in_training_with_a_warning(cli, world, monkeypatch):
    body = "".join(f"-old line {i}\n+new line {i}\n" for i in range(40))
    diff = f"--- a/big.rb\n+++ b/big.rb\n@@ -1,40 +1,40 @@\n{body}"
    pipe(monkeypatch, diff)
    result = gen(cli, world, "--run", "lora/ruby", "--task", "commit-message", "--json")
    assert result.exit_code == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["truncated"] and record["prompt_tokens"] == PROMPT_BUDGET
    assert len(record["prompt"]) == PROMPT_BUDGET  # one token per character
    assert record["prompt"].endswith(PROMPT_TAIL)  # the template survives, the diff's end goes
    template = len(PROMPT_HEAD) + len(PROMPT_TAIL)
    rewritten = diff.rstrip("\n").replace(" a/big.rb", " big.rb").replace(" b/big.rb", " big.rb")
    total, kept = len(rewritten), PROMPT_BUDGET - template  # characters of the diff, and left
    assert record["prompt"] == PROMPT_HEAD + rewritten[:kept] + PROMPT_TAIL
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warning == [
        f"warning: stdin: the diff was cut to fit the prompt budget of {PROMPT_BUDGET} tokens "
        f"(kept {PROMPT_BUDGET} of {template + total:,} prompt tokens; "
        f"{total - kept:,} of the {total:,} characters of the diff cut)."
    ]


def test_several_files_and_per_file_messages(cli, world, tmp_path):
    two = DIFF + DIFF.replace("price.rb", "cost.rb")
    patch = tmp_path / "two.patch"
    patch.write_text(two)
    run = ["--run", "lora/ruby", "--task", "commit-message", "--json"]
    combined = gen(cli, world, *run, str(patch))
    per_file = gen(cli, world, *run, "--per-file", str(patch), str(patch))
    assert combined.exit_code == 0 and per_file.exit_code == 0, per_file.stderr
    (one,) = [json.loads(line) for line in combined.stdout.splitlines()]
    assert one["prompt"].count("\n--- lib/") == 2
    records = [json.loads(line) for line in per_file.stdout.splitlines()]
    assert [r["id"] for r in records] == [f"{patch}:lib/price.rb", f"{patch}:lib/cost.rb"] * 2
    assert records[0]["prediction"] == records[2]["prediction"]  # batching changes nothing


def test_fusion_run_by_method_target_and_the_best_of_a_comparison(cli, world, tmp_path):
    source = tmp_path / "add.py"
    source.write_text(function_in("python", "add_up"))
    fusion = gen(cli, world, "--run", "advfusion/ruby", str(source), "--task", "code-translation")
    assert fusion.exit_code == 0, fusion.stderr
    run = world["runs"][("advfusion", "code-translation")]
    expected = api_generator(world, "code-translation", str(run)).generate(
        source.read_text(), source_language="python", max_new_tokens=24
    )
    assert fusion.stdout == expected[0] + "\n"

    compare = world["workdir"] / "compare" / "code-translation-ruby-0000"
    compare.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "method": "lora",
            "runs": [{"run_id": lora(world, "code-translation").name}],
            "metrics": {"bleu4_smooth_13a_corpus": {"mean": 1.0, "per_seed": [1.0]}},
        },
        {
            "method": "advfusion",
            "runs": [{"run_id": run.name}],
            "metrics": {"bleu4_smooth_13a_corpus": {"mean": 2.0, "per_seed": [2.0]}},
        },
    ]
    payload = {
        "created": "2026-01-01",
        "task": "code-translation",
        "target": "ruby",
        "table_metrics": ["bleu4_smooth_13a_corpus"],
        "rows": rows,
    }
    (compare / "results.json").write_text(json.dumps(payload))
    try:
        best = gen(cli, world, "--run", "best/ruby", str(source))
        by_folder = gen(cli, world, "--run", str(compare), str(source))
    finally:
        shutil.rmtree(compare.parent)
    assert best.exit_code == 0, best.stderr
    assert best.stdout == by_folder.stdout == fusion.stdout
    assert "best of comparison code-translation-ruby-0000: advfusion" in best.stderr


# ---- the Python API --------------------------------------------------------------------------


def test_one_call_api_loads_once_and_warns_when_it_cuts(world, monkeypatch):
    import advfusion_cli.inference.loading as loading
    from advfusion_cli.generate import PromptCutWarning, generate

    loads = []
    real = loading.load_run
    monkeypatch.setattr(loading, "load_run", lambda run: loads.append(run) or real(run))
    run = str(lora(world, "code-generation"))
    three = generate(
        run, "code-generation", PROBLEM, n=3, seed=4, max_new_tokens=16, workdir=world["workdir"]
    )
    again = generate(run, None, PROBLEM, n=3, seed=4, max_new_tokens=16, workdir=world["workdir"])
    assert len(three) == 3 and all(isinstance(t, str) for t in three)
    assert three == again and len(loads) == 1
    with pytest.warns(PromptCutWarning, match="problem statement was cut"):
        generate(run, None, "Add one. " * 100, max_new_tokens=8, workdir=world["workdir"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptCutWarning)  # a prompt that fits is not cut
        generate(run, None, PROBLEM, max_new_tokens=8, workdir=world["workdir"])
    assert len(loads) == 1


# ---- one-line errors, exit code 2 --------------------------------------------------------------


def _copy_run(world, tmp_path, edit) -> Path:
    """A copy of the commit-message lora run in its own workdir, changed by `edit(folder)`."""
    source = lora(world, "commit-message")
    folder = tmp_path / "w" / "runs" / source.name
    shutil.copytree(source, folder)
    edit(folder)
    return folder


def test_unfinished_run_and_missing_base_model(cli, world, tmp_path):
    running = _copy_run(
        world,
        tmp_path / "a",
        lambda f: (f / "status.json").write_text(json.dumps({"status": "running"})),
    )
    line = one_line_error(gen(cli, world, "--run", str(running), "-", "--task", "commit-message"))
    assert f"Run '{running.name}' is not finished (status: running)" in line

    def move_model(folder: Path) -> None:
        job = (folder / "job.yaml").read_text()
        (folder / "job.yaml").write_text(job.replace(str(world["model"]), "/nowhere/tiny-model"))

    moved = _copy_run(world, tmp_path / "b", move_model)
    (tmp_path / "diff").write_text(DIFF)
    line = one_line_error(gen(cli, world, "--run", str(moved), str(tmp_path / "diff"), "-q"))
    assert line == (
        f"error: Cannot load run '{moved.name}': Model folder '/nowhere/tiny-model' does not exist."
    )


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--run", "lora/ruby", "--task", "commit-message"], "", "error: Standard input is empty"),
        (
            ["--run", "lora/ruby", "--task", "commit-message"],
            "Fixed the bug.\n",
            "error: Standard input is not a unified diff",
        ),
        (
            ["--run", "lora/ruby", "--task", "code-translation", "--from", "jvaa"],
            "class A {}\n",
            "error: --from: Unknown language 'jvaa'. Did you mean 'java'?",
        ),
        (
            ["--run", "lora/ruby", "--task", "code-translation"],
            "class A {}\n",
            "error: Reading code from standard input: pass --from",
        ),
        (
            ["--run", "lora/ruby", "--task", "code-generation"],
            DIFF,
            "error: Standard input looks like a diff",
        ),
        (
            ["--run", "lora/ruby", "--task", "commit-mesage"],
            DIFF,
            "error: Unknown task 'commit-mesage'. Did you mean 'commit-message'?",
        ),
        (["--run", "lora/ruby"], DIFF, "error: 3 finished lora runs for 'ruby'"),
        (
            ["--run", "base", "--task", "commit-message"],
            DIFF,
            "error: 'base' is the frozen base model, not a trained run",
        ),
        (
            ["--run", "compacter/ruby", "--task", "commit-message"],
            DIFF,
            "error: No finished compacter run for 'ruby'",
        ),
        (
            ["--run", "lora/ruby", "--task", "commit-message", "-n", "0"],
            DIFF,
            "error: --n must be >= 1",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, world, monkeypatch, args, stdin, message):
    pipe(monkeypatch, stdin)
    assert one_line_error(gen(cli, world, *args)).startswith(message)


def test_task_mismatch_and_wrong_file_kind(cli, world, tmp_path):
    run = str(lora(world, "code-translation"))
    line = one_line_error(gen(cli, world, "--run", run, "--task", "commit-message", "-"))
    assert "was trained for code-translation, not commit-message" in line
    code = tmp_path / "solve.rb"
    code.write_text("puts 1\n")
    line = one_line_error(gen(cli, world, "--run", str(lora(world, "code-generation")), str(code)))
    assert "'" + str(code) + "' looks like Ruby source code" in line
    odd = tmp_path / "prog.xyz"
    odd.write_text("x\n")
    line = one_line_error(gen(cli, world, "--run", run, str(odd)))
    assert "Cannot tell the language of" in line and "pass --from" in line


def test_a_4bit_run_generates_with_its_quantized_base(cli, world, tmp_path):
    """Default tier at one step on two records: ~5 CPU seconds, most of it loading."""
    from conftest import run_cli

    from advfusion_cli.generate import Generator

    workdir = tmp_path / "w4"
    data = write_translation(tmp_path / "trans")
    args = training_args(world["model"], data, "code-translation", workdir)
    small = ["training.max_steps=1", "data.max_train_records=2", "data.max_eval_records=1"]
    args += [item for value in small for item in ("--set", value)]
    trained = run_cli(
        "train-adapters", "--langs", "ruby", "--kind", "lora", "--quantization", "4bit", *args
    )
    assert trained.exit_code == 0, trained.stderr
    source = tmp_path / "Main.java"
    source.write_text(function_in("java", "addUp"))
    result = cli(
        "generate", "--workdir", str(workdir), "--run", "lora/ruby", str(source), *NEW_TOKENS
    )
    assert result.exit_code == 0, result.stderr
    assert "(base " + str(world["model"]) + ", 4bit)" in result.stderr
    generator = Generator("lora/ruby", workdir=workdir)
    layers = {type(m).__name__ for m in generator.loaded.model.modules()}
    assert "Linear4bit" in layers
    expected = generator.generate(source.read_text(), source_language="java", max_new_tokens=24)
    assert result.stdout == expected[0] + "\n"
