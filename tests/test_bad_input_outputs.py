"""Bad output paths and hand-damaged run files: one `error:` line, exit code 2, nothing modified.

The promise of docs/reliability.md section 1 for `inspect --out`, `evaluate --out`,
`compare --out/--workdir/--split/--vary`, `bench --json` and damaged summary.json,
metrics.json, results.json, job.yaml and status.json. Output paths are refused before any
generation or training, so the error line is the only thing on stderr.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import one_line_error, snapshot
from test_workflow_cli import common, make_tokenizer, write_commits


@dataclass
class World:
    root: Path
    model: Path
    data: Path
    trained: Path  # java + ruby task adapters and an advfusion run for ruby

    def args(self, workdir: Path, *command: str) -> list[str]:
        return common((self.model, self.data), workdir, 2, *command)

    def run(self, method: str) -> Path:
        (folder,) = (self.trained / "runs").glob(f"{method}-*")
        return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> World:
    from conftest import run_cli

    root = tmp_path_factory.mktemp("bad-outputs")
    model = root / "model"
    shutil.copytree(tiny_model_dir("llama"), model)
    make_tokenizer(model)
    write_commits(root / "commits")
    world = World(root, model, root / "commits", root / "trained")
    done = run_cli(*world.args(world.trained, "train-adapters", "--langs", "java,ruby"))
    assert done.exit_code == 0, done.stderr
    done = run_cli(
        *world.args(world.trained, "adv-fuse", "--target", "ruby", "--langs", "java,ruby")
    )
    assert done.exit_code == 0, done.stderr
    return world


@pytest.fixture
def case(world, tmp_path, monkeypatch):
    """A case folder (the current directory) with a regular file, a folder and a copy of the
    trained workdir; checks afterwards that nothing in it or in the shared workdir changed."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_bytes(b"keep me\n")
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir.png").write_bytes(b"not an image, keep me\n")
    (tmp_path / "x.png").write_bytes(b"an image of mine\n")
    work = tmp_path / "work"
    shutil.copytree(world.trained, work)
    state = {"work": work, "tmp": tmp_path}
    yield state
    before = state["before"]
    after = snapshot(tmp_path, world.trained)
    assert after == before
    assert not (tmp_path / "adir").exists() or not any((tmp_path / "adir").iterdir())


def freeze(state, world) -> None:
    state["before"] = snapshot(state["tmp"], world.trained)


# ---- inspect --out ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("out", "names"),
    [
        ("afile/x.png", ("--out", "afile")),
        ("h.txt", ("--out", "h.txt", "txt")),
        ("/proc/nope.png", ("--out", "/proc/nope.png")),
        ("adir", ("--out", "adir", "folder")),
        ("x.png", ("--out", "x.png", "--overwrite")),
    ],
)
def test_inspect_out_refused_up_front(cli, world, case, out, names):
    freeze(case, world)
    result = cli("inspect", "advfusion/ruby", "--workdir", str(case["work"]), "--out", out)
    one_line_error(result, *names)


# ---- evaluate --out, workdirs, compare ------------------------------------------------------


EVAL = ("evaluate", "--run", "task-adapter/ruby", "--limit", "2", "--max-new-tokens", "4")


@pytest.mark.parametrize(
    ("out", "names"),
    [
        ("afile", ("--out", "afile")),
        ("afile/sub", ("--out", "afile/sub")),
        ("/proc/x", ("--out", "/proc/x")),
        ("", ("--out",)),
    ],
)
def test_evaluate_out_refused_before_generation(cli, world, case, out, names):
    freeze(case, world)
    result = cli(*EVAL, "--workdir", str(case["work"]), "--out", out)
    one_line_error(result, *names)


def test_evaluate_base_workdir_is_a_file(cli, world, case):
    freeze(case, world)
    result = cli(
        *world.args(Path("afile"), "evaluate", "--run", "base", "--target", "ruby"),
        "--limit",
        "2",
        "--max-new-tokens",
        "4",
    )
    one_line_error(result, "afile", "not writable")


