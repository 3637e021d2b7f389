"""A run's identity includes the examples it read: an edited training record retrains that
language's adapter (and the fusion over it), saying why; an unchanged rerun and a touched
file reuse everything."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from test_workflow_cli import common
from test_workflow_cli import world as world  # the module fixture, reused
from test_workflow_lifecycle import plan_spec

from advfusion_cli.workflows import task_data


@pytest.fixture(autouse=True)
def fresh_loads():
    """The CLI runs in this process: forget the per-process record loads between commands
    (each real command is a new process)."""
    task_data._load.cache_clear()
    task_data._source_root.cache_clear()
    yield
    task_data._load.cache_clear()
    task_data._source_root.cache_clear()


def edit_a_training_record(data, language: str, spec) -> str:
    """Change the subject of one record the adapter trains on; returns its id."""
    trained = task_data.load_examples(spec.data, language, "train")
    wanted = trained[0].id
    path = data / "data" / language / "data.jsonl"
    lines = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row["commit"] == wanted:
            row["subject"] = row["message"] = "Rename the counter everywhere"
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")
    return wanted


def test_an_edited_record_retrains_its_adapter_and_the_fusion_and_says_why(cli, world, tmp_path):
    from advfusion_cli.workflows.fuse import fuse

    model, shared = world
    data = tmp_path / "commits"
    shutil.copytree(shared, data)
    workdir = tmp_path / "w"
    args = common((model, data), workdir, 2, "fuse", "--target", "ruby", "--langs", "java,ruby")
    first = cli(*args)
    assert first.exit_code == 0, first.stderr
    store = next((workdir / "adapters").glob("*/commit-message/task-adapter"))
    recorded = json.loads((store / "ruby" / "provenance.json").read_text())["data"]
    java_recorded = json.loads((store / "java" / "provenance.json").read_text())["data"]

    again = cli(*args)
    assert again.exit_code == 0 and again.stdout.count("reused") == 3  # 2 adapters + fusion

    # a touched file: a new examples entry with the same examples, nothing retrains
    os.utime(data / "data" / "ruby" / "data.jsonl", ns=(1, 1))
    touched = fuse(plan_spec(args), dry_run=True).plan
    assert [r.state for r in touched.runs] == ["reuse"]  # only the fusion run is planned
    assert len(touched.reused_adapters) == 2

    edit_a_training_record(data, "ruby", plan_spec(args))
    task_data._load.cache_clear()
    plan = fuse(plan_spec(args), dry_run=True).plan
    assert [a.language for a in plan.reused_adapters] == ["java"]
    ruby, fusion = plan.runs
    assert (ruby.language, ruby.state) == ("ruby", "retrain")
    assert ruby.note == (
        "stored ruby adapter was trained on other ruby examples (data changed); "
        "data changed since it was trained: its examples differ"
    )
    assert ruby.store == store / "ruby"  # retrained in its slot, not beside it
    assert (fusion.state, fusion.note) == (
        "retrain",
        "data changed since it was trained: its examples differ",
    )

    retrained = cli(*args)
    assert retrained.exit_code == 0, retrained.stderr
    assert retrained.stdout.count("reused") == 1  # java only
    provenance = json.loads((store / "ruby" / "provenance.json").read_text())
    assert provenance["data"] != recorded and provenance["run_id"] == ruby.run.id
    identity = json.loads((ruby.run.path / "identity.json").read_text())
    assert identity["data"] == provenance["data"]
    assert json.loads((store / "java" / "provenance.json").read_text())["data"] == java_recorded

    task_data._load.cache_clear()
    settled = cli(*args)
    assert settled.exit_code == 0 and settled.stdout.count("reused") == 3


def test_the_digest_is_the_same_with_and_without_the_cache(world, tmp_path):
    """--no-cache computes the digest in memory: toggling it retrains nothing."""
    from advfusion_cli.data.cache import PreparedCache

    model, data = world
    spec = plan_spec(common(world, tmp_path, 2, "fuse", "--target", "ruby", "--langs", "java,ruby"))
    cached = task_data.data_fingerprint(spec.data, ["ruby"], PreparedCache(tmp_path / "c"))
    again = task_data.data_fingerprint(spec.data, ["ruby"], PreparedCache(tmp_path / "c"))
    in_memory = task_data.data_fingerprint(spec.data, ["ruby"], None)
    assert cached == again == in_memory
    both = task_data.data_fingerprint(spec.data, ["java", "ruby"], None)
    assert both != in_memory
    capped = spec.data.model_copy(update={"max_train_records": 3})
    assert task_data.data_fingerprint(capped, ["ruby"], None) != in_memory  # other rows read
