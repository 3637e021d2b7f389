"""`evaluate` and `compare` on two CPU processes (gloo, torchrun) with the embedded model.

Two processes split the items and write exactly what one process writes: the same
predictions.jsonl byte for byte, greedy and sampled (n = 3, temperature 0.8, per-candidate
seeds), the same metrics.json apart from timings and provenance, `compare` the same table,
and MultiPL-E (Lua, where installed) the same predictions and results files. A launch whose second process is killed after its first batch leaves both journals;
one process then resumes it and ends equal to the uninterrupted run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import run_cli, torchrun_two

from advfusion_cli.sandbox.programs import executable_languages

WORKER = Path(__file__).resolve().parent / "eval_processes_worker.py"
# code generation in python: the candidates also run in the sandbox (pass@k)
EVALUATE = ["evaluate", "--run", "base", "--task", "code-generation", "--target", "python"]
SMALL = ["--limit", "8", "--batch-size", "2", "--max-new-tokens", "12"]  # 4 batches
SAMPLED = ["--n", "3", "--temperature", "0.8", "--seed", "5"]
COMPARE = [
    "compare", "--methods", "base,base-1shot", "--task", "code-generation", "--target",
    "python", *SMALL, "--resamples", "200",
]  # fmt: skip
# MultiPL-E in Lua (its own items, stop tokens and verdicts) over the three fixture problems
BENCHMARK = [
    "evaluate", "--run", "base", "--benchmark", "multipl-e", "--lang", "lua", "--data",
    str(Path(__file__).resolve().parent / "fixtures" / "multipl_e"), "--n", "2",
    "--max-new-tokens", "12", "--batch-size", "1",
]  # fmt: skip
# what may differ between two runs of the same evaluation
RUN_FIELDS = ("timings", "provenance", "generation")


def lua_runs() -> bool:
    from advfusion_cli.sandbox.multiple_runner import find_multiple_toolchain

    return find_multiple_toolchain("lua") is not None


pytestmark = pytest.mark.skipif(
    not executable_languages()["python"], reason="the sandbox cannot run python here"
)


def launch(mode: str, commands: list[list[str]], folder: Path, timeout: int = 600):
    """torchrun with two CPU processes (a free rendezvous port per launch); a launch that
    outlives `timeout` (a hang) is killed with every process it started."""
    script = folder / f"{mode}-commands.json"
    script.write_text(json.dumps(commands))
    return torchrun_two(WORKER, [mode, str(script)], mode, timeout)


def one_process(*args: str):
    """The reference: one process, one thread (as each torchrun process has)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_cli(*args)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("one-process")
    work = ["--workdir", str(root / "work")]
    one_process(*EVALUATE, *SMALL, *work, "--out", str(root / "greedy"))
    one_process(*EVALUATE, *SMALL, *SAMPLED, *work, "--out", str(root / "sampled"))
    one_process(*COMPARE, *work, "--out", str(root / "compare"))
    if lua_runs():
        one_process(*BENCHMARK, *work, "--out", str(root / "multipl-e"))
    return root


