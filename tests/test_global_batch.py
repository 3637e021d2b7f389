"""One global batch, one gradient: a step's result does not depend on how its batch is split.

The loss of an optimizer step is the sum over all its target tokens (every micro-batch, every
process) divided by their global count. Batch 8 on one process, batch 4 x grad_accum 2 on one
process, batch 4 on each of 2 processes (DDP, and FSDP for the fusions) and batch 2 x 2 on
each of 2 processes under FSDP must train the same weights, on rows whose micro-batches hold
very different target counts (a per-micro-batch mean would weight them differently).
"""

from __future__ import annotations

import json
from pathlib import Path

import fusion_parity as fp
import pytest
import torch
from safetensors.torch import load_file
from test_sharding_processes import launch, max_difference

from advfusion_cli.workflows.batching import epoch_permutation, micro_batch_indices
from advfusion_cli.workflows.trainer import target_count

TOLERANCE = 1e-4
BF16_TOLERANCE = 5e-3  # a loss near 5 in bf16 arithmetic: 8 mantissa bits, ~4e-3 relative
# The fusion's key bias adds Q.b_K to every slot's score alike, so the softmax ignores it: its
# gradient is 0 up to rounding, and Adam turns that rounding (which depends on summation
# order) into full-size steps. It is compared apart, by its effect: none (see below).
SHIFT_ONLY = "key.bias"
UNITS = 2  # fusion layers of the tiny llama (task adapters: one place per layer)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("split-adapters")
    fp.write_adapters(root)
    return root


def adapter_dirs(root: Path) -> dict[str, Path]:
    return {language: root / language for language in fp.LANGUAGES}


@pytest.fixture(scope="module")
def split_runs(tmp_path_factory, adapters) -> Path:
    out = tmp_path_factory.mktemp("split-runs")
    done = launch("splits", out, adapters)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def one_process(adapters, tmp_path_factory):
    """Factory: (weights, first logged loss) of a method trained on one process."""
    cache: dict[tuple, tuple] = {}

    def get(name: str, batch: int, accumulation: int) -> tuple[dict, float]:
        key = (name, batch, accumulation)
        if key not in cache:
            from accelerate import Accelerator

            run = tmp_path_factory.mktemp(f"one-{name}-{batch}x{accumulation}")
            accelerator = Accelerator(cpu=True)
            torch.manual_seed(0)
            trainable = fp.split_trainable(name, adapter_dirs(adapters))
            loop = fp.trainer(accelerator, trainable.model, trainable, run)
            phases = fp.split_phases(name, batch, accumulation)
            fp.split_schedule(name)(loop, trainable, phases)
            cache[key] = (fp.fusion_weights(trainable), first_loss(run))
        return cache[key]

    return get


def weight_difference(left: dict, right: dict) -> float:
    """Max |difference| over every trained tensor but the fusion's key bias."""
    keep = [name for name in left if not name.endswith(SHIFT_ONLY)]
    return max_difference({k: left[k] for k in keep}, {k: right[k] for k in keep})


def first_loss(run: Path) -> float:
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            return record["loss"]
    raise AssertionError(f"no training record in {run}")


def test_the_micro_batches_of_a_step_hold_unequal_target_counts():
    """The premise: with the splits' seed, each step's two halves differ in target tokens."""
    from advfusion_cli.data.encoding import Collator

    collate = Collator(pad_token_id=0)
    for phase in fp.split_phases("advfusion", 4, 2):
        rows = phase.train
        order = epoch_permutation(len(rows), phase.settings.seed, 0)
        for step in range(fp.STEPS):
            halves = [
                int(
                    target_count(collate([rows[i] for i in micro_batch_indices(order, m, 4, 1, 0)]))
                )
                for m in (2 * step, 2 * step + 1)
            ]
            assert halves[0] != halves[1], (phase.name, step, halves)
            assert max(halves) >= 1.3 * min(halves), (phase.name, step, halves)


@pytest.mark.parametrize("name", fp.SPLIT_METHODS)
def test_every_split_of_the_global_batch_trains_the_same_weights(
    split_runs, one_process, adapters, name
):
    whole, whole_loss = one_process(name, 8, 1)
    accumulated, accumulated_loss = one_process(name, 4, 2)
    assert weight_difference(accumulated, whole) < TOLERANCE
    ddp = load_file(str(split_runs / f"ddp-{name}-4x1.safetensors"))
    assert weight_difference(ddp, whole) < TOLERANCE
    assert first_loss(split_runs / f"ddp-{name}-4x1") == pytest.approx(whole_loss, abs=1e-5)
    assert accumulated_loss == pytest.approx(whole_loss, abs=1e-5)
    if name in ("adapterfusion", "advfusion"):
        fsdp = load_file(str(split_runs / f"fsdp-{name}-4x1.safetensors"))
        assert weight_difference(fsdp, whole) < TOLERANCE
        assert first_loss(split_runs / f"fsdp-{name}-4x1") == pytest.approx(whole_loss, abs=1e-5)
    if name == "adapterfusion":
        both = load_file(str(split_runs / "fsdp-adapterfusion-2x2.safetensors"))
        assert weight_difference(both, whole) < TOLERANCE
    # it trained: the weights moved far beyond the tolerance
    torch.manual_seed(0)
    start = fp.fusion_weights(fp.split_trainable(name, adapter_dirs(adapters)))
    assert max_difference(start, whole) > 1e-2


