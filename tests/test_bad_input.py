"""The bad-input catalogue: every way a user can get a command wrong, as one table.

Each row runs the real CLI entry point and must end in exactly one stderr line starting
`error:` that names the key, file or value, exit code 2, no traceback, and no change to any
file the user had (models, data, specs, workdirs: paths and bytes before == after).
"""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import one_line_error, snapshot
from test_workflow_cli import common, make_tokenizer, write_commits

FIXTURES = Path(__file__).parent / "fixtures" / "data"

Prepare = Callable[["World", Path, ExitStack], list[str]]


@dataclass
class World:
    """Everything a case may point at: a tiny model, data, and a workdir with trained adapters."""

    root: Path
    model: Path
    data: Path
    trained: Path  # a workdir holding finished java and ruby task adapters

    def args(self, workdir: Path, steps: int, *command: str) -> list[str]:
        return common((self.model, self.data), workdir, steps, *command)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> World:
    from conftest import run_cli

    root = tmp_path_factory.mktemp("bad-input")
    model = root / "model"
    shutil.copytree(tiny_model_dir("llama"), model)
    make_tokenizer(model)
    write_commits(root / "commits")
    world = World(root, model, root / "commits", root / "trained")
    done = run_cli(*world.args(world.trained, 2, "train-adapters", "--langs", "java,ruby"))
    assert done.exit_code == 0, done.stderr
    return world


def copy_trained(world: World, tmp: Path) -> Path:
    workdir = tmp / "work"
    shutil.copytree(world.trained, workdir)
    return workdir


def stored_adapter(workdir: Path, language: str) -> Path:
    (folder,) = (workdir / "adapters").glob(f"*/commit-message/task-adapter/{language}")
    return folder


# ---- the ways to prepare a case ---------------------------------------------------------------


def spec_file(text: str) -> Prepare:
    def prepare(world: World, tmp: Path, stack: ExitStack) -> list[str]:
        (tmp / "job.yaml").write_text(text)
        return ["validate", str(tmp / "job.yaml")]

    return prepare


def argv(*args: str) -> Prepare:
    return lambda world, tmp, stack: list(args)


def train(*more: str) -> Prepare:
    """train-adapters on ruby with the tiny model and data, plus `more`."""

    def prepare(world: World, tmp: Path, stack: ExitStack) -> list[str]:
        return [*world.args(tmp / "work", 2, "train-adapters", "--langs", "ruby"), *more]

    return prepare


def with_model(make: Callable[[Path], None]) -> Prepare:
    def prepare(world: World, tmp: Path, stack: ExitStack) -> list[str]:
        make(tmp / "model")
        return train("--model", str(tmp / "model"))(world, tmp, stack)

    return prepare


def unsupported_gpt2(folder: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "gpt2", n_embd=32, n_layer=2, n_head=4, vocab_size=128, n_positions=128,
        bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    make_tokenizer(folder)


def not_a_causal_lm(folder: Path) -> None:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 32}))


def fuse_trained(edit: Callable[[Path], None] = lambda workdir: None) -> Prepare:
    """fuse over the trained java and ruby adapters (never training missing ones)."""

    def prepare(world: World, tmp: Path, stack: ExitStack) -> list[str]:
        workdir = copy_trained(world, tmp)
        edit(workdir)
        command = ("fuse", "--target", "ruby", "--langs", "java,ruby", "--no-train-missing")
        return world.args(workdir, 2, *command)

    return prepare


def truncate_java(workdir: Path) -> None:
    weights = stored_adapter(workdir, "java") / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def garble_java(workdir: Path) -> None:
    weights = stored_adapter(workdir, "java") / "adapter.safetensors"
    weights.write_bytes(b"\x00garbage, not a safetensors file" * 8)


def java_from_another_base(workdir: Path) -> None:
    """The stored java adapter's fingerprint says it was trained on a Qwen2 base."""
    config_path = stored_adapter(workdir, "java") / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base"] = {**config["base"], "model_type": "qwen2", "name_or_path": "other-base"}
    config_path.write_text(json.dumps(config))


