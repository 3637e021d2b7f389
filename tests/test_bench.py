"""`advfusion bench` and its parts: runs once at tiny sizes (not a timed test), exact arithmetic,
configurations that leave the shared base exactly as they found it, and the memory probe."""

from __future__ import annotations

import json

import pytest
import torch

from advfusion_cli.bench import (
    BenchShapes,
    fusion_memory,
    fusion_parameters_per_place,
    goal_checks,
    training_configurations,
)
from advfusion_cli.bench.measure import CpuMemoryProbe, StepTimes
from advfusion_cli.bench.shapes import build_base_model, random_tokens
from advfusion_cli.bench.training import training_step

TINY = BenchShapes(hidden=128, layers=2, heads=4, intermediate=256, vocab=128, batch=2, seq=16)
TINY_ARGS = [
    "--hidden", "128", "--layers", "2", "--heads", "4", "--intermediate", "256",
    "--vocab", "128", "--batch", "2", "--seq", "16", "--n-adapters", "2,3",
    "--steps", "1", "--warmup", "0", "--rounds", "2", "--query-rank", "8",
    "--gen-prompts", "2", "--gen-prompt-tokens", "4", "--gen-new-tokens", "3",
]  # fmt: skip
EXPECTED_ROWS = [
    "base",
    "task-adapter",
    "compacter",
    "lora",
    "adapterfusion-2",
    "advfusion-2",
    "adapterfusion-3",
    "advfusion-3",
    "adapterfusion-3-q8",  # the low-rank variant sits at N = 6 when measured, else the largest N
]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    from conftest import run_cli

    path = tmp_path_factory.mktemp("bench") / "bench.json"
    threads = torch.get_num_threads()
    result = run_cli("bench", *TINY_ARGS, "--json", str(path))
    assert torch.get_num_threads() == threads  # the run does not change the caller's setting
    assert result.exit_code == 0, result.stderr
    return result, json.loads(path.read_text())


def test_bench_reports_every_configuration_with_positive_numbers(bench_run):
    result, data = bench_run
    rows = {row["name"]: row for row in data["training"]}
    assert list(rows) == EXPECTED_ROWS
    for name, row in rows.items():
        for key in ("median_s", "min_s", "cpu_median_s", "tokens_per_s", "ratio", "peak_mb"):
            assert row[key] > 0, (name, key)
        assert row["min_s"] <= row["median_s"]
        assert row["steps"] == 2  # 1 step x 2 rounds
    assert rows["base"]["ratio"] == 1.0
    assert rows["base"]["trainable_parameters"] == 0
    for name in rows:
        assert rows[name]["tokens_per_s"] == pytest.approx(32 / rows[name]["median_s"])
    assert data["settings"]["tokens_per_step"] == 32
    assert "Training step" in result.stdout and "Goals" in result.stdout


def test_bench_trainable_counts_follow_each_method(bench_run):
    _, data = bench_run
    rows = {row["name"]: row for row in data["training"]}
    h, layers, b = 128, 2, 128 // 16
    assert rows["task-adapter"]["trainable_parameters"] == layers * (2 * h * b + b + h)
    # Fusion: 3h^2 + 2h per place (W_Q, W_K with biases, W_V without), one place per layer.
    for n in (2, 3):
        for method in ("adapterfusion", "advfusion"):
            count = rows[f"{method}-{n}"]["trainable_parameters"]
            assert count == layers * (3 * h * h + 2 * h)
    assert rows["adapterfusion-3-q8"]["trainable_parameters"] == layers * (h * h + 2 * (h * 8 + 8))
    assert rows["lora"]["trainable_parameters"] == layers * 2 * (16 * h + h * 16)  # q and v


