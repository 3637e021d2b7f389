"""`training.distributed` resolution, the shipped accelerate configs, and the one-line error for
FSDP on a single process (no launch needed: all in this process)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import build_tiny_model, one_line_error
from test_workflow_cli import common, make_tokenizer, write_commits

from advfusion_cli.engine import AdapterConfig, attach_host
from advfusion_cli.errors import UserError
from advfusion_cli.workflows import sharding

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "accelerate"
FSDP_ON = {"ACCELERATE_USE_FSDP": "true"}


@pytest.mark.parametrize(
    ("requested", "processes", "env", "expected"),
    [
        ("auto", 1, {}, "none"),
        ("auto", 1, FSDP_ON, "none"),
        ("ddp", 1, {}, "none"),
        ("auto", 2, {}, "ddp"),
        ("auto", 4, FSDP_ON, "fsdp"),
        ("auto", 2, {"ACCELERATE_USE_FSDP": "false"}, "ddp"),
        ("ddp", 2, FSDP_ON, "ddp"),
        ("fsdp", 2, {}, "fsdp"),
    ],
)
def test_resolve_distributed(requested, processes, env, expected):
    assert sharding.resolve_distributed(requested, processes, env) == expected


def test_fsdp_on_one_process_is_an_error_that_says_how_to_launch():
    with pytest.raises(UserError) as error:
        sharding.resolve_distributed("fsdp", 1, {})
    message = str(error.value)
    assert "training.distributed=fsdp" in message and "accelerate launch" in message
    assert "\n" not in message


def launch_env(config: Path) -> tuple[int, dict[str, str]]:
    """The process count and environment `accelerate launch --config_file CONFIG` gives."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(config), "-m", "x"])
    args, _, _ = _validate_launch_command(args)
    env = prepare_multi_gpu_env(args) if args.multi_gpu or args.use_fsdp else {}
    return args.num_processes, env


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("single-gpu.yaml", "none"),
        ("ddp-multi-gpu.yaml", "ddp"),
        ("fsdp-multi-gpu.yaml", "fsdp"),
        ("fsdp-two-machines.yaml", "fsdp"),
    ],
)
def test_each_shipped_accelerate_config_selects_its_mode_under_auto(config, expected):
    processes, env = launch_env(EXAMPLES / config)
    assert sharding.resolve_distributed("auto", processes, env) == expected


def test_the_launcher_fsdp_switch_is_hidden_only_while_the_accelerator_is_built(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with sharding.without_launcher_fsdp():
        assert "ACCELERATE_USE_FSDP" not in os.environ
    assert os.environ["ACCELERATE_USE_FSDP"] == "true"
    assert sharding.launcher_wants_fsdp()


def test_fsdp_shards_fusion_layers_and_leaves_adapter_stages_replicated():
    model = build_tiny_model("llama")
    host = attach_host(model)
    host.add_adapter("a", AdapterConfig.task_adapter())
    assert isinstance(sharding.for_run("fsdp", model), sharding.Replicated)
    assert not isinstance(sharding.for_run("fsdp", model), sharding.FusionSharded)
    host.add_adapter("b", AdapterConfig.task_adapter())
    host.fuse(["a", "b"])
    layout = sharding.for_run("fsdp", model)
    assert isinstance(layout, sharding.FusionSharded)
    assert len(layout.units) == 2  # one fusion layer per layer (task adapters: one place)
    assert type(sharding.for_run("ddp", model)) is sharding.Replicated


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("shard-cli")
    model = root / "model"
    shutil.copytree(tiny_model_dir("llama"), model)
    make_tokenizer(model)
    write_commits(root / "commits", per_language=4)
    return model, root / "commits"


@pytest.mark.parametrize("command", ["fuse", "adv-fuse", "train-adapters"])
def test_fsdp_without_a_launcher_is_a_one_line_error_before_anything_trains(
    cli, world, tmp_path, command
):
    args = common(world, tmp_path, 2, command, "--langs", "java,ruby")
    result = cli(*args, "--set", "training.distributed=fsdp")
    one_line_error(result, "training.distributed=fsdp", "accelerate launch")
    assert not list(tmp_path.rglob("checkpoints"))  # it stopped before training