def locked_run(world: World, tmp: Path, stack: ExitStack) -> list[str]:
    """Another process (this test) holds the flock on the trained ruby adapter's run."""
    workdir = copy_trained(world, tmp)
    (run,) = (workdir / "runs").glob("task-adapter-ruby-*")
    handle = stack.enter_context(open(run / ".lock", "r+"))  # noqa: SIM115 (ExitStack closes it)
    fcntl.flock(handle, fcntl.LOCK_EX)
    handle.seek(0)
    handle.truncate()
    handle.write("4242\n")
    handle.flush()
    return [*world.args(workdir, 2, "train-adapters", "--langs", "ruby"), "--force"]


def data_file(lines: list[bytes], *more: str) -> Prepare:
    """`data show --strict` over a CommitPackFT-layout folder holding `lines` for ruby."""

    def prepare(world: World, tmp: Path, stack: ExitStack) -> list[str]:
        folder = tmp / "data" / "data" / "ruby"
        folder.mkdir(parents=True)
        (folder / "data.jsonl").write_bytes(b"".join(lines))
        return ["data", "show", "--source", str(tmp / "data"), "--lang", "ruby", *more]

    return prepare


def commit_line(**changes: object) -> bytes:
    row = {
        "commit": "c0", "old_file": "a.rb", "new_file": "a.rb", "old_contents": "x = 1\n",
        "new_contents": "x = 2\n", "subject": "Bump x", "message": "Bump x\n", "lang": "Ruby",
        "license": "mit", "repos": "org/repo",
    }  # fmt: skip
    row.update(changes)
    return (json.dumps({k: v for k, v in row.items() if v is not None}) + "\n").encode()


def empty_training_data(world: World, tmp: Path, stack: ExitStack) -> list[str]:
    """train-adapters on a data folder whose ruby file is empty."""
    data_file([])(world, tmp, stack)
    return train("--data", str(tmp / "data"))(world, tmp, stack)


def workdir_under_a_file(world: World, tmp: Path, stack: ExitStack) -> list[str]:
    (tmp / "a-file").write_text("")
    return world.args(tmp / "a-file" / "sub", 2, "train-adapters", "--langs", "ruby")


def no_such_run(command: str, *more: str) -> Prepare:
    def prepare(world: World, tmp: Path, stack: ExitStack) -> list[str]:
        return [command, "--workdir", str(tmp / "work"), "--run", *more]

    return prepare


# ---- the catalogue ----------------------------------------------------------------------------

