"""Real-run hygiene: each run releases its base model before the next one loads.

Live causal-LM instances are counted with the garbage collector every time a new one is
built (`PreTrainedModel.__init__` wrapped): a command that trains several runs in one
process must never hold more than the model of the run in progress.
"""

from __future__ import annotations

import gc
import json
import weakref

import pytest
from test_workflow_cli import common, ctrl_c_after, training_hooks
from test_workflow_cli import world as world  # the module fixture, reused


@pytest.fixture
def live_models(monkeypatch):
    """Wraps model construction; returns the list of live-model counts seen at each creation."""
    from transformers import PreTrainedModel

    created: weakref.WeakSet = weakref.WeakSet()
    counts: list[int] = []
    original = PreTrainedModel.__init__

    def counting_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if type(self).__name__.endswith("ForCausalLM"):  # not the inner LlamaModel
            gc.collect()
            created.add(self)
            counts.append(len(created))

    monkeypatch.setattr(PreTrainedModel, "__init__", counting_init)
    return counts


def test_fuse_with_missing_adapters_holds_one_base_at_a_time(cli, world, tmp_path, live_models):
    args = common(world, tmp_path, 2, "fuse", "--target", "ruby", "--langs", "java,python,ruby")
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert len(live_models) == 4  # three adapters, then the fusion
    assert max(live_models) == 1, live_models


@pytest.mark.slow  # ~25 s: trains and evaluates two methods
def test_multi_method_compare_holds_one_base_at_a_time(cli, tmp_path, live_models):
    from test_evaluate_support import make_model, training_args, write_translation

    model, data = make_model(tmp_path / "model"), write_translation(tmp_path / "trans")
    methods = "lora,adapterfusion"
    args = training_args(model, data, "code-translation", tmp_path / "work")
    result = cli(
        "compare",
        *args,
        "--langs",
        "java,ruby",
        "--methods",
        methods,
        "--limit",
        "2",
        "--max-new-tokens",
        "4",
        "--resamples",
        "10",
    )
    assert result.exit_code == 0, result.stderr
    assert len(live_models) >= 4  # lora, java + ruby adapters, the fusion (+ evaluations)
    assert max(live_models) == 1, live_models


def stray_moment_copies(trainable: dict) -> int:
    """Live tensors shaped like a trainable parameter that are neither a parameter, its
    gradient, nor state of a live optimizer: copies of optimizer moments nobody trains with."""
    import torch

    shapes = {tuple(p.shape) for p in trainable.values() if p.dim() == 2}
    gc.collect()
    owned = {p.grad.untyped_storage().data_ptr() for p in trainable.values() if p.grad is not None}
    live = [o for o in gc.get_objects() if isinstance(o, torch.optim.Optimizer)]
    for optimizer in live:
        for state in optimizer.state.values():
            owned |= {t.untyped_storage().data_ptr() for t in state.values() if torch.is_tensor(t)}
    stray = {
        o.untyped_storage().data_ptr()
        for o in gc.get_objects()
        if torch.is_tensor(o)
        and not isinstance(o, torch.nn.Parameter)
        and tuple(o.shape) in shapes
        and o.untyped_storage().data_ptr() not in owned
    }
    return len(stray)


@pytest.mark.parametrize(
    "case", ["reset-optimizer", pytest.param("carry-resumed", marks=pytest.mark.slow)]
)
def test_adv_fuse_phase_two_holds_one_copy_of_optimizer_state(cli, world, tmp_path, case):
    """Phase 2 trains with one optimizer state: phase 1's is handed over (carry) or freed
    (reset), also when phase 2 resumes from its own checkpoint."""

    extra = ["--reset-optimizer"] if case == "reset-optimizer" else []
    args = common(world, tmp_path, 4, "adv-fuse", "--langs", "java,ruby", *extra)
    fusion: dict = {}
    strays: list[int] = []

    def after_setup(run_plan, trainable):
        if run_plan.role == "fusion":
            fusion["params"] = trainable.params

    def after_step(phase, step):
        if phase == "phase2-restored" and step == 2 and fusion:  # one scan: it is slow
            strays.append(stray_moment_copies(fusion["params"]))

    with training_hooks(setup=[after_setup], step=[after_step]):
        if case == "carry-resumed":
            ctrl_c_after(cli, args, ("phase2-restored", 1))
            strays.clear()  # measure the resumed session
        result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert strays and max(strays) == 0, strays


