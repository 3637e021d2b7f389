"""FSDP2 over the fusion layers, proven on two CPU processes (gloo) under torchrun.

One launch trains AdapterFusion and AdvFusion (both phases) with FSDP and then DDP; this
process trains the same fusions on one process over the same global batch. The runs must
agree to 1e-5, each FSDP process must hold exactly half of the fusion's parameters and Adam
moments, and the exported fusion must reload on one CPU process with the trained logits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fusion_parity as fp
import pytest
import torch
from conftest import build_tiny_model, torchrun_two
from safetensors.torch import load_file
from test_workflow_cli import common, make_tokenizer, run_dirs, write_commits

from advfusion_cli.engine import attach_host
from advfusion_cli.workflows import checkpoint as ckpt

WORKER = Path(__file__).resolve().parent / "fusion_parity_worker.py"
TOLERANCE = 1e-5


def launch(mode: str, out: Path, adapters: Path, *more: str, timeout: int = 300):
    """torchrun with two CPU processes; a free rendezvous port per launch (--standalone).
    A launch that outlives `timeout` (a hang) is killed with every process it started."""
    return torchrun_two(WORKER, [mode, str(out), str(adapters), *more], mode, timeout)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fsdp-adapters")
    fp.write_adapters(root)
    return root


@pytest.fixture(scope="module")
def cli_world(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fsdp-cli")
    model = root / "model"
    shutil.copytree(tiny_model_dir("llama"), model)
    make_tokenizer(model)
    write_commits(root / "commits")
    return model, root / "commits"


@pytest.fixture(scope="module")
def parity_runs(tmp_path_factory, adapters, cli_world) -> Path:
    """One launch: the parity runs, then `advfusion adv-fuse` (fusion under FSDP)."""
    out = tmp_path_factory.mktemp("fsdp-parity")
    args = common(cli_world, out / "workdir", 4, "adv-fuse", "--langs", "java,ruby")
    args += ["--set", "training.distributed=fsdp", "--set", "model.gradient_checkpointing=true"]
    args += [
        "--set",
        "data.max_eval_records=5",
    ]  # eval batches of 2: 2 on one process, 1 on the other
    (out / "cli-args.json").write_text(json.dumps(args))
    done = launch("parity", out, adapters, str(out / "cli-args.json"))
    assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def single(adapters, tmp_path_factory):
    """Factory: the single-process reference weights of each method, trained once."""
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            run = tmp_path_factory.mktemp(f"single-{name}")
            cache[name] = fp.fusion_weights(single_process(name, adapters, run))
        return cache[name]

    return get


def single_process(name: str, adapters: Path, run: Path):
    """The reference: one process, the whole global batch per step."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == 1
    torch.manual_seed(0)
    trainable = fp.fused_model(name, {lang: adapters / lang for lang in fp.LANGUAGES})
    loop = fp.trainer(accelerator, trainable.model, trainable, run)
    fp.schedule(name)(loop, trainable, fp.phases(name, world=1))
    return trainable


def max_difference(left: dict, right: dict) -> float:
    assert set(left) == set(right)
    return max(float((left[k].float() - right[k].float()).abs().max()) for k in left)


@pytest.mark.parametrize("name", ["adapterfusion", "advfusion"])
def test_fsdp_equals_single_process_and_ddp(parity_runs, adapters, single, name):
    start = fp.fused_model(name, {lang: adapters / lang for lang in fp.LANGUAGES})
    reference = single(name)
    fsdp = load_file(str(parity_runs / f"fsdp-{name}.safetensors"))
    ddp = load_file(str(parity_runs / f"ddp-{name}.safetensors"))
    assert max_difference(fsdp, reference) < TOLERANCE
    assert max_difference(fsdp, ddp) < TOLERANCE
    # the runs trained: the fusion moved well beyond the tolerance
    assert max_difference(fp.fusion_weights(start), reference) > 1e-3