CASES: list[tuple[str, Prepare, str]] = [
    # spec files and --set
    ("spec-unknown-key", spec_file("training:\n  lrr: 1\n"), "training.lrr: unknown key in training. Did you mean 'lr'?"),
    ("spec-wrong-type", spec_file("training:\n  batch_size: many\n"), "training.batch_size: must be an integer (got 'many')"),
    ("spec-invalid-yaml", spec_file("training: {lr: [1\n"), "job.yaml:2:1: invalid YAML"),
    ("spec-not-a-mapping", spec_file("- a\n- b\n"), "job.yaml: a spec is a mapping of sections"),
    ("spec-missing-file", argv("validate", "no-such-spec.yaml"), "no-such-spec.yaml"),
    ("spec-missing-file-train", argv("adv-fuse", "--spec", "no-such-job.yaml"), "no-such-job.yaml"),
    ("negative-lr", argv("validate", "--set", "training.lr=-1e-4"), "training.lr: must be > 0 (got -0.0001)"),
    ("zero-batch", argv("validate", "--set", "training.batch_size=0"), "training.batch_size: must be >= 1 (got 0)"),
    ("set-missing-key", argv("validate", "--set", "training.nope=1"), "--set training.nope: unknown key 'nope' in training"),
    ("set-missing-section", argv("validate", "--set", "trainin.lr=1"), "Did you mean 'training'?"),
    ("set-not-key-value", argv("validate", "--set", "training.lr"), "training.lr"),
    ("set-wrong-type", argv("validate", "--set", "training.max_steps=lots"), "training.max_steps"),
    # names, with did-you-mean
    ("unknown-method", argv("validate", "--set", "method.name=advfuson"), "unknown method 'advfuson'. Did you mean 'advfusion'?"),
    ("unknown-task", argv("train-adapters", "--task", "comit-message", "--dry-run"), "Did you mean 'commit-message'?"),
    ("unknown-language", argv("train-adapters", "--langs", "java,rubyy", "--dry-run"), "Did you mean 'ruby'?"),
    ("unknown-kind", argv("train-adapters", "--kind", "lorra", "--dry-run"), "Did you mean 'lora'?"),
    ("unknown-preset", argv("fuse", "--preset", "papper", "--dry-run"), "Did you mean 'paper'?"),
    ("unknown-mask-mode", argv("adv-fuse", "--mask-mode", "drop", "--dry-run"), "mask_mode"),
    ("target-not-fused", argv("fuse", "--target", "go", "--langs", "java,ruby", "--dry-run"), "'go' is not among data.languages (java, ruby)"),
    # models
    ("model-missing", train("--model", "/no/such/model-folder"), "Model folder '/no/such/model-folder' does not exist"),
    ("model-not-causal-lm", with_model(not_a_causal_lm), "is not a causal language model"),
    ("model-unsupported-arch", with_model(unsupported_gpt2), "Unsupported architecture 'gpt2'"),
    # adapters
    ("adapters-missing", lambda w, t, s: w.args(t / "w", 2, "fuse", "--target", "ruby", "--langs", "java,ruby", "--no-train-missing"), "advfusion train-adapters --langs java,ruby --kind task-adapter"),
    ("adapters-other-base", fuse_trained(java_from_another_base), "was trained on base"),
    ("safetensors-truncated", fuse_trained(truncate_java), "adapter.safetensors"),
    ("safetensors-garbage", fuse_trained(garble_java), "adapter.safetensors"),
    # data
    ("data-source-missing", train("--data", "/no/such/data-folder"), "/no/such/data-folder"),
    ("data-empty", data_file([]), "No commit-message examples in"),
    ("data-unknown-split", data_file([commit_line()], "--split", "tst"), "Unknown split 'tst'. Did you mean 'test'?"),
    ("data-empty-split", argv("data", "show", "--task", "code-generation", "--source", str(FIXTURES / "xcodeeval"), "--lang", "ruby", "--split", "test"), "Split 'test' has no code-generation examples"),
    ("data-empty-training-set", empty_training_data, "No commit-message examples in"),
    ("record-missing-field", data_file([commit_line(), commit_line(message=None, subject=None)], "--strict"), "data.jsonl:2:"),
    ("record-invalid-utf8", data_file([commit_line(), b'{"commit": "\xff\xfe"}\n'], "--strict"), "data.jsonl:2:"),
    ("prompt-leaves-no-room", train("--set", "data.max_total_tokens=16", "--set", "data.max_prompt_tokens=16"), "no room for target"),
    # workdirs and runs
    ("workdir-not-writable", workdir_under_a_file, "is not writable"),
    ("run-locked", locked_run, "is locked by another process (pid 4242)"),
    ("generate-no-such-run", no_such_run("generate", "/no/such/run", "--task", "commit-message", "-"), "Run folder '/no/such/run' does not exist"),
    ("generate-no-finished-run", no_such_run("generate", "lora/ruby", "--task", "commit-message", "-"), "No finished lora run for 'ruby'"),
    ("evaluate-no-such-run", no_such_run("evaluate", "lora/ruby"), "No finished lora run for 'ruby'"),
]  # fmt: skip


@pytest.mark.parametrize("prepare, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    cli, world, tmp_path, monkeypatch, prepare, expected
):
    monkeypatch.chdir(tmp_path)  # a default ./advfusion-runs would land here, not in the repo
    with ExitStack() as stack:
        args = prepare(world, tmp_path, stack)
        before = snapshot(tmp_path, world.root)
        line = one_line_error(cli(*args))
        after = snapshot(tmp_path, world.root)
    assert expected in line, line
    changed = [str(p) for p, data in before.items() if after.get(p) != data]
    assert not changed, f"a failing command modified {changed}"


def test_the_catalogue_is_large_and_ids_are_unique():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


def test_debug_shows_the_traceback(world, tmp_path):
    """`--debug` re-raises: the same error, with the full traceback, still a user error."""
    import subprocess
    import sys

    (tmp_path / "job.yaml").write_text("training:\n  lrr: 1\n")
    command = [sys.executable, "-m", "advfusion_cli", "--debug", "validate", "job.yaml"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback (most recent call last)" in done.stderr
    assert "UserError" in done.stderr and "training.lrr: unknown key" in done.stderr
