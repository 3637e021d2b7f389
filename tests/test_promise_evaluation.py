"""Evaluation promises that only unit tests (or none) guarded:

- the generation journal resumes only what this evaluation would generate: an evaluation
  interrupted after two batches and asked again into the same folder with other decoding,
  another stop rule, another max_prompt_tokens, another precision or another model starts
  over (no stale item reused) and ends as a fresh evaluation with those settings ends;
- the frozen base's evaluation with --report-to is a tracker run of its own, named
  `base-<target>-<evaluation>`, its ids recorded beside its metrics.json.
"""

from __future__ import annotations

import json

import pytest
from test_evaluate_support import make_model, write_translation
from test_tracking import scalars

from advfusion_cli.evaluate import workflow
from advfusion_cli.evaluate.journal import JOURNAL_FILE, GenerationJournal
from advfusion_cli.evaluate.workflow import EvalRequest, evaluate
from advfusion_cli.inference.generation import DecodingSettings
from advfusion_cli.inference.resolve import RunRef


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two tiny base models (other weights), translation data and custom-task records."""
    root = tmp_path_factory.mktemp("journal")
    records = root / "records"
    records.mkdir()
    rows = [
        {"language": "ruby", "doc": f"add {i} and {i + 1}", "code": f"puts {i} + {i + 1}"}
        for i in range(12)
    ]
    (records / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (records / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    return {
        "model": make_model(root / "model", seed=5),
        "other_model": make_model(root / "other", seed=6),
        "data": write_translation(root / "trans", {"train": 2, "valid": 1, "test": 6}),
        "records": records,
        "root": root,
    }


def spec_of(world, *sets: str, model: str = "model", custom: str | None = None):
    """A base-model spec: translation data, or the custom task with `custom` as its stop
    strings (a YAML list)."""
    from advfusion_cli.evaluate.cli import base_spec

    flags = {
        "model.name_or_path": str(world[model]),
        "data.target": "ruby",
        "output.workdir": str(world["root"] / "work"),
    }
    spec_path = None
    if custom is not None:
        spec_path = world["root"] / f"custom-{len(custom)}.yaml"
        spec_path.write_text(
            f"data:\n  source: {world['records']}\n  custom:\n"
            f"    template: {json.dumps('# Ruby: {doc}' + chr(10))}\n"
            f"    target_field: code\n    stop: {custom}\n"
        )
    else:
        flags |= {"data.source": str(world["data"]), "data.task": "code-translation"}
    return base_spec(spec_path, None, list(sets), flags)


def request(max_new_tokens: int = 4) -> EvalRequest:
    decoding = DecodingSettings(max_new_tokens=max_new_tokens, batch_size=2)
    return EvalRequest(limit=4, decoding=decoding, execute=False)


class Killed(Exception):
    pass


def interrupted(spec, folder, monkeypatch) -> None:
    """Evaluate into `folder` and die right after the first batch reached the journal."""
    real_append = GenerationJournal.append
    calls = []

    def dying_append(self, finished):
        real_append(self, finished)
        calls.append(1)
        if len(calls) == 1:
            raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(GenerationJournal, "append", dying_append)
        with pytest.raises(Killed):
            evaluate(RunRef("base", target="ruby"), request(), spec=spec, out=folder)
    assert len((folder / JOURNAL_FILE).read_text().splitlines()) == 1 + 2  # 2 items journaled


def bf16_autocast(monkeypatch):
    """The precision CUDA's bf16 autocast gives (CPU never autocasts on its own)."""
    import torch

    monkeypatch.setattr(workflow, "autocast_dtype", lambda *a, **k: torch.bfloat16)


# (what changes between the interrupted and the resumed evaluation): spec sets, model,
# max_new_tokens, bf16 autocast, custom task
CHANGES = {
    "decoding": ((), "model", 2, False, None),
    "max_prompt_tokens": (("data.max_prompt_tokens=120",), "model", 4, False, None),
    "model": ((), "other_model", 4, False, None),
    "precision": ((), "model", 4, True, None),
    "stop_rule": ((), "model", 4, False, '[" "]'),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_journal_of_other_settings_is_not_resumed(world, tmp_path, monkeypatch, change):
    sets, model, max_new_tokens, autocast, custom = CHANGES[change]
    folder = tmp_path / "out"
    interrupted(spec_of(world, custom="[]" if custom else None), folder, monkeypatch)

    changed = spec_of(world, *sets, model=model, custom=custom)
    if autocast:
        bf16_autocast(monkeypatch)
    resumed = evaluate(
        RunRef("base", target="ruby"), request(max_new_tokens), spec=changed, out=folder
    )
    assert resumed.record["generation"]["resumed_items"] == 0  # nothing stale reused
    assert not (folder / JOURNAL_FILE).exists()
    if change == "decoding":  # stale items would be 4 tokens long; these are all 2
        rows = [
            json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()
        ]
        assert [row["new_tokens"] for row in rows] == [[2]] * 4


def test_the_same_settings_do_resume(world, tmp_path, monkeypatch):
    """The other side: asked again as it was, the interrupted evaluation resumes."""
    folder = tmp_path / "out"
    interrupted(spec_of(world), folder, monkeypatch)
    resumed = evaluate(RunRef("base", target="ruby"), request(), spec=spec_of(world), out=folder)
    assert resumed.record["generation"]["resumed_items"] == 2


def test_the_base_models_scores_are_a_tracker_run_of_their_own(world, cli, tmp_path):
    result = cli(
        "evaluate", "--run", "base", "--target", "ruby", "--model", str(world["model"]),
        "--data", str(world["data"]), "--task", "code-translation", "--workdir", str(tmp_path),
        "--limit", "3", "--max-new-tokens", "8", "--report-to", "tensorboard",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (folder,) = (tmp_path / "evals").glob("base-ruby-*/test-3-greedy-8")
    record = json.loads((folder / "metrics.json").read_text())
    events = tmp_path / "tensorboard" / f"base-ruby-{folder.name}"
    board = tmp_path / "tensorboard"
    assert events.is_dir(), sorted(p.name for p in board.iterdir()) if board.is_dir() else None
    found = scalars(events)
    assert record["scores"]
    for metric, value in record["scores"].items():
        if value is not None:
            assert found[f"{folder.name}/{metric}"] == [(0, pytest.approx(value, rel=1e-6))]
    state = json.loads((folder / "tracking.json").read_text())
    assert state["trackers"] == ["tensorboard"]
    assert [p.name for p in board.iterdir()] == [events.name]