def test_each_process_holds_half_of_the_fusion_state(parity_runs):
    hidden, layers = 32, 2  # tiny llama; task adapters: one place per layer
    total = layers * (3 * hidden * hidden + 2 * hidden)
    for rank in (0, 1):
        counts = json.loads((parity_runs / f"counts-rank{rank}.json").read_text())
        for name in ("adapterfusion", "advfusion"):
            assert counts[name]["total_params"] == total
            assert counts[name]["local_params"] == total // 2
            assert counts[name]["local_moments"] == 2 * (total // 2)  # exp_avg, exp_avg_sq


@pytest.mark.parametrize("name", ["adapterfusion", "advfusion"])
def test_fsdp_export_reloads_on_one_process_with_the_trained_logits(parity_runs, adapters, name):
    model = build_tiny_model("llama")
    host = attach_host(model)
    for language in fp.LANGUAGES:
        host.load_adapter(adapters / language, name=language)
    host.load_fusion(parity_runs / f"export-{name}")
    with torch.no_grad():
        logits = model(**fp.probe_batch()).logits
    trained = torch.load(parity_runs / f"logits-{name}.pt")
    assert torch.allclose(logits, trained, atol=TOLERANCE, rtol=0)
    weights = load_file(str(parity_runs / f"export-{name}" / "fusion.safetensors"))
    assert all(not t.is_meta and t.numel() for t in weights.values())


def test_fsdp_resume_loads_each_process_its_own_slice_of_the_checkpoint(parity_runs):
    """Ctrl-C on one process after step 2, the same run again: it resumes from the step-2
    checkpoint (weights and Adam moments put back into the shards) and ends bit-identical to
    the uninterrupted FSDP run."""
    resumed = load_file(str(parity_runs / "fsdp-adapterfusion-resumed.safetensors"))
    uninterrupted = load_file(str(parity_runs / "fsdp-adapterfusion.safetensors"))
    difference = max_difference(resumed, uninterrupted)
    assert difference == 0, difference
    run = parity_runs / "resume"
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps if "loss" in m] == [1, 2, 3, 4]
    # The step-2 checkpoint it resumed from: whole moments in their own file, by name
    saved = json.loads((parity_runs / "resume-checkpoint.json").read_text())
    assert {ckpt.WEIGHTS_FILE, ckpt.STATE_FILE, ckpt.MOMENTS_FILE} <= set(saved["files"])
    names = [name.split(".", 1) for name in saved["moments"]]
    indexes = {index for index, _ in names}
    assert sorted(key for _, key in names) == sorted(["exp_avg", "exp_avg_sq"] * len(indexes))
    assert any(shape == [32, 32] for shape in saved["moments"].values())  # whole, not rows


def test_fsdp_keep_best_reloads_the_best_weights_into_every_shard(parity_runs):
    """Evaluations that get worse after step 2: the run ends on its step-2 weights, whole on
    both processes (each shard reloaded, not left as trained nor copied from process 0)."""
    best = load_file(str(parity_runs / "fsdp-adapterfusion-best.safetensors"))
    at_step_2 = load_file(str(parity_runs / "fsdp-adapterfusion-step2.safetensors"))
    trained_on = load_file(str(parity_runs / "fsdp-adapterfusion.safetensors"))  # step 4
    difference = max_difference(best, at_step_2)
    assert difference == 0, difference
    assert max_difference(at_step_2, trained_on) > 1e-4  # steps 3 and 4 moved the weights


def test_fsdp_with_gradient_checkpointing_equals_single_process(parity_runs, single):
    checkpointed = load_file(str(parity_runs / "fsdp-adapterfusion-checkpointing.safetensors"))
    assert max_difference(checkpointed, single("adapterfusion")) < TOLERANCE