def _step_checkpoint_counts(run_dirs_seen: list, counts: list):
    def after_step(phase, step):
        for folder in run_dirs_seen:
            counts.append(len(list((folder / "checkpoints" / phase).glob("step-*"))))

    return after_step


@pytest.mark.parametrize("keep", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_retention_keeps_n_checkpoints_drops_finished_optimizer_state_and_plans_sizes(
    cli, world, tmp_path, keep
):
    """keep_checkpoints bounds the step checkpoints on disk; a finished run's end state has no
    optimizer state; the dry run's predicted size is the trainable count and bytes written."""
    import re

    from advfusion_cli.workflows import checkpoint as ckpt

    args = common(world, tmp_path, 4, "train-adapters", "--langs", "ruby")
    args += ["--set", "training.save_every_steps=1", "--set", f"training.keep_checkpoints={keep}"]
    plan = cli(*args, "--dry-run")
    assert plan.exit_code == 0, plan.stderr
    predicted = re.search(r"task-adapter-ruby-\w+: ([\d,]+) trainable, .*", plan.stdout)
    assert predicted, plan.stdout
    runs, counts, sizes = [], [], []

    def after_setup(run_plan, trainable):
        runs.append(run_plan.run.path)

    def checkpoint_bytes(phase, step):
        latest = ckpt.latest_checkpoint(runs[0] / "checkpoints" / phase)
        if latest is not None:
            files = (ckpt.WEIGHTS_FILE, ckpt.STATE_FILE)
            sizes.append(sum((latest / name).stat().st_size for name in files))

    count_hook = _step_checkpoint_counts(runs, counts)
    with training_hooks(setup=[after_setup], step=[count_hook, checkpoint_bytes]):
        result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert counts == [1, min(2, keep), min(3, keep), min(3, keep)], counts
    assert not list((runs[0] / "checkpoints" / "adapter").glob("step-*"))  # "end" replaced them
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert int(predicted.group(1).replace(",", "")) == summary["trainable_params"]
    expected = summary["trainable_params"] * 12  # fp32 weights + two fp32 AdamW moments
    assert expected <= sizes[0] <= expected * 1.1 + 16384, (sizes, expected)
    end = ckpt.read_state(runs[0] / "checkpoints" / "adapter" / "end")
    assert end["optimizer"] is None and end["position"]["step"] == 4


# ---- run identity ---------------------------------------------------------------------------


def plan_spec(args: list[str]):
    """The job spec a command line of `common()` + --set items resolves to."""
    from advfusion_cli.workflows.cli_common import resolve

    flags, sets = {"method.name": "adapterfusion"}, []
    pairs = dict(zip(args[1::2], args[2::2], strict=False))  # after the command name
    names = {"--model": "model.name_or_path", "--data": "data.source", "--task": "data.task"}
    names |= {"--workdir": "output.workdir", "--target": "data.target", "--langs": "data.languages"}
    for flag, key in names.items():
        flags[key] = pairs.get(flag)
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "--set":
            sets.append(value)
    return resolve(None, None, sets, flags)


def test_fuse_reuses_a_stored_adapter_only_when_trained_as_it_asks(cli, world, tmp_path):
    """A smoke-test adapter (other reduction, other seed) is not fused: the plan says why,
    the adapter is trained anew in its own store slot, and the old one stays untouched."""
    from conftest import snapshot

    from advfusion_cli.workflows.fuse import fuse

    workdir = tmp_path / "w"
    smoke = cli(*common(world, workdir, 2, "train-adapters", "--langs", "ruby"))
    assert smoke.exit_code == 0, smoke.stderr
    (default,) = (workdir / "adapters").glob("*/commit-message/task-adapter/ruby")
    before = snapshot(default)
    args = common(world, workdir, 2, "fuse", "--target", "ruby", "--langs", "java,ruby")
    args += ["--set", "method.adapter.reduction_factor=4", "--set", "training.seed=3"]

    plan = fuse(plan_spec(args), dry_run=True).plan  # what --dry-run prints
    (ruby,) = [r for r in plan.runs if r.language == "ruby"]
    assert ruby.state == "new" and ruby.note == (
        "stored ruby adapter was trained with method.reduction_factor 16, training.seed 0; "
        "this asks for 4, 3"
    )
    assert ruby.store.parent == default.parent and ruby.store.name.startswith("ruby-")

    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert snapshot(default) == before  # the smoke adapter is still there, unchanged
    (own,) = default.parent.glob("ruby-*")
    provenance = json.loads((own / "provenance.json").read_text())
    assert provenance["identity"]["method"]["reduction_factor"] == 4
    assert provenance["identity"]["training"]["seed"] == 3
    fusion = next((workdir / "runs").glob("adapterfusion-ruby-*"))
    env = json.loads((fusion / "env.json").read_text())
    assert env["adapters"]["ruby"]["folder"] == str(own)
    again = cli(*args)
    assert again.exit_code == 0 and again.stdout.count("reused") == 3  # both slots found


def test_a_changed_spec_under_an_old_run_name_is_refused_unless_forced(cli, world, tmp_path):
    from conftest import one_line_error, snapshot

    args = common(world, tmp_path, 2, "train-adapters", "--langs", "ruby")
    args += ["--set", "output.run_name=mine"]
    assert cli(*args).exit_code == 0
    run = tmp_path / "runs" / "mine"
    before = snapshot(run)
    assert "reused" in cli(*args).stdout  # the same job under its name: reused

    changed = [*args, "--set", "training.seed=5"]
    line = one_line_error(cli(*changed), "mine", "training.seed 0", "--force")
    assert "asks for 5" in line
    assert snapshot(run) == before
    forced = cli(*changed, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert json.loads((run / "identity.json").read_text())["identity"]["training"]["seed"] == 5


def test_resume_with_another_process_count_is_refused(cli, world, tmp_path, monkeypatch):
    from conftest import one_line_error

    args = common(world, tmp_path, 4, "train-adapters", "--langs", "ruby")

    ctrl_c_after(cli, args, 2)
    (run,) = (tmp_path / "runs").iterdir()
    env = json.loads((run / "env.json").read_text())
    assert env["num_processes"] == 1
    assert env["revisions"]["model"] == {
        "name_or_path": str(world[0]),
        "requested": None,
        "resolved": None,  # a local folder has no hub commit
    }
    monkeypatch.setenv("WORLD_SIZE", "2")
    one_line_error(cli(*args, "--dry-run"), run.name, "1 process(es)", "with 2")
    monkeypatch.setenv("WORLD_SIZE", "1")
    resumed = cli(*args)
    assert resumed.exit_code == 0 and "resumed" in resumed.stdout


def test_revisions_are_pinnable_and_part_of_the_identity():
    from advfusion_cli.spec.loading import parse_spec
    from advfusion_cli.workflows import stages

    plain = parse_spec("method: task-adapter\n")
    pinned = parse_spec("method: task-adapter\nmodel:\n  revision: v1.0\n")
    assert "revision" not in stages.identity(plain)["model"]  # old run ids stay as they were
    assert stages.run_id_for(plain, "ruby") != stages.run_id_for(pinned, "ruby")
    kept = parse_spec("method: task-adapter\ntraining:\n  keep_checkpoints: 3\n")
    assert stages.run_id_for(plain, "ruby") == stages.run_id_for(kept, "ruby")
