"""The three training commands end to end through the real CLI entry point, on a tiny random
Llama with a character-level tokenizer and small commit-message data in CommitPackFT's schema:
files written, reuse, --force, exact auto-resume after Ctrl-C, AdvFusion masking, frozen base,
locks, dry runs and one-line errors."""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import shutil
import signal
import string
from contextlib import contextmanager

import pytest
import torch
from conftest import one_line_error
from safetensors.torch import load_file

from advfusion_cli.spec.loading import parse_spec
from advfusion_cli.workflows import execute, trainer

LANGS = {"python": "Python", "java": "Java", "ruby": "Ruby", "go": "Go"}


def make_tokenizer(folder) -> None:
    """A character-level tokenizer (ids < 128, the tiny models' vocabulary)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    chars = sorted(set(string.printable) - set("\r\x0b\x0c"))
    vocab = {token: i for i, token in enumerate(specials + chars)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    ).save_pretrained(folder)


def write_commits(root, per_language: int = 20) -> None:
    """CommitPackFT layout: data/<config>/data.jsonl with its ten fields."""
    rnd = random.Random(0)
    for lang, display in LANGS.items():
        folder = root / "data" / lang
        folder.mkdir(parents=True)
        with open(folder / "data.jsonl", "w") as handle:
            for i in range(per_language):
                name = rnd.choice(["count", "total", "size", "limit"]) + str(i)
                row = {
                    "commit": f"{lang}{i:04d}",
                    "old_file": f"a{i}.{lang}",
                    "new_file": f"a{i}.{lang}",
                    "old_contents": f"x = {i}\ny = {name}\n",
                    "new_contents": f"x = {i + 1}\ny = {name}\n",
                    "subject": f"Bump x in {name}",
                    "message": f"Bump x in {name}\n",
                    "lang": display,
                    "license": "mit",
                    "repos": f"org/{lang}-repo{i}",
                }
                handle.write(json.dumps(row) + "\n")


@contextmanager
def training_hooks(*, setup=(), step=(), training=()):
    """A block during which the workflows call these hooks: `setup(run_plan, trainable)`
    after each run's set-up, `step(phase, step)` after each optimizer step and
    `training(run_plan, trainable)` after each run's training. Removed afterwards."""
    lists = (
        (execute.AFTER_SETUP_HOOKS, setup),
        (trainer.AFTER_STEP_HOOKS, step),
        (execute.AFTER_TRAINING_HOOKS, training),
    )
    for hooks, added in lists:
        hooks.extend(added)
    try:
        yield
    finally:
        for hooks, added in lists:
            for hook in added:
                hooks.remove(hook)


def ctrl_c_after(cli, args, stop_at):
    """Run the CLI with `args` and press Ctrl-C (a real SIGINT) after step `stop_at`: a
    (phase, step) pair, or a step number in any phase. The run finishes that step, saves a
    checkpoint and exits 130; returns its result."""

    def interrupt(phase, step):
        if stop_at in ((phase, step), step):
            os.kill(os.getpid(), signal.SIGINT)

    with training_hooks(step=[interrupt]):
        stopped = cli(*args)
    assert stopped.exit_code == 130, stopped.stderr[-3000:]
    return stopped


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    """(model folder with tokenizer, data folder)."""
    root = tmp_path_factory.mktemp("wf")
    model = root / "model"
    shutil.copytree(tiny_model_dir("llama"), model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 512}))
    make_tokenizer(model)
    write_commits(root / "commits")
    return model, root / "commits"


def common(world, workdir, steps: int = 4, *more: str) -> list[str]:
    model, data = world
    sets = {
        "training.max_steps": steps,
        "training.batch_size": 2,
        "training.eval_every_steps": 2,
        "training.save_every_steps": 2,
        "data.max_train_records": 8,
        "data.max_eval_records": 4,
        "data.max_total_tokens": 128,
        "data.max_prompt_tokens": 100,
        "data.max_target_tokens": 28,
    }
    args = ["--model", str(model), "--data", str(data), "--task", "commit-message"]
    args += ["--workdir", str(workdir)]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return [*more, *args]


