"""Bad models, --force reruns, pretrain-base output/packing and deeply nested data lines.

Each case runs the real entry point and must end in exactly one stderr line `error: ...` that
names the file or option, exit code 2, no traceback; a failing `--force` rerun must leave the
previous finished run byte-identical and usable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import one_line_error
from test_workflow_cli import common, make_tokenizer, write_commits

# ---- helpers ---------------------------------------------------------------------------------


def digests(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path -> sha256)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models-runs-data")
    write_commits(root / "commits")
    return root / "commits"


@pytest.fixture
def model(tmp_path, tiny_model_dir) -> Path:
    """A private copy of the tiny llama (with a tokenizer) this test may break."""
    folder = tmp_path / "m" / "mine"
    shutil.copytree(tiny_model_dir("llama"), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 512}))
    make_tokenizer(folder)
    return folder


def edit_config(**changes):
    def apply(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **changes}))

    return apply


def junk_weights(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"\x00garbage, not safetensors" * 8)


def truncated_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])


def broken_tokenizer(folder: Path) -> None:
    (folder / "tokenizer.json").write_text("{\n")


# ---- 1. a failing --force rerun keeps the finished run -----------------------------------------


@pytest.mark.parametrize(
    "breaks, named",
    [(broken_tokenizer, "mine"), (junk_weights, "mine")],
    ids=["tokenizer", "safetensors"],
)
def test_force_retrain_with_a_broken_model_keeps_the_finished_run(
    cli, data, model, tmp_path, breaks, named
):
    workdir = tmp_path / "wm"
    args = common((model, data), workdir, 2, "train-adapters", "--langs", "ruby")
    first = cli(*args)
    assert first.exit_code == 0, first.stderr
    (run,) = (workdir / "runs").iterdir()
    before = digests(workdir)
    assert {"final", "summary.json", "metrics.jsonl"} <= {p.name for p in run.iterdir()}

    breaks(model)
    one_line_error(cli(*args, "--force"), named)

    assert digests(workdir) == before
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    again = cli(*args)  # still usable: the finished run is reused as it is
    assert again.exit_code == 0 and "reused" in again.stdout, again.stderr
    assert digests(workdir) == before


def test_adv_fuse_force_with_a_truncated_adapter_keeps_the_finished_fusion(
    cli, data, model, tmp_path
):
    workdir = tmp_path / "wf"
    args = common((model, data), workdir, 4, "adv-fuse", "--langs", "java,ruby")
    first = cli(*args)
    assert first.exit_code == 0, first.stderr
    (fusion,) = (workdir / "runs").glob("advfusion-*")
    assert (fusion / "final").is_dir()
    (java,) = (workdir / "adapters").glob("*/commit-message/task-adapter/java")
    weights = java / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    before = digests(workdir)

    one_line_error(cli(*args, "--force"), "adapter.safetensors")

    assert digests(workdir) == before
    assert json.loads((fusion / "status.json").read_text())["status"] == "finished"


# ---- 2. corrupt base-model folders -------------------------------------------------------------


@pytest.mark.parametrize(
    "breaks, reason",
    [
        (junk_weights, "safetensors"),
        (truncated_weights, "safetensors"),
        (edit_config(vocab_size=999), "config.json"),
        (edit_config(hidden_size=30), "hidden size"),
        (edit_config(num_attention_heads=0), "config.json"),
    ],
    ids=[
        "junk-weights",
        "truncated-weights",
        "vocab-mismatch",
        "hidden-not-multiple",
        "zero-heads",
    ],
)
def test_a_corrupt_model_folder_is_a_one_line_error(data, model, tmp_path, breaks, reason):
    """Through a subprocess, so transformers' own log output counts as stderr too."""
    breaks(model)
    args = common((model, data), tmp_path / "w", 2, "train-adapters", "--langs", "ruby")
    done = subprocess.run(
        [sys.executable, "-m", "advfusion_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=300,
    )
    done.exit_code = done.returncode
    line = one_line_error(done, str(model))
    assert reason in line


# ---- 4./5. pretrain-base output folder and packing ---------------------------------------------

PRETRAIN_TINY = [
    "--steps", "1", "--batch-size", "1", "--hidden-size", "24", "--layers", "1",
    "--heads", "2", "--kv-heads", "1", "--intermediate-size", "32", "--vocab-size", "300",
    "--max-positions", "64", "--no-evaluate", "--warmup-steps", "0", "--threads", "1",
    "--max-task-examples", "2", "--heldout-docs", "1",
]  # fmt: skip


def test_pretrain_out_below_a_file_is_refused_before_training(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    one_line_error(
        cli("pretrain-base", "--out", str(blocker / "sub"), "--seq-len", "64", *PRETRAIN_TINY),
        "--out",
        str(blocker),
    )
    assert blocker.read_text() == "mine"


def test_pretrain_empty_out_is_refused(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(cli("pretrain-base", "--out", "", "--seq-len", "64", *PRETRAIN_TINY), "--out")
    assert list(tmp_path.iterdir()) == []


def test_pretrain_seq_len_shorter_than_every_document_is_a_one_line_error(cli, tmp_path):
    out = tmp_path / "x" / "pt"
    one_line_error(
        cli("pretrain-base", "--out", str(out), "--seq-len", "16", *PRETRAIN_TINY), "--seq-len"
    )
    assert not out.exists()


# ---- 6. a data line nested too deeply ----------------------------------------------------------


@pytest.fixture
def deep_source(tmp_path) -> Path:
    write_commits(tmp_path / "src", per_language=3)
    data = tmp_path / "src" / "data" / "ruby" / "data.jsonl"
    lines = data.read_text().splitlines()
    lines.insert(1, "[" * 100000 + "]" * 100000)
    data.write_text("\n".join(lines) + "\n")
    return tmp_path / "src"


def test_a_deeply_nested_line_is_skipped_as_malformed(cli, deep_source):
    result = cli("data", "show", "--source", str(deep_source), "--lang", "ruby", "--plain")
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "invalid JSON" in result.stdout + result.stderr


def test_a_deeply_nested_line_is_a_file_line_error_under_strict(cli, deep_source):
    result = cli("data", "show", "--source", str(deep_source), "--lang", "ruby", "--strict")
    one_line_error(result, "data.jsonl:2")
