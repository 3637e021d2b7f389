"""AdvFusion's options end to end through `advfusion adv-fuse` (the same tiny Llama and
CommitPackFT-shaped data as test_workflow_cli): `--mask-mode remove` (the target's softmax
slot gets exactly zero attention in phase 1, not in phase 2), `--phase1-data all` (phase 1
trains on every language's records), the temperature schedule's counter across a Ctrl-C and
resume, and AdvFusion over Compacter adapters."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from test_workflow_cli import (  # noqa: F401
    common,
    ctrl_c_after,
    fusion_target_per_step,
    run_dirs,
    training_hooks,
    world,
)

from advfusion_cli.engine.attention_record import FusionAttentionRecord
from advfusion_cli.engine.host_io import adapter_tensors
from advfusion_cli.engine.serialization import ADAPTER_WEIGHTS

PHASES = ("phase1-masked", "phase2-restored")


def _summary(run) -> dict:
    return json.loads((run / "summary.json").read_text())


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_remove_mode_and_all_languages_in_phase_one(cli, world, tmp_path):  # noqa: F811
    """One run, two options: the attention the fusion really paid while training, step by
    step, and the records each phase read."""
    hosts = []
    attention: dict[str, list[torch.Tensor]] = {phase: [] for phase in PHASES}

    def fresh_record(host):
        state = host.fusion_state
        return FusionAttentionRecord(state.names, list(state.places), host.num_layers)

    def after_setup(run_plan, trainable):
        if run_plan.role == "fusion":
            hosts.append(trainable.host)
            trainable.host.routing.recorder = fresh_record(trainable.host)

    def after_step(phase, step):
        # The record holds every fusion forward of this step (training and evaluation).
        if hosts and phase in attention:
            host = hosts[0]
            attention[phase].append(host.routing.recorder.mean())  # (layers, places, N)
            host.routing.recorder = fresh_record(host)

    options = ["--mask-mode", "remove", "--phase1-data", "all"]
    try:
        with training_hooks(setup=[after_setup], step=[after_step]):
            result = cli(*common(world, tmp_path, 4, "adv-fuse", "--langs", "java,ruby", *options))
    finally:
        for host in hosts:
            host.routing.recorder = None
    assert result.exit_code == 0, result.stderr

    ruby = hosts[0].fused_names.index("ruby")
    java = hosts[0].fused_names.index("java")
    assert len(attention["phase1-masked"]) == 2 and len(attention["phase2-restored"]) == 2
    for mean in attention["phase1-masked"]:
        # Removed from the softmax: exactly zero, and java takes all the mass.
        assert torch.all(mean[..., ruby] == 0.0)
        assert torch.allclose(mean[..., java], torch.ones_like(mean[..., java]))
    for mean in attention["phase2-restored"]:
        assert torch.all(mean[..., ruby] > 0.0)
    assert hosts[0].masked == []

    run = run_dirs(tmp_path)["advfusion-ruby"]
    phases = {p["name"]: p for p in _summary(run)["phases"]}
    # 8 training records per language (data.max_train_records): phase 1 reads both languages.
    assert {lang: n["train"] for lang, n in phases["phase1-masked"]["examples"].items()} == {
        "java": 8,
        "ruby": 8,
    }
    assert {lang: n["train"] for lang, n in phases["phase2-restored"]["examples"].items()} == {
        "ruby": 8
    }
    # ...and trains on them: 2 steps of batch 2 are a quarter of 16 records, half of 8.
    epochs = {(m["phase"], m["step"]): m["epoch"] for m in _metrics(run) if "epoch" in m}
    assert epochs[("phase1-masked", 2)] == pytest.approx(0.25)
    assert epochs[("phase2-restored", 2)] == pytest.approx(0.5)
    config = json.loads((run / "final" / "fusion_config.json").read_text())
    assert config["masked"] == []


def test_temperature_counter_survives_ctrl_c_and_resume(cli, world, tmp_path):  # noqa: F811
    """With the annealed softmax temperature on, a run stopped by Ctrl-C in phase 1 and resumed
    ends with the same weights and the same temperature counter as an uninterrupted one."""
    temperature = ["--set", "method.temperature=true"]
    args = lambda w: [  # noqa: E731
        *common(world, w, 6, "adv-fuse", "--langs", "java,ruby"),
        *temperature,
    ]
    reference = tmp_path / "ref"
    assert cli(*args(reference)).exit_code == 0
    cut = tmp_path / "cut"
    shutil.copytree(reference / "adapters", cut / "adapters")  # same adapters, same run ids

    ctrl_c_after(cli, args(cut), ("phase1-masked", 2))
    assert cli(*args(cut)).exit_code == 0

    expected_run = run_dirs(reference)["advfusion-ruby"]
    run = run_dirs(cut)["advfusion-ruby"]
    expected = load_file(str(expected_run / "final" / "fusion.safetensors"))
    actual = load_file(str(run / "final" / "fusion.safetensors"))
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key

    def counter(folder):
        path = folder / "checkpoints" / "phase2-restored" / "end" / "state.pt"
        return torch.load(path, weights_only=True)["extra"]["temperature_steps"]

    # One count per training forward: 6 steps x 1 micro-batch, still annealing (50 -> 1 over
    # 1000), so every step moved the temperature.
    assert counter(run) == counter(expected_run) == 6


def test_advfusion_over_compacter_adapters(cli, world, tmp_path):  # noqa: F811
    args = common(world, tmp_path, 4, "adv-fuse", "--langs", "java,ruby", "--kind", "compacter")
    with fusion_target_per_step(PHASES) as (seen, hosts):
        result = cli(*args)
    assert result.exit_code == 0, result.stderr

    runs = run_dirs(tmp_path)
    assert {"compacter-java", "compacter-ruby", "advfusion-compacter-ruby"} <= set(runs)
    host = hosts[0]
    assert host.fused_names == ["java", "ruby"]
    assert host.adapter_config("ruby").kind == host.adapter_config("java").kind == "compacter"
    for _, places in seen["phase1-masked"]:
        assert places and all(gate == 0.0 and delta == 0.0 for gate, delta in places)
    for _, places in seen["phase2-restored"]:
        assert all(gate == 1.0 and delta > 0.0 for gate, delta in places)

    # Only the fusion trained: the compacter adapters the fusion read are the stored ones.
    fusion = runs["advfusion-compacter-ruby"]
    assert json.loads((fusion / "status.json").read_text())["status"] == "finished"
    config = json.loads((fusion / "final" / "fusion_config.json").read_text())
    assert config["masked"] == []
    stored = {p.parent.name: p for p in (tmp_path / "adapters").rglob(ADAPTER_WEIGHTS)}
    assert set(stored) == {"java", "ruby"}
    for language, path in stored.items():
        saved = load_file(str(path))
        live = adapter_tensors(host, language)
        assert live.keys() == saved.keys()
        for name, tensor in live.items():
            assert torch.equal(tensor.detach().cpu(), saved[name]), (language, name)
