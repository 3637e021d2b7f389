"""MultiPL-E's protocol pieces, without a model: stop-token cutting, pass@k against exact
enumeration of the k-subsets, the default decoding and its notes, the data sources (folder,
JSONL, hub at the pinned revision), execution (each distinct program once, resumable), the
completion files and the one-line errors (training on MultiPL-E, bad flags, a missing
toolchain)."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pytest

from advfusion_cli.errors import UserError
from advfusion_cli.evaluate import multiple, multiple_data, multiple_execution
from advfusion_cli.evaluate.multiple import (
    ExactStopRule,
    protocol_decoding,
    protocol_notes,
    read_completion_files,
    stop_rule,
)
from advfusion_cli.evaluate.multiple_data import DEFAULT_REVISION, load_problems
from advfusion_cli.inference.generation import StopRule

FIXTURES = Path(__file__).parent / "fixtures" / "multipl_e"
LUA_STOPS = ("\nlocal", "\nfunction", "\n--", "\n\n")


# ------------------------------------------------------------------------ stop tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("    return x + y\nend\n\nlocal function f()", "    return x + y\nend"),
        ("    return 1\nend\n-- done\nfunction g()", "    return 1\nend"),  # earliest wins
        ("    return 1\nend\n", "    return 1\nend\n"),  # no stop: kept as is, newline too
        ("\nlocal x = 1", ""),  # a stop at the very start leaves nothing
        ("    return 1\nendlocal", "    return 1\nendlocal"),  # '\nlocal' needs its newline
    ],
)
def test_completions_are_cut_exactly_at_the_rows_stop_tokens(text, expected):
    assert stop_rule(LUA_STOPS).apply(text) == expected


def test_the_task_rule_would_have_dropped_the_final_newline():
    # Why the benchmark has its own rule: the task rule strips a trained-in final newline.
    text = "    return 1\nend\n"
    assert StopRule(LUA_STOPS).apply(text) != ExactStopRule(LUA_STOPS).apply(text)


# --------------------------------------------------------------------------- pass@k


def enumerated_pass_at_k(outcomes: list[bool], k: int) -> float:
    """The share of k-subsets of the samples that hold at least one pass."""
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


def fake_results(passes: list[list[bool]]) -> dict[str, dict]:
    """program -> result, for programs 'p<i>-<j>' passing as given."""
    results = {}
    for i, row in enumerate(passes):
        for j, ok in enumerate(row):
            status = "OK" if ok else "Exception"
            results[f"p{i}-{j}"] = {"status": status, "exit_code": 0 if ok else 1}
    return results


def test_benchmark_pass_at_k_equals_exact_enumeration(monkeypatch, tmp_path):
    passes = [
        [True, False, False, True, False, False, False, False, False, False, False, True],
        [False] * 12,
        [True] * 12,
        [False, True, False, False, False, False, False, False, False, False, False, False],
    ]
    results = fake_results(passes)
    monkeypatch.setattr(
        multiple_execution,
        "_run_one",
        lambda language, program: {
            "program": program,
            "stdout": "",
            "stderr": "",
            **results[program.split("\n")[0]],
        },
    )
    problems = [multiple_data.Problem(f"P{i}", "lua", "", "", ()) for i in range(len(passes))]
    completions = [[f"p{i}-{j}" for j in range(12)] for i in range(len(passes))]
    row = multiple.resolve_multiple_language("lua")
    monkeypatch.setattr(multiple, "check_executable", lambda row: None)
    summary, per_problem, _ = multiple._execute_and_score(
        row, problems, completions, tmp_path, True, 1
    )
    assert summary["ks"] == [1, 10]  # 100 > n is left out
    for k in (1, 10):
        expected = sum(enumerated_pass_at_k(p, k) for p in passes) / len(passes)
        assert summary["scores"][f"pass@{k}"] == pytest.approx(expected, abs=1e-12)
    assert summary["per_problem"]["P0"]["passed"] == 3
    assert [r["status"] for r in per_problem[2]] == ["OK"] * 12


# --------------------------------------------------------------------- execution


def test_identical_programs_run_once_and_a_killed_run_resumes(monkeypatch, tmp_path):
    calls = []

    def fake_run(language, program):
        calls.append(program)
        return {"program": program, "status": "OK", "exit_code": 0, "stdout": "", "stderr": ""}

    monkeypatch.setattr(multiple_execution, "_run_one", fake_run)
    journal = multiple_execution.ExecutionJournal(tmp_path)
    programs = ["a", "b", "a", "c", "b"]
    results, runs = multiple_execution.execute_programs("lua", programs, journal, workers=1)
    assert runs == 3 and sorted(calls) == ["a", "b", "c"]
    assert [r["program"] for r in results] == programs
    # A kill mid-write leaves a torn line: reading back keeps the whole ones.
    path = tmp_path / multiple_execution.EXECUTIONS_FILE
    path.write_bytes(path.read_bytes() + b'{"key": "torn')
    calls.clear()
    again = multiple_execution.ExecutionJournal(tmp_path)
    assert again.resumed == 3
    _, runs = multiple_execution.execute_programs("lua", [*programs, "d"], again, workers=1)
    assert runs == 1 and calls == ["d"]


# ------------------------------------------------------------------------- protocol


def test_protocol_defaults_and_overrides():
    default = protocol_decoding({"n": None, "temperature": None, "top_p": None})
    assert (default.n, default.temperature, default.top_p) == (20, 0.2, 0.95)
    assert default.max_new_tokens == 512
    given = protocol_decoding({"n": 2, "temperature": 0.8, "top_p": None, "max_new_tokens": 64})
    assert (given.n, given.temperature, given.top_p, given.max_new_tokens) == (2, 0.8, 0.95, 64)
    assert protocol_notes(default.to_dict(), [1, 10]) == [
        "pass@10/100 are conventionally reported at temperature 0.8; this used 0.2"
    ]
    notes = protocol_notes(given.to_dict(), [1])
    assert any("pass@1 is conventionally reported at temperature 0.2" in n for n in notes)
    assert any("n = 2" in n for n in notes)


# ----------------------------------------------------------------------------- data


def test_a_folder_gives_the_datasets_file_in_order_and_limit_takes_the_first(tmp_path):
    loaded = load_problems(str(FIXTURES), "humaneval", "lua", 2)
    assert [p.name for p in loaded.problems] == ["Fixture_0_add", "Fixture_1_is_even"]
    assert loaded.source["problems_total"] == 3 and loaded.source["kind"] == "path"
    problem = loaded.problems[0]
    assert problem.stop_tokens == LUA_STOPS
    assert problem.program("X") == problem.prompt + "X\n" + problem.tests
    # The same file given directly is the same problems.
    direct = load_problems(str(FIXTURES / "humaneval-lua.jsonl"), "humaneval", "lua", 2)
    assert direct.source["problems_sha256"] == loaded.source["problems_sha256"]


def test_bad_data_sources_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="has no mbpp-lua.jsonl .has: humaneval-lua.jsonl"):
        load_problems(str(FIXTURES), "mbpp", "lua", None)
    with pytest.raises(UserError, match="is in language 'rkt', not lua"):
        load_problems(str(FIXTURES / "humaneval-rkt.jsonl"), "humaneval", "lua", None)
    bad = tmp_path / "humaneval-lua.jsonl"
    bad.write_text('{"name": "x", "prompt": "p"}\n')
    with pytest.raises(UserError, match=r"humaneval-lua.jsonl:1: not a MultiPL-E row"):
        load_problems(str(tmp_path), "humaneval", "lua", None)
    with pytest.raises(UserError, match="--dataset must be one of humaneval, mbpp"):
        load_problems(str(FIXTURES), "apps", "lua", None)


def test_the_hub_is_read_through_datasets_at_the_pinned_revision(monkeypatch):
    import datasets

    asked = {}

    def fake_load(path, revision, split, name=None, data_dir=None):
        asked.update(path=path, name=name, revision=revision, split=split, data_dir=data_dir)
        if name is not None and revision == "export":  # a Parquet export: no named configs
            raise ValueError(f"BuilderConfig '{name}' not found")
        return [json.loads(line) for line in (FIXTURES / "humaneval-lua.jsonl").open()]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    loaded = load_problems(None, "humaneval", "lua", None)
    assert asked == {
        "path": "nuprl/MultiPL-E",
        "name": "humaneval-lua",
        "revision": DEFAULT_REVISION,
        "split": "test",
        "data_dir": None,
    }
    assert loaded.source["revision"] == DEFAULT_REVISION and len(loaded.problems) == 3
    load_problems("hub:nuprl/MultiPL-E@abc123", "mbpp", "lua", None)
    assert asked["revision"] == "abc123" and asked["name"] == "mbpp-lua"
    export = load_problems("hub:nuprl/MultiPL-E@export", "humaneval", "lua", None)
    assert asked["data_dir"] == "humaneval-lua" and export.source["read_by"] == "data_dir"

    def offline(*args, **kwargs):
        raise ConnectionError("no network\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError) as err:
        load_problems(None, "humaneval", "rkt", None)
    assert "\n" not in str(err.value) and "--data PATH" in str(err.value)


def test_multiple_e_is_refused_as_training_data(cli, tmp_path):
    from advfusion_cli.data import load_task

    for source in (str(FIXTURES), str(FIXTURES / "humaneval-lua.jsonl"), "hub:nuprl/MultiPL-E"):
        with pytest.raises(UserError, match="MultiPL-E benchmark data, which is for evaluation"):
            load_task("code-generation", source, ["lua"], "train")
    result = cli(
        "train-adapters",
        "--data",
        str(FIXTURES),
        "--workdir",
        str(tmp_path / "wd"),
        "--langs",
        "ruby",
    )
    assert result.exit_code != 0
    assert "is MultiPL-E benchmark data" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "wd").exists() or not any((tmp_path / "wd").rglob("adapter*"))


# ------------------------------------------------------------------ completion files


def write_completion(folder: Path, name: str, language: str, completions: list[str]) -> None:
    row = {
        "name": name,
        "language": language,
        "prompt": "p",
        "tests": "t",
        "stop_tokens": [],
        "completions": completions,
    }
    (folder / f"{name}.json.gz").write_bytes(gzip.compress(json.dumps(row).encode()))


def test_completion_files_are_read_and_other_json_ignored(tmp_path):
    write_completion(tmp_path, "A", "lua", ["x"])
    (tmp_path / "B.json").write_text(
        json.dumps(
            {
                "name": "B",
                "language": "lua",
                "prompt": "p",
                "tests": "t",
                "stop_tokens": [],
                "completions": ["y", "z"],
            }
        )
    )
    (tmp_path / "A.results.json.gz").write_bytes(gzip.compress(b"{}"))
    (tmp_path / "metrics.json").write_text("{}")
    row, entries = read_completion_files(tmp_path, None)
    assert row.ext == "lua"
    assert [(p.name, c) for p, c in entries] == [("A", ["x"]), ("B", ["y", "z"])]
    write_completion(tmp_path, "C", "racket", ["w"])
    with pytest.raises(UserError, match="mixes languages .lua, rkt.; pick one with --lang"):
        read_completion_files(tmp_path, None)
    assert [p.name for p, _ in read_completion_files(tmp_path, "rkt")[1]] == ["C"]


# ------------------------------------------------------------------------ CLI errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--benchmark", "humaneval-x", "--run", "base", "--lang", "lua"],
            "--benchmark must be one of multipl-e, got 'humaneval-x'",
        ),
        (["--lang", "lua", "--run", "base"], "--lang needs --benchmark multipl-e"),
        (["--benchmark", "multipl-e", "--completions", "x"], "--completions needs --out"),
        (
            ["--benchmark", "multipl-e", "--completions", "x", "--run", "base", "--out", "o"],
            "it takes no --run",
        ),
        (["--benchmark", "multipl-e", "--run", "base"], "needs --lang"),
        (["--benchmark", "multipl-e"], "needs --run R|base, or --completions DIR"),
        (
            ["--benchmark", "multipl-e", "--run", "base", "--lang", "cobol"],
            "Unknown MultiPL-E language 'cobol'",
        ),
    ],
)
def test_bad_benchmark_flags_are_one_line_errors(cli, args, message):
    result = cli("evaluate", *args)
    assert result.exit_code == 2, result
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_missing_toolchain_fails_before_generation_with_what_to_install(
    cli, monkeypatch, tmp_path
):
    from advfusion_cli.sandbox import multiple_runner

    monkeypatch.setattr(multiple_runner, "find_multiple_toolchain", lambda ext: None)
    result = cli(
        "evaluate",
        "--run",
        "base",
        "--benchmark",
        "multipl-e",
        "--lang",
        "jl",
        "--data",
        str(FIXTURES),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 2
    assert "Julia has no Debian package" in result.stderr and "--no-execute" in result.stderr
    assert not (tmp_path / "out").exists()
    result = cli(
        "evaluate",
        "--run",
        "base",
        "--benchmark",
        "multipl-e",
        "--lang",
        "lua",
        "--data",
        str(FIXTURES),
        "--out",
        str(tmp_path / "out"),
    )
    assert "apt-get install -y lua5.3 lua-unit" in result.stderr


class FakeFinder:
    """Stands in for the cached toolchain lookup: found or not, as `installed()` says."""

    def __init__(self, installed):
        self.installed = installed

    def __call__(self, ext):
        return object() if self.installed() else None

    def cache_clear(self):
        pass


def test_sandbox_install_says_what_it_would_run_when_not_root(cli, monkeypatch):
    from advfusion_cli.sandbox import install, multiple_runner

    monkeypatch.setattr(multiple_runner, "find_multiple_toolchain", FakeFinder(lambda: False))
    monkeypatch.setattr(install, "_is_root", lambda: False)
    monkeypatch.setattr(install, "_apt", lambda args: pytest.fail("apt-get must not run"))
    result = cli("sandbox", "install", "lua", "racket", "jl")
    assert result.exit_code == 1
    assert "sudo apt-get install -y --no-install-recommends lua5.3 lua-unit racket" in result.stdout
    assert "Julia has no Debian package" in result.stdout
    assert cli("sandbox", "install", "cobol").exit_code == 2


def test_sandbox_install_runs_apt_once_as_root(cli, monkeypatch):
    from advfusion_cli.sandbox import install, multiple_runner

    state = {"installed": False}
    calls = []
    monkeypatch.setattr(
        multiple_runner, "find_multiple_toolchain", FakeFinder(lambda: state["installed"])
    )
    monkeypatch.setattr(install, "_is_root", lambda: True)
    monkeypatch.setattr(install.shutil, "which", lambda name: "/usr/bin/" + name)

    def fake_apt(args):
        calls.append(args)
        state["installed"] = args[0] == "install" or state["installed"]
        return 0

    monkeypatch.setattr(install, "_apt", fake_apt)
    result = cli("sandbox", "install", "ml", "pl")
    assert result.exit_code == 0, result
    assert calls == [
        ["update", "-qq"],
        [
            "install",
            "-y",
            "--no-install-recommends",
            "ocaml-nox",
            "perl",
            "libtest-deep-perl",
            "-qq",
        ],
    ]
    assert "OCaml (ml): installed" in result.stdout


def test_bench_sandbox_measures_both_paths_on_the_same_programs(cli, tmp_path):
    result = cli(
        "bench", "sandbox", "--langs", "sh", "--programs", "2", "--workers", "1",
        "--json", str(tmp_path / "bench.json"),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    row = json.loads((tmp_path / "bench.json").read_text())["sandbox"][0]
    assert row["language"] == "sh" and row["passed"] == {"plain": 2, "sandbox": 2}
    assert row["ratio"] == pytest.approx(row["sandbox_per_s"] / row["plain_per_s"], rel=0.02)
    assert "sandbox prog/s" in result.stdout
    bad = cli("bench", "sandbox", "--langs", "swift")
    assert bad.exit_code == 2 and "no bench program for swift" in bad.stderr