def test_adv_fuse_command_under_fsdp_finishes_and_exports_a_loadable_fusion(parity_runs):
    """The CLI in both processes (as `accelerate launch -m advfusion_cli` runs it): adapters
    as DDP, the fusion sharded; eval splits give the processes unequal batch counts."""
    codes = [json.loads((parity_runs / f"cli-exit-rank{r}.json").read_text()) for r in (0, 1)]
    assert codes == [0, 0]
    run = run_dirs(parity_runs / "workdir")["advfusion-ruby"]
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    assert json.loads((run / "env.json").read_text())["num_processes"] == 2
    assert json.loads((run / "summary.json").read_text())["distributed"] == "fsdp"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for phase in {m["phase"] for m in metrics}:
        steps = [m["step"] for m in metrics if m["phase"] == phase and "loss" in m]
        assert steps == list(range(1, len(steps) + 1)) and steps
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics if "loss" in m)
    assert any("eval_loss" in m for m in metrics)
    weights = load_file(str(run / "final" / "fusion.safetensors"))
    values = [t for name, t in weights.items() if name.endswith("value.weight")]
    assert values and all(tuple(t.shape) == (32, 32) for t in values)  # whole, not a shard
    # The finished run dropped its optimizer state: the FSDP moments file went with it.
    ends = sorted((run / "checkpoints").glob("*/end"))
    assert ends and all((end / ckpt.WEIGHTS_FILE).is_file() for end in ends)
    assert not any((end / ckpt.MOMENTS_FILE).exists() for end in ends)


@pytest.mark.slow
def test_kill_9_of_one_process_then_rerun_resumes_to_the_uninterrupted_result(
    parity_runs, adapters, tmp_path
):
    """Process 1 is SIGKILLed after step 3 (checkpoint at step 2); torchrun stops the other;
    the same run again resumes from step 2 and ends where an uninterrupted FSDP run ends."""
    killed = launch("kill", tmp_path, adapters)
    assert killed.returncode != 0
    run = tmp_path / "run"
    saved = sorted(p.name for p in (run / "checkpoints" / "phase1").iterdir())
    assert saved == ["step-000002"]  # nothing past the kill, no end state
    resumed = launch("resume", tmp_path, adapters)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps if "loss" in m] == [1, 2, 3, 4]
    uninterrupted = load_file(str(parity_runs / "fsdp-adapterfusion.safetensors"))
    assert max_difference(load_file(str(tmp_path / "resumed.safetensors")), uninterrupted) == 0


@pytest.mark.slow
def test_auto_follows_an_fsdp_launcher_and_bf16_autocast_trains(cli_world, tmp_path):
    """`accelerate launch` with the launcher's FSDP switch on and training.distributed left at
    auto: the fusion is sharded (advfusion's own FSDP, not accelerate's), under bf16 autocast."""
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    args = common(cli_world, tmp_path, 3, "fuse", "--langs", "java,ruby")
    args += ["--set", "training.precision=bf16"]
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines"]
    command += ["1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "advfusion_cli"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.update(OMP_NUM_THREADS="1", ACCELERATE_USE_FSDP="true")
    done = subprocess.run(command + args, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    runs = run_dirs(tmp_path)
    run = runs["adapterfusion-ruby"]
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    assert json.loads((run / "summary.json").read_text())["distributed"] == "fsdp"
    for language in ("java", "ruby"):  # the adapters trained first, as DDP
        summary = json.loads((runs[f"task-adapter-{language}"] / "summary.json").read_text())
        assert summary["distributed"] == "ddp"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics if "loss" in m)
    assert load_file(str(run / "final" / "fusion.safetensors"))


def test_no_process_holds_more_than_one_whole_fusion_unit(parity_runs):
    """Over the whole `adv-fuse` under FSDP (setup, training, evaluations, checkpoints,
    export): outside backward passes at most one unit is gathered at a time, and the only
    FusionLayers ever holding whole parameters are the replayed initial values, one at a
    time (the live layers are built on the meta device and materialised as shards)."""
    for rank in (0, 1):
        report = json.loads((parity_runs / f"cli-units-rank{rank}.json").read_text())
        assert report["most_gathered"] == 1 and report["most_whole_layers"] == 1, report


def test_checkpoints_and_export_hold_one_gathered_tensor_at_a_time(parity_runs):
    """The `adv-fuse` run's checkpoints (weights and Adam moments), best weights and export
    stream their files: the main process holds at most one whole tensor gathered from the
    shards at any moment (writing it before gathering the next); the other process keeps
    none. Keeping every gathered tensor until its file is written counts them all."""
    main = json.loads((parity_runs / "cli-units-rank0.json").read_text())
    other = json.loads((parity_runs / "cli-units-rank1.json").read_text())
    assert (main["most_gathered_tensors"], other["most_gathered_tensors"]) == (1, 0)
