"""Evaluation that survives: generations are journaled per batch, an evaluation interrupted
mid-run resumes at the first missing item (a torn last line is cut off) and ends with the
same predictions.jsonl as an uninterrupted one; generation halves its batch on CUDA
out-of-memory and gives the un-failed outputs; inference autocasts only on CUDA."""

from __future__ import annotations

import pytest
import torch
from test_evaluate_support import make_model, write_translation

from advfusion_cli.errors import UserError
from advfusion_cli.evaluate.journal import JOURNAL_FILE, GenerationJournal
from advfusion_cli.evaluate.workflow import EvalRequest, evaluate
from advfusion_cli.inference.generation import (
    DecodingSettings,
    GenerationStats,
    StopRule,
    generate_completions,
)
from advfusion_cli.inference.precision import autocast_dtype
from advfusion_cli.inference.resolve import RunRef


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A base-model spec over a tiny translation set (no training needed)."""
    from advfusion_cli.evaluate.cli import base_spec

    root = tmp_path_factory.mktemp("resume")
    model = make_model(root / "model", seed=5)
    data = write_translation(root / "trans", {"train": 2, "valid": 1, "test": 6})
    flags = {
        "model.name_or_path": str(model),
        "data.source": str(data),
        "data.task": "code-translation",
        "data.target": "ruby",
        "output.workdir": str(root / "work"),
    }
    return base_spec(None, None, None, flags)


def request(**more) -> EvalRequest:
    decoding = DecodingSettings(max_new_tokens=8, batch_size=2)
    return EvalRequest(limit=6, decoding=decoding, execute=False, **more)


class Killed(Exception):
    pass


def test_interrupted_evaluation_resumes_and_ends_identical(base, tmp_path, monkeypatch):
    whole = evaluate(RunRef("base", target="ruby"), request(), spec=base, out=tmp_path / "whole")
    expected = (whole.folder / "predictions.jsonl").read_text()
    assert whole.record["generation"] == {"batch_size": 2, "oom_backoffs": 0, "resumed_items": 0}
    assert whole.record["precision"] == "none"  # CPU: the unchanged fp32 path
    assert not (whole.folder / JOURNAL_FILE).exists()  # removed once metrics.json is written

    # Die right after the second batch reached the journal, like a kill between batches.
    real_append = GenerationJournal.append
    calls = []

    def dying_append(self, finished):
        real_append(self, finished)
        calls.append(len(finished))
        if len(calls) == 2:
            raise Killed

    monkeypatch.setattr(GenerationJournal, "append", dying_append)
    folder = tmp_path / "broken"
    with pytest.raises(Killed):
        evaluate(RunRef("base", target="ruby"), request(), spec=base, out=folder)
    monkeypatch.setattr(GenerationJournal, "append", real_append)
    assert not (folder / "metrics.json").exists() and not (folder / "predictions.jsonl").exists()
    lines = (folder / JOURNAL_FILE).read_text().splitlines()
    assert len(lines) == 1 + 4  # header + two batches of 2
    with (folder / JOURNAL_FILE).open("a") as handle:  # a kill in the middle of a write
        handle.write('{"index": 0, "id": "x", "texts": ["half')

    generated = []

    def counting_append(self, finished):
        generated.extend(i for i, _ in finished)
        real_append(self, finished)

    monkeypatch.setattr(GenerationJournal, "append", counting_append)
    resumed = evaluate(RunRef("base", target="ruby"), request(), spec=base, out=folder)
    assert resumed.record["generation"]["resumed_items"] == 4
    assert len(generated) == resumed.record["n_items"] - 4 == 2  # only the missing items
    assert (folder / "predictions.jsonl").read_text() == expected
    assert resumed.record["scores"] == whole.record["scores"]
    assert not (folder / JOURNAL_FILE).exists()


def test_a_journal_of_other_settings_is_started_over(tmp_path):
    first = GenerationJournal.open(tmp_path, "key-a", ["a", "b"])
    from advfusion_cli.inference.generation import Completion

    first.append([(0, Completion(["x"], 3, [1]))])
    assert GenerationJournal.open(tmp_path, "key-a", ["a", "b"]).done[0].texts == ["x"]
    assert GenerationJournal.open(tmp_path, "key-b", ["a", "b"]).done == {}
    assert GenerationJournal.open(tmp_path, "key-b", ["a", "b"]).done == {}  # rewritten header


def test_a_torn_tail_is_cut_so_a_second_resume_reads_every_whole_batch(tmp_path):
    from advfusion_cli.inference.generation import Completion

    ids = ["a", "b", "c"]
    GenerationJournal.open(tmp_path, "k", ids).append([(0, Completion(["x"], 3, [1]))])
    path = tmp_path / JOURNAL_FILE
    whole = path.read_bytes()
    path.write_bytes(whole + whole.splitlines(keepends=True)[-1].rstrip(b"\n"))  # no newline
    resumed = GenerationJournal.open(tmp_path, "k", ids)
    assert list(resumed.done) == [0] and path.read_bytes() == whole  # the unfinished line is cut
    resumed.append([(1, Completion(["y"], 2, [2]))])
    assert sorted(GenerationJournal.open(tmp_path, "k", ids).done) == [0, 1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = make_model(tmp_path_factory.mktemp("oom-model"), seed=3)
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(
        folder
    )


def _examples():
    from advfusion_cli.data.records import TaskExample

    prompts = ["def add(a, b):\n", "x = 1\n", "print(2)\n", "class A:\n", "y"]
    return [TaskExample(f"e{i}", "code-generation", "python", p, "") for i, p in enumerate(prompts)]


def test_out_of_memory_halves_the_batch_and_gives_the_unfailed_outputs(tiny, monkeypatch):
    model, tokenizer = tiny
    settings = DecodingSettings(max_new_tokens=6, batch_size=4)  # greedy: batch-independent
    unfailed = generate_completions(model, tokenizer, _examples(), settings, StopRule())

    real_generate = model.generate
    sizes = []

    def generate_with_oom(*args, **kwargs):
        rows = kwargs["input_ids"].shape[0]
        sizes.append(rows)
        if rows > 1:  # only one prompt at a time fits
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", generate_with_oom)
    stats = GenerationStats(settings.batch_size)
    failed = generate_completions(model, tokenizer, _examples(), settings, StopRule(), stats=stats)
    assert stats.oom_backoffs == 2 and stats.batch_size == 1  # 4 -> 2 -> 1, then it stays
    assert sizes[:3] == [4, 2, 1] and set(sizes[3:]) == {1}
    assert [c.texts for c in failed] == [c.texts for c in unfailed]
    assert [c.new_tokens for c in failed] == [c.new_tokens for c in unfailed]


def test_out_of_memory_at_batch_one_is_a_clear_error(tiny, monkeypatch):
    model, tokenizer = tiny

    def always_oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(model, "generate", always_oom)
    settings = DecodingSettings(max_new_tokens=8, batch_size=2)
    with pytest.raises(UserError, match="Out of GPU memory generating a single prompt"):
        generate_completions(model, tokenizer, _examples(), settings, StopRule())


def test_other_errors_are_not_retried(tiny, monkeypatch):
    model, tokenizer = tiny

    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(model, "generate", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        generate_completions(
            model, tokenizer, _examples(), DecodingSettings(max_new_tokens=4), StopRule()
        )


def test_autocast_follows_the_training_precision_on_cuda_only():
    assert autocast_dtype("auto", "cuda", bf16_supported=True) is torch.bfloat16
    assert autocast_dtype("bf16", "cuda", bf16_supported=False) is torch.bfloat16
    assert autocast_dtype("auto", "cuda", bf16_supported=False) is None
    assert autocast_dtype("fp32", "cuda", bf16_supported=True) is None
    assert autocast_dtype("auto", "cuda", enabled=False, bf16_supported=True) is None
    for precision in ("auto", "bf16", "fp32"):
        assert autocast_dtype(precision, "cpu", bf16_supported=True) is None
    assert EvalRequest(autocast=False).leaf().endswith("-noautocast")
    assert EvalRequest().leaf() == "test-all-greedy-512"


def test_generation_runs_under_the_autocast_it_is_given(tiny, monkeypatch):
    model, tokenizer = tiny
    seen = []
    real_generate = model.generate

    def spy(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu"))
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    settings = DecodingSettings(max_new_tokens=2, batch_size=8)
    generate_completions(model, tokenizer, _examples()[:2], settings, StopRule())
    generate_completions(
        model, tokenizer, _examples()[:2], settings, StopRule(), autocast=torch.bfloat16
    )
    assert seen == [False, True]


def test_a_resumed_sampled_generation_draws_what_an_unbroken_one_draws(tiny):
    model, tokenizer = tiny
    settings = DecodingSettings(max_new_tokens=6, batch_size=2, n=2, temperature=1.0, seed=9)
    unbroken = generate_completions(model, tokenizer, _examples(), settings, StopRule())
    journaled = {}

    def keep_first(finished):  # the first batch reaches the journal, then the process dies
        if not journaled:
            journaled.update(finished)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_completions(
            model, tokenizer, _examples(), settings, StopRule(), on_results=keep_first
        )
    assert len(journaled) == 2
    resumed = generate_completions(
        model, tokenizer, _examples(), settings, StopRule(), done=journaled
    )
    assert [c.texts for c in resumed] == [c.texts for c in unbroken]
    assert len({t for c in unbroken for t in c.texts}) > 2  # really sampled
