"""Training-run promises that no default-tier test guarded, through the real CLI on the tiny
Llama and CommitPackFT-shaped data of test_workflow_cli:

- `--phase1-data all`: AdvFusion's phase 1 reads every language's records, each once an
  epoch (not one language's twice);
- checkpoint size: what `--dry-run` plans (trainable count, weight and optimizer bytes) is
  what a real run of an adapter, a fusion and LoRA writes, and a checkpoint holds nothing else
  of that size;
- run identity: `--report-to` added on resume is the same run; a run without early stopping
  keeps its id whatever early-stopping values the spec carries; a fusion's id ignores the
  adapters' learning rate;
- early stopping without periodic evaluation is refused before any work.
"""

from __future__ import annotations

import json
import re

import torch
from conftest import one_line_error
from safetensors import safe_open
from test_workflow_cli import common, ctrl_c_after, training_hooks
from test_workflow_cli import world as world  # the module fixture, reused

from advfusion_cli.workflows import checkpoint as ckpt

RUN_ID = r"[a-z0-9-]+-[0-9a-f]{8}"
OVERHEAD = 28 * 1024  # measured: 23.0 KiB for every run here, whatever its size
UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def planned_sizes(stdout: str) -> dict[str, tuple[int, float, float]]:
    """run id -> (trainable, weight bytes, optimizer bytes) from the plan's size lines."""
    found = {}
    pattern = (
        rf"^\s+({RUN_ID}): ([\d,]+) trainable, .*\(weights ([\d.]+) (\w+) \+ "
        rf"optimizer ([\d.]+) (\w+)\)$"
    )
    for match in re.finditer(pattern, stdout, re.MULTILINE):
        run, count, weight, wunit, moments, munit = match.groups()
        found[run] = (
            int(count.replace(",", "")),
            float(weight) * UNITS[wunit],
            float(moments) * UNITS[munit],
        )
    return found


