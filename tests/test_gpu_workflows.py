"""GPU tier, workflow level: the real commands (`train-adapters`, `adv-fuse`) on a 4-bit NF4
base on CUDA, with bf16 autocast and paged AdamW 32-bit as `auto` picks them there.

Each run: eval loss goes down, exactly the intended parameters change (the packed 4-bit base
stays byte for byte), and the exported weights, loaded the way evaluation loads them, give
the same logits the trained model gave. AdvFusion interrupted at its phase boundary and again
inside phase 2 resumes from its checkpoints (paged AdamW state included) to the weights of an
uninterrupted run.

On CUDA determinism: the forward and backward here use cuBLAS matmuls (deterministic for a
fixed shape and GPU), bitsandbytes' NF4 dequantization (deterministic) and SDPA attention,
whose memory-efficient backward accumulates with atomics and may differ in the last bits
between runs. The resume comparison therefore allows 1e-5 relative and records whether the
weights came out bit for bit.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from test_workflow_cli import common, ctrl_c_after, make_tokenizer, run_dirs, write_commits

from advfusion_cli.spec.loading import parse_spec
from advfusion_cli.workflows import execute

pytestmark = pytest.mark.gpu

PROBE_IDS = torch.randint(3, 100, (2, 24), generator=torch.Generator().manual_seed(9))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small Llama whose fusion layers (384 x 384 = 147k weights) are large enough for
    bitsandbytes to page their AdamW moments (it pages tensors of 1e5 elements and more)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    root = tmp_path_factory.mktemp("gpu-wf")
    model = root / "model"
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "llama",
        hidden_size=384,
        intermediate_size=768,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(model)
    make_tokenizer(model)
    write_commits(root / "commits")
    return model, root / "commits"


def args_for(world, workdir, steps: int, *command: str) -> list[str]:
    return [*common(world, workdir, steps, *command), "--quantization", "4bit"]


def probe_logits(model) -> torch.Tensor:
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        return model(input_ids=PROBE_IDS.cuda()).logits.float().cpu()


class Watch:
    """Hooks into the workflow: parameters after setup and after training, probe logits."""

    def __init__(self, role: str):
        self.role, self.seen = role, {}

    def after_setup(self, run_plan, trainable):
        if run_plan.role != self.role:
            return
        model = trainable.model
        self.seen["trainable"] = sorted(trainable.params)
        self.seen["requires_grad"] = sorted(
            n for n, p in model.named_parameters() if p.requires_grad
        )
        self.seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.seen["device"] = next(model.parameters()).device.type
        self.seen["4bit"] = any(type(p).__name__ == "Params4bit" for p in model.parameters())

    def after_training(self, run_plan, trainable):
        if run_plan.role != self.role:
            return
        model = trainable.model
        self.seen["after"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.seen["logits"] = probe_logits(model)

    def __enter__(self):
        execute.AFTER_SETUP_HOOKS.append(self.after_setup)
        execute.AFTER_TRAINING_HOOKS.append(self.after_training)
        return self.seen

    def __exit__(self, *exc):
        execute.AFTER_SETUP_HOOKS.remove(self.after_setup)
        execute.AFTER_TRAINING_HOOKS.remove(self.after_training)


def check_training(seen: dict, run, record_property) -> None:
    assert seen["device"] == "cuda" and seen["4bit"]
    assert seen["trainable"] == seen["requires_grad"] and seen["trainable"]
    unchanged = [n for n in seen["before"] if torch.equal(seen["before"][n], seen["after"][n])]
    changed = sorted(set(seen["before"]) - set(unchanged))
    assert changed and set(changed) <= set(seen["trainable"])  # only what should train moved
    assert len(unchanged) + len(changed) == len(seen["after"])  # the packed base included
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [m["eval_loss"] for m in metrics if "eval_loss" in m]
    record_property("eval_losses", " ".join(f"{v:.3f}" for v in evals))
    assert len(evals) >= 2 and evals[-1] < evals[0]
    summary = json.loads((run / "summary.json").read_text())
    record_property("peak_memory_mb", summary["peak_memory_mb"])
    env = json.loads((run / "env.json").read_text())
    assert env["device"]["type"] == "cuda"


def reload(run, store_root=None):
    """The exported result on a freshly loaded base, as evaluation loads it."""
    from advfusion_cli.engine import attach_host, load_lora
    from advfusion_cli.workflows.models import adapter_dtype, load_base

    spec = parse_spec((run / "job.yaml").read_text())
    model, _ = load_base(spec.model)
    final = run / "final"
    if (final / "adapter_model.safetensors").exists():
        return load_lora(model, final)
    host = attach_host(model, adapter_dtype(spec.model))
    if (final / "fusion_config.json").exists():
        for name in json.loads((final / "fusion_config.json").read_text())["adapters"]:
            host.load_adapter(next(store_root.glob(f"*/commit-message/task-adapter/{name}")))
        host.load_fusion(final)
    else:
        host.activate(host.load_adapter(final))
    return model


@pytest.mark.parametrize("kind", ["task-adapter", "compacter", "lora"])
def test_adapter_training_on_a_4bit_cuda_base(cli, world, tmp_path, kind, record_property):
    extra = ["--set", "method.reduction_factor=4"] if kind == "compacter" else []
    with Watch("adapter") as seen:
        args = args_for(world, tmp_path, 8, "train-adapters", "--langs", "ruby", "--kind", kind)
        result = cli(*args, *extra)
    assert result.exit_code == 0, result.stderr[-3000:]
    run = run_dirs(tmp_path)[f"{kind}-ruby"]
    check_training(seen, run, record_property)
    assert torch.equal(probe_logits(reload(run)), seen["logits"])


def test_adv_fuse_on_a_4bit_cuda_base(cli, world, tmp_path, record_property):
    with Watch("fusion") as seen:
        args = args_for(world, tmp_path, 8, "adv-fuse", "--langs", "java,ruby")
        keep = ["--set", "training.keep_optimizer_state=true"]  # the end state is read below
        result = cli(*args, *keep)
    assert result.exit_code == 0, result.stderr[-3000:]
    run = run_dirs(tmp_path)["advfusion-ruby"]
    check_training(seen, run, record_property)
    assert all(".fusion." in n for n in seen["trainable"])
    state = torch.load(
        run / "checkpoints" / "phase2-restored" / "end" / "state.pt", weights_only=True
    )
    assert type(state["optimizer"]["state"]).__name__ == "dict" and state["optimizer"]["state"]
    steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert steps == {8.0}  # paged AdamW's state carried over the phase boundary (4 + 4)
    assert torch.equal(probe_logits(reload(run, tmp_path / "adapters")), seen["logits"])


def adam_steps(state_file) -> set[float]:
    state = torch.load(state_file, weights_only=True)["optimizer"]["state"]
    return {float(s["step"]) for s in state.values()}


def test_adv_fuse_with_paged_adamw_resumes_from_the_phase_boundary_and_a_checkpoint(
    cli, world, tmp_path, record_property
):
    def args(workdir):
        command = args_for(world, workdir, 6, "adv-fuse", "--langs", "java,ruby")
        return [*command, "--set", "training.optimizer=paged_adamw_32bit"]  # 3 + 3 steps

    reference = tmp_path / "ref"
    assert cli(*args(reference)).exit_code == 0
    cut = tmp_path / "cut"
    shutil.copytree(reference / "adapters", cut / "adapters")  # the same adapters, run ids

    ctrl_c_after(cli, args(cut), ("phase2-restored", 1))
    run = run_dirs(cut)["advfusion-ruby"]
    checkpoints = run / "checkpoints"
    assert adam_steps(checkpoints / "phase1-masked" / "end" / "state.pt") == {3.0}
    assert adam_steps(checkpoints / "phase2-restored" / "step-000001" / "state.pt") == {4.0}
    # as if the process had died right after phase 1 ended: phase 2 must start over from
    # the boundary state (phase 1's weights, paged AdamW moments, RNG, data position)
    shutil.rmtree(checkpoints / "phase2-restored")
    ctrl_c_after(cli, args(cut), ("phase2-restored", 2))
    assert adam_steps(checkpoints / "phase2-restored" / "step-000002" / "state.pt") == {5.0}
    resumed = cli(*args(cut))  # from the checkpoint inside phase 2
    assert resumed.exit_code == 0 and "resumed" in resumed.stdout, resumed.stderr[-3000:]

    final = run_dirs(reference)["advfusion-ruby"] / "final" / "fusion.safetensors"
    expected = load_file(str(final))
    actual = load_file(str(run / "final" / "fusion.safetensors"))
    assert expected.keys() == actual.keys()
    bitwise = all(torch.equal(expected[k], actual[k]) for k in expected)
    record_property("resumed_bit_for_bit", bitwise)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-7)
    steps = [
        (m["phase"], m["step"])
        for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if "loss" in m
    ]
    assert len(steps) == len(set(steps)) == 6  # no step logged twice