def test_bench_generation_and_goals(bench_run):
    _, data = bench_run
    generation = data["generation"]
    assert {(r["variant"], r["mode"]) for r in generation["rows"]} == {
        (variant, mode)
        for variant in ("base", "adapterfusion-3")
        for mode in ("batched", "one-at-a-time")
    }
    assert all(r["tokens"] == 2 * 3 and r["tokens_per_s"] > 0 for r in generation["rows"])
    assert set(generation["batched_speedup"]) == {"base", "adapterfusion-3"}
    goals = {g["goal"]: g for g in data["goals"]}
    assert len(goals) == 6
    assert goals["fusion N=6 step-time ratio to the frozen base"]["met"] is None  # N=6 not run
    assert goals["task adapter step-time ratio"]["measured"] > 0
    codellama = next(
        r
        for r in data["real_shapes"]
        if r["model"] == "CodeLlama-7B" and r["adapter_kind"] == "task-adapter"
    )
    assert codellama["trainable_parameters"] == 1_610_874_880


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n-adapters", "3,x"], "--n-adapters must be comma-separated integers"),
        (["--n-adapters", "0"], "--n-adapters must list positive integers"),
        (["--hidden", "96", "--heads", "4"], "use a multiple of 128"),
        (["--heads", "3"], "--hidden 256 must be divisible by --heads 3"),
        (["--quantization", "8bit"], "Unknown quantization '8bit'"),
        (["--query-rank", "999"], "--query-rank must be between 1 and --hidden 256"),
        (["--floor", "middle"], "Unknown --floor 'middle'"),
        (["--device", "tpu"], "Unknown --device 'tpu'"),
    ],
)
def test_bench_rejects_bad_options_in_one_line(cli, args, message):
    result = cli("bench", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_fusion_memory_at_real_shapes_is_exact():
    h = 4096
    assert fusion_parameters_per_place(h) == 3 * h * h + 2 * h
    assert fusion_parameters_per_place(h, 64) == h * h + 2 * (h * 64 + 64)
    codellama = fusion_memory(h, 32)
    assert codellama["trainable_parameters"] == 32 * (3 * h * h + 2 * h) == 1_610_874_880
    assert codellama["training_state_gib"] == pytest.approx(1_610_874_880 * 16 / 1024**3)
    compacter = fusion_memory(h, 32, "compacter")
    assert compacter["trainable_parameters"] == 2 * codellama["trainable_parameters"]


def test_step_times_summary():
    times = StepTimes(wall=[0.4, 0.2, 0.3], cpu=[0.1, 0.3, 0.2])
    summary = times.summary(tokens_per_step=600)
    assert summary["median_s"] == 0.3 and summary["min_s"] == 0.2
    assert summary["cpu_median_s"] == 0.2 and summary["cpu_min_s"] == 0.1
    assert summary["tokens_per_s"] == pytest.approx(2000.0)
    assert summary["spread"] == pytest.approx((0.4 - 0.2) / 0.3)


def test_goal_checks_compare_against_the_issue_targets():
    def row(name, ratio, memory=None):
        return {"name": name, "ratio": 0.1, "ratio_min": ratio, "memory_vs_adapter": memory}

    results = {
        "training": [
            row("task-adapter", 0.95, 1.0),
            row("compacter", 0.80),
            row("adapterfusion-6", 0.70, 1.2),
            row("advfusion-6", 0.58, 1.35),
        ],
        "generation": {"batched_speedup": {"base": 7.0, "adapterfusion-6": 4.0}},
    }
    goals = {g["goal"]: (g["measured"], g["met"]) for g in goal_checks(results)}
    assert goals["fusion N=6 step-time ratio to the frozen base"] == (0.58, False)  # the worse
    assert goals["fusion N=12 step-time ratio"] == (None, None)
    assert goals["task adapter step-time ratio"] == (0.95, True)
    assert goals["Compacter step-time ratio"] == (0.80, False)
    assert goals["fusion N=6 peak memory / one-adapter training"] == (1.35, False)
    assert goals["batched / one-at-a-time generation tokens/s"] == (4.0, False)


@pytest.fixture(scope="module")
def tiny_base():
    model = build_base_model(TINY, max_positions=64)
    return model, random_tokens(TINY, "cpu", seed=0)


def _snapshot(model):
    return {
        "modules": [(name, type(m).__name__) for name, m in model.named_modules()],
        "params": {
            n: (p.dtype, p.requires_grad, p.detach().clone()) for n, p in model.named_parameters()
        },
        "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()],
    }


def test_configurations_train_then_leave_the_base_as_they_found_it(tiny_base):
    model, ids = tiny_base
    before = _snapshot(model)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    for configuration in training_configurations([2], query_rank=8, query_rank_n=2):
        with training_step(
            model, ids, configuration, adapter_dtype=torch.float32, autocast=False, seed=0
        ) as step:
            step()
            step()
            if configuration.method != "base":
                assert step.trainable > 0
        after = _snapshot(model)
        assert after["modules"] == before["modules"], configuration.name
        assert after["hooks"] == before["hooks"], configuration.name
        assert not hasattr(model, "_advfusion_host")
        for name, (dtype, requires_grad, value) in before["params"].items():
            assert after["params"][name][:2] == (dtype, requires_grad), (configuration.name, name)
            assert torch.equal(after["params"][name][2], value), (configuration.name, name)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, logits, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("floor", "reaches_layer0_attention"), [("first-place", False), ("embeddings", True)]
)
def test_floor_backward_starts_where_configured(tiny_base, floor, reaches_layer0_attention):
    from advfusion_cli.bench import Configuration

    model, ids = tiny_base
    calls = []
    first_layer = model.model.layers[0]
    handles = [
        first_layer.self_attn.q_proj.register_full_backward_hook(lambda *a: calls.append("l0")),
        model.model.layers[1].self_attn.q_proj.register_full_backward_hook(
            lambda *a: calls.append("l1")
        ),
    ]
    try:
        with training_step(
            model, ids, Configuration("base", floor=floor), adapter_dtype=torch.float32,
            autocast=False, seed=0,
        ) as step:  # fmt: skip
            step()
    finally:
        for handle in handles:
            handle.remove()
    assert "l1" in calls  # the floor's backward covers every later layer
    assert ("l0" in calls) is reaches_layer0_attention