def tensors_in(value) -> list[torch.Tensor]:
    """Every tensor anywhere inside a loaded state (dicts, lists, tuples)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in tensors_in(v)]
    return []


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def written_sizes(run) -> tuple[int, int, int, int, int]:
    """(trainable parameters, weight bytes, moment bytes, bytes of every tensor in state.pt,
    parameters the optimizer holds state for) of the run's last saved end state (kept whole
    with training.keep_optimizer_state)."""
    end = sorted((run / "checkpoints").glob("*/end"))[-1]  # a fusion's last phase
    with safe_open(str(end / ckpt.WEIGHTS_FILE), "pt") as handle:
        weights = [handle.get_tensor(name) for name in handle.keys()]  # noqa: SIM118
    state = ckpt.read_state(end)
    per_param = list(state["optimizer"]["state"].values())
    moments = [v for p in per_param for k, v in p.items() if k in ("exp_avg", "exp_avg_sq")]
    every = nbytes(tensors_in(state))
    return sum(w.numel() for w in weights), nbytes(weights), nbytes(moments), every, len(per_param)


def assert_written_as_planned(run, planned) -> None:
    count, weight_bytes, moment_bytes = planned
    summary = json.loads((run / "summary.json").read_text())
    written_count, weights, moments, every_tensor, params = written_sizes(run)
    assert written_count == count == summary["trainable_params"], run.name
    # the plan prints KiB to one decimal: within 0.05 KiB of the bytes written
    assert abs(weights - weight_bytes) <= 52, (run.name, weights, weight_bytes)
    assert abs(moments - moment_bytes) <= 52, (run.name, moments, moment_bytes)
    assert weights == 4 * count and moments == 8 * count  # fp32 weights and moments on CPU
    # state.pt holds the moments and small scalars (a step count per parameter, the
    # scheduler's): no other copy of anything parameter-sized
    assert moments <= every_tensor <= moments + 16 * params, (run.name, every_tensor, moments)
    # and the folder on disk: the planned bytes plus a fixed overhead (file headers, the
    # pickled position and scheduler, each process's RNG states), not another copy
    end = sorted((run / "checkpoints").glob("*/end"))[-1]
    on_disk = sum(f.stat().st_size for f in end.rglob("*") if f.is_file())
    assert weights + moments <= on_disk <= weights + moments + OVERHEAD, (run.name, on_disk)


# ---- AdvFusion's phase 1 on every language, and the sizes it writes ---------------------------


def fed_rows(seen: list[tuple[bool, torch.Tensor]], tokenizer) -> list[tuple[str, int]]:
    """(language, record number) of each training row the model was given, in order."""
    rows = []
    for training, ids in seen:
        if not training:
            continue
        for row in ids:
            text = "".join(tokenizer.convert_ids_to_tokens(row.tolist()))  # one char a token
            found = set(re.findall(r"a(\d+)\.(java|ruby)", text))
            assert len(found) == 1, text
            ((number, language),) = found
            rows.append((language, int(number)))
    return rows


def test_phase1_all_reads_every_language_once_an_epoch_and_writes_the_planned_sizes(
    cli, world, tmp_path
):
    from transformers import AutoTokenizer

    args = common(world, tmp_path, 2, "adv-fuse", "--langs", "java,ruby", "--phase1-data", "all")
    # 4 records a language: phase 1 is one epoch of 8 records in 4 steps of 2, phase 2 one
    # epoch of the 4 ruby records in 2 steps (the adapters train 2 steps)
    args += ["--set", "data.max_train_records=4", "--set", "training.keep_optimizer_state=true"]
    args += ["--set", "method.phase1_steps=4", "--set", "method.phase2_steps=2"]
    args += ["--set", "training.eval_every_steps=4", "--set", "data.max_eval_records=2"]
    plan = cli(*args, "--dry-run")
    assert plan.exit_code == 0, plan.stderr
    planned = planned_sizes(plan.stdout)
    assert len(planned) == 3, plan.stdout

    seen: list[tuple[bool, torch.Tensor]] = []
    phases: list[str] = []

    def after_setup(run_plan, trainable):
        if run_plan.role == "fusion":
            model = trainable.model
            model.register_forward_pre_hook(
                lambda module, a, kw: seen.append((module.training, kw["input_ids"].clone())),
                with_kwargs=True,
            )

    def after_step(phase, step):
        if phase.startswith("phase"):
            phases.append(phase)

    with training_hooks(setup=[after_setup], step=[after_step]):
        result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert phases == ["phase1-masked"] * 4 + ["phase2-restored"] * 2

    tokenizer = AutoTokenizer.from_pretrained(world[0])
    rows = fed_rows(seen, tokenizer)
    assert len(rows) == 12  # 6 steps of 2 rows
    phase1, phase2 = rows[:8], rows[8:]
    assert sorted({lang for lang, _ in phase1}) == ["java", "ruby"]
    assert len(set(phase1)) == 8  # every record of both languages, each once
    assert sum(lang == "java" for lang, _ in phase1) == 4
    assert {lang for lang, _ in phase2} == {"ruby"}
    assert {r for r in phase1 if r[0] == "ruby"} == set(phase2)  # the same ruby records

    runs = {run.name: run for run in (tmp_path / "runs").iterdir()}
    assert set(runs) == set(planned)
    for name, run in runs.items():
        assert_written_as_planned(run, planned[name])


def test_lora_writes_the_planned_sizes(cli, world, tmp_path):
    args = common(world, tmp_path, 2, "train-adapters", "--langs", "ruby", "--kind", "lora")
    args += ["--set", "training.keep_optimizer_state=true"]
    plan = cli(*args, "--dry-run")
    assert plan.exit_code == 0, plan.stderr
    ((run_id, planned),) = planned_sizes(plan.stdout).items()
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert_written_as_planned(tmp_path / "runs" / run_id, planned)


# ---- run identity ------------------------------------------------------------------------------


def plan_ids(cli, args) -> list[str]:
    plan = cli(*args, "--dry-run")
    assert plan.exit_code == 0, plan.stderr
    return re.findall(rf"^│ ({RUN_ID}) ", plan.stdout, re.MULTILINE)


def test_report_to_added_on_resume_continues_the_same_run(cli, world, tmp_path):
    args = common(world, tmp_path, 4, "train-adapters", "--langs", "ruby")
    ctrl_c_after(cli, args, 2)
    (run,) = (tmp_path / "runs").iterdir()
    assert plan_ids(cli, [*args, "--report-to", "tensorboard"]) == [run.name]
    resumed = cli(*args, "--report-to", "tensorboard")
    assert resumed.exit_code == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run.name]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert (tmp_path / "tensorboard" / run.name).is_dir()


def test_early_stopping_values_without_patience_keep_the_run_ids(cli, world, tmp_path):
    args = common(world, tmp_path, 4, "fuse", "--langs", "java,ruby")
    plain = plan_ids(cli, args)
    assert len(plain) == 3, plain
    unused = plan_ids(cli, [*args, "--set", "training.early_stopping_min_delta=0.5"])
    assert unused == plain  # early stopping off: the value cannot change what is trained
    used = plan_ids(cli, [*args, "--set", "training.early_stopping_patience=2"])
    assert set(used).isdisjoint(plain)  # on: every run trains differently


def test_a_fusions_id_ignores_the_adapters_learning_rate(world, tmp_path):
    """The fusion's identity covers the adapters it fuses (their run ids) and its own rate;
    with the same adapters, the rate only the adapter stages use leaves the id unchanged."""
    from test_workflow_lifecycle import plan_spec

    from advfusion_cli.workflows import stages

    adapters = {"adapters": {"java": "task-adapter-java-0000aaaa", "ruby": "task-adapter-ruby-0"}}

    def fusion_id(*sets: str) -> str:
        args = common(world, tmp_path, 4, "fuse", "--langs", "java,ruby")
        for item in sets:
            args += ["--set", item]
        return stages.run_id_for(plan_spec(args), "ruby", adapters)

    base = fusion_id("training.fusion_lr=0.001")
    assert fusion_id("training.fusion_lr=0.001", "training.lr=0.3") == base
    assert fusion_id("training.fusion_lr=0.002") != base  # its own rate does count
    # the adapters' ids move with their rate (so the store retrains them)
    args = common(world, tmp_path, 4, "fuse", "--langs", "java,ruby")
    spec, other = plan_spec(args), plan_spec([*args, "--set", "training.lr=0.3"])
    java = [stages.run_id_for(stages.adapter_stage_spec(s, "java"), "java") for s in (spec, other)]
    assert java[0] != java[1]


# ---- early stopping needs periodic evaluation -----------------------------------------------


def test_early_stopping_without_periodic_evaluation_is_refused_before_any_work(
    cli, world, tmp_path
):
    off = ["--set", "training.eval_every_steps=null", "--set", "training.eval_every_epochs=null"]
    patience = ["--set", "training.early_stopping_patience=2"]
    for command in (
        ["validate", *patience, *off],
        [*common(world, tmp_path, 4, "train-adapters", "--langs", "ruby"), *patience, *off],
    ):
        line = one_line_error(cli(*command), "training.early_stopping_patience")
        assert "periodic evaluation" in line and "eval_every_steps" in line
    assert not (tmp_path / "runs").exists()
    # the other side: with periodic evaluation the same patience plans, and without patience
    # no periodic evaluation is needed
    periodic = [*common(world, tmp_path, 4, "train-adapters", "--langs", "ruby"), *patience]
    assert cli(*periodic, "--dry-run").exit_code == 0
    assert cli("validate", *off).exit_code == 0