def test_the_key_bias_left_out_of_the_weight_comparison_changes_no_output(adapters):
    """Why the comparison may leave b_K out: shifting every fusion's key bias moves no
    logit, so its (rounding-driven) updates cannot change what a fusion computes."""
    torch.manual_seed(0)
    trainable = fp.split_trainable("adapterfusion", adapter_dirs(adapters))
    model = trainable.model.eval()
    probe = fp.probe_batch()
    with torch.no_grad():
        before = model(**probe).logits
        for name, param in trainable.params.items():
            if name.endswith(SHIFT_ONLY):
                param.add_(torch.randn(param.shape))
        after = model(**probe).logits
    assert any(name.endswith(SHIFT_ONLY) for name in trainable.params)
    assert torch.allclose(before, after, atol=1e-5, rtol=0)


def test_the_logged_loss_is_the_global_mean_over_target_tokens(one_process):
    """Step 1's logged loss against a written-out reference: the untrained model's summed
    cross-entropy over the 8 rows' targets, divided by their count."""
    import torch.nn.functional as F

    from advfusion_cli.data.encoding import Collator

    _, logged = one_process("task-adapter", 4, 2)
    torch.manual_seed(0)
    trainable = fp.split_trainable("task-adapter", {})
    phase = fp.split_phases("task-adapter", 8, 1)[0]
    order = epoch_permutation(len(phase.train), phase.settings.seed, 0)
    batch = Collator(pad_token_id=0)([phase.train[i] for i in order[:8]])
    with torch.no_grad():
        logits = trainable.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
    targets = batch["labels"][:, 1:]
    summed = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
    )
    assert logged == pytest.approx(float(summed / (targets != -100).sum()), abs=1e-5)


def test_fsdp_accumulation_reduce_scatters_once_per_step(split_runs):
    """Batch 2 x grad_accum 2 under FSDP: one reduce-scatter per unit per optimizer step,
    as many as batch 4 x 1 (a reduce-scatter per micro-batch would double them)."""
    for rank in (0, 1):
        counts = json.loads((split_runs / f"reduce-scatters-rank{rank}.json").read_text())
        assert counts["fsdp-adapterfusion-4x1"] == fp.STEPS * UNITS
        assert counts["fsdp-adapterfusion-2x2"] == fp.STEPS * UNITS
        assert counts["ddp-adapterfusion-4x1"] == 0


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory, adapters) -> Path:
    out = tmp_path_factory.mktemp("bf16-run")
    done = launch("bf16", out, adapters)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_fsdp_under_bf16_computes_in_bf16_keeps_fp32_and_stays_near_the_fp32_run(
    split_runs, bf16_run
):
    """training.precision=bf16 under FSDP: units all-gather bf16 copies for compute, reduce
    gradients and keep master weights and AdamW moments in fp32; every logged loss stays
    within bf16 rounding of the fp32 run's (and differs: bf16 really computed). Weights are
    not compared element-wise: Adam turns bf16 noise on near-zero gradients into full
    steps."""
    dtypes = json.loads((bf16_run / "bf16-dtypes.json").read_text())
    assert dtypes == {
        "compute": ["torch.bfloat16"],
        "reduce": ["torch.float32"],
        "master": ["torch.float32"],
        "moments": ["torch.float32"],
    }
    fp32_losses = logged_losses(split_runs / "fsdp-adapterfusion-4x1")
    bf16_losses = logged_losses(bf16_run / "bf16")
    assert len(bf16_losses) == len(fp32_losses) == fp.STEPS + 1  # the steps, the evaluation
    differences = [abs(a - b) for a, b in zip(bf16_losses, fp32_losses, strict=True)]
    assert max(differences) < BF16_TOLERANCE
    assert max(differences) > 0  # bf16 really computed
    fp32 = load_file(str(split_runs / "fsdp-adapterfusion-4x1.safetensors"))
    bf16 = load_file(str(bf16_run / "fsdp-adapterfusion-bf16.safetensors"))
    assert weight_difference(bf16, fp32) > 0


def logged_losses(run: Path) -> list[float]:
    """Every training loss then the eval loss a run logged, in order."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r.get("loss", r.get("eval_loss")) for r in records if "loss" in r or "eval_loss" in r]