COMPARE = ("compare", "--methods", "base", "--target", "ruby", "--limit", "2")


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        (("--out", "afile"), ("--out", "afile")),
        (("--split", "foo"), ("split", "foo")),
        (("--vary", "data.split_seed=0,1"), ("--vary", "data.split_seed")),
    ],
)
def test_compare_refused_up_front(cli, world, case, extra, names):
    freeze(case, world)
    result = cli(*world.args(case["tmp"] / "W3", *COMPARE), "--max-new-tokens", "4", *extra)
    one_line_error(result, *names)
    assert not (case["tmp"] / "W3").exists()


def test_compare_workdir_is_a_file(cli, world, case):
    freeze(case, world)
    result = cli(*world.args(Path("afile"), *COMPARE), "--max-new-tokens", "4")
    one_line_error(result, "afile", "not writable")


# ---- damaged run files ----------------------------------------------------------------------


@pytest.mark.parametrize("summary", ["[]", "null", '{"phases": "x"}', "{"])
def test_inspect_damaged_summary(cli, world, case, summary):
    (run,) = (case["work"] / "runs").glob("task-adapter-ruby-*")
    (run / "summary.json").write_text(summary)
    freeze(case, world)
    result = cli("inspect", str(run))
    one_line_error(result, "summary.json", "not a valid summary")


@pytest.mark.parametrize("metrics", ["[]", '{"scores": "x"}'])
def test_inspect_damaged_metrics(cli, world, case, metrics):
    (run,) = (case["work"] / "runs").glob("task-adapter-ruby-*")
    (run / "evals" / "test-2-greedy").mkdir(parents=True)
    (run / "evals" / "test-2-greedy" / "metrics.json").write_text(metrics)
    freeze(case, world)
    result = cli("inspect", str(run))
    one_line_error(result, "metrics.json")


@pytest.mark.parametrize("results", ["[]", "{", '{"rows": [1]}'])
def test_generate_best_damaged_results(cli, world, case, results):
    folder = case["work"] / "compare" / "commit-message-ruby-00000000"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(results)
    (case["tmp"] / "change.diff").write_text("diff --git a/x.rb b/x.rb\n+puts 1\n")
    freeze(case, world)
    result = cli("generate", "--run", "best", "--workdir", str(case["work"]), "change.diff")
    one_line_error(result, "results.json")


@pytest.mark.parametrize(("name", "text"), [("status.json", "{"), ("job.yaml", "a: [")])
def test_method_target_names_the_damaged_run_file(cli, world, case, name, text):
    (run,) = (case["work"] / "runs").glob("task-adapter-ruby-*")
    (run / name).write_text(text)
    freeze(case, world)
    result = cli(*EVAL, "--workdir", str(case["work"]))
    one_line_error(result, str(run / name))


# ---- bench ----------------------------------------------------------------------------------


TINY_BENCH = (
    "bench",
    "--hidden",
    "32",
    "--layers",
    "1",
    "--heads",
    "2",
    "--intermediate",
    "64",
    "--vocab",
    "64",
    "--batch",
    "1",
    "--seq",
    "8",
    "--n-adapters",
    "2",
    "--steps",
    "1",
    "--warmup",
    "0",
    "--rounds",
    "1",
    "--query-rank",
    "0",
    "--no-generation",
    "--no-memory",
    "--device",
    "cpu",
)


def test_bench_json_folder_refused_before_the_benchmark(cli, world, case):
    freeze(case, world)
    result = cli(*TINY_BENCH, "--json", "adir")
    one_line_error(result, "--json", "adir")


def test_bench_out_of_memory_is_one_error_line(cli, world, case):
    freeze(case, world)
    result = cli("bench", "--hidden", "1280000", "--no-generation", "--device", "cpu")
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "--hidden" in last and "smaller" in last
