"""Shared test fixtures: tiny random models built from configs, and a CLI runner.

Everything here is offline and CPU-only. Tiny models are built from a config (never
downloaded) and saved to a temporary directory so the real `from_pretrained` path is used.
"""

from __future__ import annotations

import io
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

# One tiny config per supported architecture family: 2 layers, hidden 32, vocab 128.
TINY_CONFIGS: dict[str, dict] = {
    "llama": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=128,
    ),
    "qwen2": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=128,
    ),
    "mistral": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=128,
    ),
    "starcoder2": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=128,
    ),
    "gpt_bigcode": dict(
        n_embd=32, n_inner=64, n_layer=2, n_head=4, vocab_size=128, n_positions=128
    ),
    "gpt_neox": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=128,
        max_position_embeddings=128,
    ),
}


def build_tiny_model(arch: str, seed: int = 0):
    """A randomly initialised causal LM of the given architecture (model_type)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(arch, bos_token_id=1, eos_token_id=2, **TINY_CONFIGS[arch])
    model = AutoModelForCausalLM.from_config(config)
    model.eval()
    return model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Factory: save a tiny model of `arch` to disk once per session and return its path."""
    cache: dict[str, Path] = {}

    def make(arch: str = "llama") -> Path:
        if arch not in cache:
            path = tmp_path_factory.mktemp(f"tiny-{arch}")
            build_tiny_model(arch).save_pretrained(path)
            cache[arch] = path
        return cache[arch]

    return make


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> CliResult:
    """Run `advfusion ARGS` in-process through the real entry point (exit codes included)."""
    from advfusion_cli.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


def one_line_error(result: CliResult, *names: str) -> str:
    """The promise for bad input: exit code 2, no traceback, exactly one stderr line, starting
    `error:` and naming each of `names`. Returns that line."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert result.exit_code == 2, (result.exit_code, result.stdout[-2000:], result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def snapshot(*folders: Path) -> dict[Path, bytes]:
    """Every file under `folders` with its bytes: equal before and after = nothing changed."""
    return {
        path: path.read_bytes()
        for folder in folders
        if folder.exists()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def cli():
    return run_cli


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


_ = sys  # keep import for helpers that monkeypatch argv


def torchrun_two(worker: Path, args: list[str], mode: str, timeout: int):
    """`worker ARGS` under torchrun with two CPU processes (a free rendezvous port per launch,
    --standalone); a launch that outlives `timeout` (a hang) is killed with every process it
    started, and the test fails."""
    import signal
    import subprocess
    import sys

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", str(worker), *args]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: the workers go with it
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"torchrun {mode} did not finish within {timeout} s (a hang)")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