def run_dirs(workdir) -> dict[str, object]:
    """run id prefix (method-label) -> run folder."""
    return {"-".join(p.name.split("-")[:-1]): p for p in (workdir / "runs").iterdir()}


# ---- train-adapters --------------------------------------------------------------------------


def test_train_adapters_writes_runs_reuses_them_and_force_retrains(cli, world, tmp_path):
    workdir = tmp_path / "w"
    args = common(world, workdir, 4, "train-adapters", "--langs", "java,ruby")
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    runs = run_dirs(workdir)
    assert set(runs) == {"task-adapter-java", "task-adapter-ruby"}
    for language in ("java", "ruby"):
        run = runs[f"task-adapter-{language}"]
        spec = parse_spec((run / "job.yaml").read_text())
        assert spec.data.languages == [language] and spec.method.name == "task-adapter"
        env = json.loads((run / "env.json").read_text())
        assert env["packages"]["torch"] and env["device"]["type"] in ("cpu", "cuda")
        assert {"python", "device", "git", "packages"} <= set(env)
        assert json.loads((run / "status.json").read_text())["status"] == "finished"
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3, 4]
        assert {"lr", "tokens_per_s", "peak_memory_mb"} <= set(metrics[0])
        assert [m["step"] for m in metrics if "eval_loss" in m] == [2, 4]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["trainable_params"] > 0 and summary["best_eval_loss"] is not None
        assert {"load_model_s", "load_data_s", "train_s", "export_s"} <= set(summary["timings"])
        assert summary["peak_memory_mb"] > 0
        assert (run / "final" / "adapter.safetensors").is_file()
        store = next((workdir / "adapters").glob(f"*/commit-message/task-adapter/{language}"))
        assert json.loads((store / "provenance.json").read_text())["run_id"] == run.name
        assert (
            load_file(str(store / "adapter.safetensors")).keys()
            == load_file(str(run / "final" / "adapter.safetensors")).keys()
        )
    assert "trained" in result.stdout

    java = runs["task-adapter-java"]
    before = (java / "metrics.jsonl").read_bytes(), (java / "status.json").read_bytes()
    again = cli(*args)
    assert again.exit_code == 0 and again.stdout.count("reused") == 2
    assert ((java / "metrics.jsonl").read_bytes(), (java / "status.json").read_bytes()) == before

    (java / "marker").write_text("old run")
    forced = cli(*common(world, workdir, 4, "train-adapters", "--langs", "java", "--force"))
    assert forced.exit_code == 0 and "trained" in forced.stdout
    assert not (java / "marker").exists()  # retrained from scratch in the same folder
    assert json.loads((java / "status.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("kind", ["task-adapter", "compacter", "lora"])
def test_only_the_adapter_trains_and_the_base_stays_byte_identical(cli, world, tmp_path, kind):
    seen = {}

    def after_setup(run_plan, trainable):
        seen["names"] = sorted(trainable.params)
        seen["initial"] = {n: p.detach().clone() for n, p in trainable.params.items()}
        seen["requires_grad"] = sorted(
            n for n, p in trainable.model.named_parameters() if p.requires_grad
        )

    def after_training(run_plan, trainable):
        seen["after"] = {n: p.detach().clone() for n, p in trainable.model.named_parameters()}

    # hidden 32: Compacter needs a bottleneck divisible by phm_dim 4
    extra = ["--set", "method.reduction_factor=4"] if kind == "compacter" else []
    with training_hooks(setup=[after_setup], training=[after_training]):
        result = cli(
            *common(world, tmp_path, 3, "train-adapters", "--langs", "ruby", "--kind", kind), *extra
        )
    assert result.exit_code == 0, result.stderr
    assert seen["names"] == seen["requires_grad"] and seen["names"]
    marker = "lora_" if kind == "lora" else ".adapters.ruby."
    assert all(marker in n or n.startswith("advfusion_phm_rules") for n in seen["names"])

    base = load_file(str(world[0] / "model.safetensors"))
    checked = 0
    for name, tensor in seen["after"].items():
        if name in seen["initial"]:
            continue
        original = (
            name.removeprefix("base_model.model.")
            .replace(".base_layer.", ".")
            .replace(".base.", ".")
        )
        assert torch.equal(tensor, base[original]), name
        checked += 1
    assert checked == len(base)  # every base weight accounted for, none changed
    moved = [n for n in seen["names"] if not torch.equal(seen["initial"][n], seen["after"][n])]
    assert moved  # training did change the adapter


# ---- fuse ------------------------------------------------------------------------------------


def test_fuse_trains_missing_adapters_then_fuses_and_reuses_everything(cli, world, tmp_path):
    workdir = tmp_path / "w"
    args = common(world, workdir, 3, "fuse", "--target", "ruby", "--langs", "java,ruby")
    first = cli(*args)
    assert first.exit_code == 0, first.stderr
    runs = run_dirs(workdir)
    assert set(runs) == {"task-adapter-java", "task-adapter-ruby", "adapterfusion-ruby"}
    fusion = runs["adapterfusion-ruby"]
    config = json.loads((fusion / "final" / "fusion_config.json").read_text())
    assert config["adapters"] == ["java", "ruby"] and config["masked"] == []
    env = json.loads((fusion / "env.json").read_text())
    assert env["adapters"]["java"]["source"] == runs["task-adapter-java"].name

    again = cli(*args)
    assert again.exit_code == 0
    assert again.stdout.count("reused") == 3  # two adapters from the store, the fusion run


def test_fuse_without_train_missing_names_what_is_missing_and_how_to_train_it(cli, world, tmp_path):
    line = one_line_error(
        cli(*common(world, tmp_path, 3, "fuse", "--langs", "java,ruby", "--no-train-missing"))
    )
    assert "java, ruby" in line
    assert "advfusion train-adapters --langs java,ruby --kind task-adapter" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_adapters_trained_on_another_base_are_refused(cli, world, tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(world[0], model)
    args = ["--model", str(model)]
    trained = cli(*common(world, tmp_path / "w", 2, "train-adapters", "--langs", "ruby"), *args)
    assert trained.exit_code == 0, trained.stderr
    shutil.rmtree(model)
    shutil.copytree(tiny_model_dir("qwen2"), model)  # same folder, another architecture
    make_tokenizer(model)
    line = one_line_error(
        cli(*common(world, tmp_path / "w", 2, "fuse", "--langs", "ruby,java", "--dry-run"), *args)
    )
    assert "was trained on base" in line and "qwen2" in line and "llama" in line


# ---- adv-fuse --------------------------------------------------------------------------------


def _slot_contributions(host, target):
    """Per fused place: (gate of the target slot, max |delta| the target slot contributes)."""
    slot = host.fused_names.index(target)
    found = []
    x = torch.randn(1, 3, host.hidden_size)
    for index in range(host.num_layers):
        for place in host.fusion_state.places:
            stack = host.place(index, place).stack
            z = stack(x.to(stack.gate.device))  # (1, 3, N, d)
            found.append((float(stack.gate[slot]), float(z[:, :, slot].abs().max())))
    return found


@contextmanager
def fusion_target_per_step(phases, target="ruby"):
    """A block recording, after each optimizer step of `phases` of a fusion run, (the masked
    languages, `_slot_contributions(host, target)`). Yields (seen: phase -> that list per
    step, hosts: the fusion host once set up)."""
    seen: dict[str, list] = {phase: [] for phase in phases}
    hosts = []

    def after_setup(run_plan, trainable):
        if run_plan.role == "fusion":
            hosts.append(trainable.host)

    def after_step(phase, step):
        if hosts and phase in seen:
            seen[phase].append((list(hosts[0].masked), _slot_contributions(hosts[0], target)))

    with training_hooks(setup=[after_setup], step=[after_step]):
        yield seen, hosts


@pytest.mark.parametrize("reset", [False, True])
def test_adv_fuse_masks_the_target_in_phase_one_and_restores_it(cli, world, tmp_path, reset):
    extra = ["--reset-optimizer"] if reset else []
    extra += ["--set", "training.keep_optimizer_state=true"]  # read back below
    with fusion_target_per_step(("phase1-masked", "phase2-restored")) as (seen, _):
        result = cli(*common(world, tmp_path, 4, "adv-fuse", "--langs", "java,ruby", *extra))
    assert result.exit_code == 0, result.stderr
    assert len(seen["phase1-masked"]) == 2 and len(seen["phase2-restored"]) == 2  # 4 = 2 + 2
    for masked, places in seen["phase1-masked"]:
        assert masked == ["ruby"]
        assert places and all(gate == 0.0 and delta == 0.0 for gate, delta in places)
    for masked, places in seen["phase2-restored"]:
        assert masked == []
        assert all(gate == 1.0 and delta > 0.0 for gate, delta in places)

    run = run_dirs(tmp_path)["advfusion-ruby"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    lrs = {phase: [m["lr"] for m in metrics if m["phase"] == phase and "lr" in m] for phase in seen}
    assert lrs["phase1-masked"] == lrs["phase2-restored"]  # the schedule restarts
    state = torch.load(
        run / "checkpoints" / "phase2-restored" / "end" / "state.pt", weights_only=True
    )
    adam_steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == ({2.0} if reset else {4.0})
    config = json.loads((run / "final" / "fusion_config.json").read_text())
    assert config["masked"] == []  # the exported fusion has the target restored


@pytest.mark.parametrize("stop_at", [("phase1-masked", 1), ("phase2-restored", 1)])
def test_adv_fuse_resumes_after_ctrl_c_to_the_same_weights(cli, world, tmp_path, stop_at):
    reference = tmp_path / "ref"
    args = lambda w: common(world, w, 6, "adv-fuse", "--langs", "java,ruby")  # noqa: E731
    assert cli(*args(reference)).exit_code == 0
    cut = tmp_path / "cut"
    shutil.copytree(reference / "adapters", cut / "adapters")  # same adapters, same run ids

    stopped = ctrl_c_after(cli, args(cut), stop_at)
    assert "Run the same command again to resume" in stopped.stderr
    run = run_dirs(cut)["advfusion-ruby"]
    assert run.name == run_dirs(reference)["advfusion-ruby"].name
    assert json.loads((run / "status.json").read_text())["status"] == "interrupted"
    plan = cli(*args(cut), "--dry-run")
    assert plan.exit_code == 0 and "resume (from step" in plan.stdout  # the plan says so

    resumed = cli(*args(cut))
    assert resumed.exit_code == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    expected = load_file(
        str(run_dirs(reference)["advfusion-ruby"] / "final" / "fusion.safetensors")
    )
    actual = load_file(str(run / "final" / "fusion.safetensors"))
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    steps = [
        (m["phase"], m["step"])
        for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if "loss" in m
    ]
    assert len(steps) == len(set(steps)) == 6  # no step logged twice


# ---- the embedded default: testbed data -----------------------------------------------------


@pytest.mark.parametrize("command", ["train-adapters", "fuse", "adv-fuse"])
def test_no_arguments_plan_the_embedded_default(cli, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    result = cli(command, "--dry-run")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "name_or_path: advfusion/tiny-code" in out and "source: testbed" in out
    for language in ("python", "javascript", "java", "go", "ruby"):
        assert f"task-adapter-{language}-" in out
    if command != "train-adapters":
        assert re.search(
            rf"{'advfusion' if command == 'adv-fuse' else 'adapterfusion'}-ruby-[0-9a-f]{{8}}", out
        )
    assert not (tmp_path / "advfusion-runs" / "runs").exists()


def test_train_adapters_on_testbed_data(cli, world, tmp_path):
    args = ["train-adapters", "--langs", "ruby", "--task", "commit-message"]
    args += ["--model", str(world[0]), "--workdir", str(tmp_path)]
    for key, value in {
        "training.max_steps": 2,
        "training.batch_size": 2,
        "data.max_train_records": 6,
        "data.max_eval_records": 4,
        "data.max_total_tokens": 256,
        "data.max_prompt_tokens": 180,
        "data.max_target_tokens": 72,
    }.items():
        args += ["--set", f"{key}={value}"]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    run = run_dirs(tmp_path)["task-adapter-ruby"]
    summary = json.loads((run / "summary.json").read_text())
    examples = summary["phases"][0]["examples"]["ruby"]
    assert 0 < examples["train"] <= 6 and 0 < examples["validation"] <= 4
    assert summary["best_eval_loss"] is not None


# ---- plans, locks and errors -----------------------------------------------------------------


def test_dry_run_prints_the_plan_and_loads_no_weights(cli, world, tmp_path, monkeypatch):
    def no_weights(*args, **kwargs):
        raise AssertionError("a dry run must not load weights")

    monkeypatch.setattr(execute, "load_base", no_weights)
    result = cli(*common(world, tmp_path, 4, "adv-fuse", "--langs", "java,ruby", "--dry-run"))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Resolved job spec" in out and "name: advfusion" in out
    for expected in (
        "task-adapter-java-",
        "task-adapter-ruby-",
        "advfusion-ruby-",
        "phase1-masked: 2",
        "phase2-restored: 2",
        "adapter: 4",
        "new",
    ):
        assert expected in out, expected
    assert not (tmp_path / "runs").exists()

    # 2 epochs instead of steps: an adapter sees 8 records / batch 2 = 4 steps per epoch;
    # AdvFusion splits the budget (1 epoch each) and --phase1-data all trains phase 1 on
    # both languages (16 records: 8 steps)
    variant = cli(
        *common(world, tmp_path, 4, "adv-fuse", "--langs", "java,ruby", "--dry-run"),
        *("--set", "training.max_steps=null", "--set", "training.epochs=2"),
        *("--phase1-data", "all"),
    )
    assert variant.exit_code == 0, variant.stderr
    for expected in ("adapter: 8", "phase1-masked: 8", "phase2-restored: 4", "java+ruby 16/2"):
        assert expected in variant.stdout, expected


def test_train_adapters_with_a_fusion_spec_trains_the_adapters_it_needs(cli, world, tmp_path):
    spec = tmp_path / "advfusion.yaml"
    spec.write_text(
        "method:\n  name: advfusion-compacter\n  adapter:\n    reduction_factor: 4\n"
        "data:\n  target: ruby\n"
    )
    result = cli(
        *common(world, tmp_path, 2, "train-adapters", "--langs", "java", "--dry-run"),
        *("--spec", str(spec)),
    )
    assert result.exit_code == 0, result.stderr
    assert "name: compacter" in result.stdout and "reduction_factor: 4" in result.stdout
    assert "compacter-java-" in result.stdout


def test_a_locked_run_is_refused_with_the_holder(cli, world, tmp_path):
    args = common(world, tmp_path, 2, "train-adapters", "--langs", "ruby")
    assert cli(*args).exit_code == 0
    run = run_dirs(tmp_path)["task-adapter-ruby"]
    with open(run / ".lock", "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.write("31337\n")
        handle.flush()
        line = one_line_error(cli(*args, "--force"))
    assert run.name in line and "pid 31337" in line


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train-adapters", "--kind", "lorra"], "Did you mean 'lora'"),
        (["train-adapters", "--langs", "java,pyhton"], "Did you mean 'python'"),
        (["fuse", "--kind", "lora"], "Unknown adapter kind 'lora'"),
        (["adv-fuse", "--set", "training.lr=-1"], "training.lr"),
        (["adv-fuse", "--set", "training.lrr=1"], "Did you mean 'lr'"),
        (["adv-fuse", "--mask-mode", "drop"], "mask_mode"),
        (["fuse", "--target", "go", "--langs", "java,ruby"], "'go' is not among"),
        (["adv-fuse", "--spec", "no-such-spec.yaml"], "no-such-spec.yaml"),
        (["train-adapters", "--preset", "papper"], "Did you mean 'paper'"),
    ],
)
def test_bad_flags_and_values_are_one_line_errors(cli, argv, expected):
    assert expected in one_line_error(cli(*argv))


def test_unwritable_workdir_is_a_one_line_error(cli, world, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_line_error(
        cli(*common(world, blocker / "w", 2, "train-adapters", "--langs", "ruby"))
    )
    assert "not writable" in line