@pytest.mark.skipif(not CpuMemoryProbe.available(), reason="needs Linux /proc")
def test_cpu_memory_probe_follows_live_tensors():
    probe = CpuMemoryProbe()
    probe.strict()
    try:
        probe.settle()
        before = probe.current()
        probe.reset_peak()
        block = torch.ones(16 * 1024 * 1024)  # 64 MiB, touched
        del block
        probe.settle()
        mib = 1024**2
        assert probe.peak() - before >= 60 * mib
        assert probe.current() - before < 8 * mib  # returned to the system once freed
    finally:
        probe.relax()


def test_a_failing_configuration_is_recorded_and_skipped_but_the_floor_stops_the_run():
    from advfusion_cli.bench import Configuration
    from advfusion_cli.bench.training import attempt

    failures: dict[str, str] = {}
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("expected scalar type Float\nsecond line")

    fusion = Configuration("advfusion", 6)
    attempt(failures, fusion, broken)
    attempt(failures, fusion, broken)  # skipped: already failed
    assert failures == {"advfusion-6": "RuntimeError: expected scalar type Float"}
    assert calls == [1]
    with pytest.raises(RuntimeError):
        attempt(failures, Configuration("base"), broken)
    results = {
        "training": [
            {"name": "adapterfusion-6", "ratio_min": 0.7, "memory_vs_adapter": 1.1},
            {"name": "advfusion-6", "error": failures["advfusion-6"]},
        ]
    }
    goals = {g["goal"]: (g["measured"], g["met"]) for g in goal_checks(results)}
    assert goals["fusion N=6 step-time ratio to the frozen base"] == (0.7, False)