@pytest.fixture(scope="module")
def double(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("two-processes")
    work = ["--workdir", str(root / "work")]
    commands = [
        [*EVALUATE, *SMALL, *work, "--out", str(root / "greedy")],
        [*EVALUATE, *SMALL, *SAMPLED, *work, "--out", str(root / "sampled")],
        [*COMPARE, *work, "--out", str(root / "compare")],
    ]
    if lua_runs():
        commands.append([*BENCHMARK, *work, "--out", str(root / "multipl-e")])
    done = launch("run", commands, root)
    assert done.returncode == 0, done.stderr[-4000:]
    return root, done


def generated_by(root: Path, folder: Path, rank: int) -> list[str]:
    """The item ids process `rank` generated for the evaluation in `folder` (worker's log)."""
    log = root / f"generated-rank{rank}.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [i for e in entries if e["folder"] == str(folder) for i in e["ids"]]


def metrics(folder: Path) -> dict:
    record = json.loads((folder / "metrics.json").read_text())
    return {key: value for key, value in record.items() if key not in RUN_FIELDS}


@pytest.mark.parametrize("decoding", ["greedy", "sampled"])
def test_two_processes_write_what_one_process_writes(single, double, decoding):
    root, done = double
    one, two = single / decoding, root / decoding
    assert (two / "predictions.jsonl").read_bytes() == (one / "predictions.jsonl").read_bytes()
    assert metrics(two) == metrics(one)
    record = json.loads((two / "metrics.json").read_text())
    assert record["generation"]["processes"] == 2
    assert record["execution"]["ran"] and record["n_items"] == 8
    assert not list(two.glob("generations.partial*"))  # every journal removed at the end
    # The items were split: batches 0 and 3 (longest first) on one process, 1 and 2 on the
    # other, every item generated exactly once.
    first, second = generated_by(root, two, 0), generated_by(root, two, 1)
    assert len(first) == len(second) == 4 and not set(first) & set(second)
    ids = [json.loads(line)["id"] for line in (two / "predictions.jsonl").read_text().splitlines()]
    assert sorted(first + second) == sorted(ids)
    if decoding == "sampled":
        rows = [json.loads(line) for line in (two / "predictions.jsonl").read_text().splitlines()]
        assert all(len(row["predictions"]) == 3 for row in rows)
        assert any(len(set(row["predictions"])) > 1 for row in rows)  # really sampled
    assert done.stdout.count("files: ") == 2  # one table per evaluation: the main process's
    assert "2 processes" in done.stderr and "tok/s" in done.stderr  # the live line, once


def test_compare_on_two_processes_gives_the_same_table(single, double):
    root, done = double
    one, two = single / "compare", root / "compare"
    assert (two / "results.csv").read_bytes() == (one / "results.csv").read_bytes()
    assert (two / "results.md").read_text() == (one / "results.md").read_text()
    rows = json.loads((two / "results.json").read_text())["rows"]
    assert [row["method"] for row in rows] == ["base", "base-1shot"]
    assert done.stdout.count("Results in ") == 1


def test_multipl_e_on_two_processes_gives_what_one_gives(single, double):
    if not lua_runs():
        pytest.skip("Lua is not installed (.ci/run installs it)")
    root, _ = double
    one, two = single / "multipl-e", root / "multipl-e"
    assert (two / "predictions.jsonl").read_bytes() == (one / "predictions.jsonl").read_bytes()
    assert metrics(two) == metrics(one)
    names = sorted(path.name for path in one.glob("*.results.json.gz"))
    assert len(names) == 3 and names == sorted(p.name for p in two.glob("*.results.json.gz"))
    for name in names:
        assert gunzip_json(two / name) == gunzip_json(one / name)
    first, second = generated_by(root, two, 0), generated_by(root, two, 1)
    assert len(first) == 1 and len(second) == 2 and not set(first) & set(second)


def gunzip_json(path: Path):
    import gzip

    return json.loads(gzip.decompress(path.read_bytes()))


def test_a_killed_launch_resumes_on_one_process_and_ends_equal(single, tmp_path):
    out = tmp_path / "sampled"
    command = [*EVALUATE, *SMALL, *SAMPLED, "--workdir", str(tmp_path / "w"), "--out", str(out)]
    killed = launch("kill", [command], tmp_path)
    assert killed.returncode != 0
    assert not (out / "metrics.json").exists()
    second = out / "generations.partial.rank1.jsonl"
    lines = second.read_text().splitlines()
    assert len(lines) == 1 + 2  # header + the one batch process 1 finished before it died
    ids = [json.loads(line)["id"] for line in lines[1:]]
    assert ids == generated_by(tmp_path, out, 1)
    assert not set(ids) & set(generated_by(tmp_path, out, 0))  # its own share only

    resumed = one_process(*command)
    record = json.loads((out / "metrics.json").read_text())
    assert record["generation"]["resumed_items"] >= 2
    assert "processes" not in record["generation"]
    reference = single / "sampled"
    assert (out / "predictions.jsonl").read_bytes() == (
        reference / "predictions.jsonl"
    ).read_bytes()
    assert metrics(out) == metrics(reference)
    assert not list(out.glob("generations.partial*"))
    assert "files: " in resumed.stdout
