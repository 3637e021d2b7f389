"""The pieces that make N processes give what one gives: the batch plan and its shares
(whole batches, dealt round-robin, re-planned alone into the same batches), per-candidate
sampling streams (a written-out sampler gives the same tokens; the batch does not matter),
and the shared counters of the progress line."""

from __future__ import annotations

import hashlib

import pytest
import torch
from test_evaluate_support import make_model

from advfusion_cli.data.encoding import DroppedExample, encode_prompt_for_generation
from advfusion_cli.data.records import TaskExample
from advfusion_cli.evaluate.distributed import batch_plan, dealt_to, process_share
from advfusion_cli.evaluate.processes import EvalWorld, SharedCounters
from advfusion_cli.inference.generation import (
    DecodingSettings,
    StopRule,
    encode_prompts,
    generate_completions,
    model_max_positions,
)
from advfusion_cli.inference.sampling import candidate_seed

PROMPTS = ["def add(a, b):\n", "x = 1\n", "print(2)\n", "class A:\n", "y", "for i in range(3):\n"]


def features(lengths: list[int | None]) -> list:
    """Encoded prompts of these token counts (None: a prompt that did not fit)."""
    return [DroppedExample("too long") if n is None else {"input_ids": [0] * n} for n in lengths]


def test_the_plan_takes_the_longest_prompts_first_and_leaves_dropped_ones_out():
    plan = batch_plan(features([3, 9, None, 5, 9, 1, 4]), batch_size=2)
    assert plan == [[1, 4], [3, 6], [0, 5]]  # 9, 9 (ties keep their order), 5, 4, 3, 1


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_shares_split_the_pending_batches_and_replan_into_the_same_batches(size):
    lengths = [7, 3, 3, 8, 1, 6, 6, 2, 9, 5, 4]
    plan = batch_plan(features(lengths), batch_size=3)
    done = set(plan[1])  # a batch journaled before an interruption
    shares = [process_share(plan, done, rank, size) for rank in range(size)]
    pending = [b for b in plan if b != plan[1]]
    assert sorted(i for share in shares for i in share) == sorted(i for b in pending for i in b)
    # dealt back and forth: of 3 pending batches, 2 processes get 0 | 1, 2; 3 get 0 | 1 | 2
    deal = [[k for k in range(len(pending)) if dealt_to(k, size) == r] for r in range(size)]
    assert sorted(k for ks in deal for k in ks) == list(range(len(pending)))
    assert (
        deal == {1: [[0, 1, 2]], 2: [[0], [1, 2]], 3: [[0], [1], [2]], 4: [[0], [1], [2], []]}[size]
    )
    assert [dealt_to(k, 2) for k in range(6)] == [0, 1, 1, 0, 0, 1]
    for rank, share in enumerate(shares):
        mine = [pending[k] for k in deal[rank]]
        assert share == sorted(i for b in mine for i in b)
        # A share planned alone (as its process plans it) gives exactly its batches.
        alone = batch_plan(features([lengths[i] for i in share]), batch_size=3)
        assert [[share[p] for p in batch] for batch in alone] == mine


def test_a_candidate_seed_is_the_documented_digest():
    digest = hashlib.sha256(b"advfusion-sample/5/MultilingualTrans:test:17/2").digest()
    expected = int.from_bytes(digest[:8], "big") & (2**63 - 1)
    assert candidate_seed(5, "MultilingualTrans:test:17", 2) == expected
    assert candidate_seed(5, "a", 0) != candidate_seed(5, "a", 1) != candidate_seed(6, "a", 1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = make_model(tmp_path_factory.mktemp("sampling-model"), seed=3)
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(
        folder
    )


def examples(prompts=PROMPTS) -> list[TaskExample]:
    return [TaskExample(f"e{i}", "code-generation", "python", p, "") for i, p in enumerate(prompts)]


@torch.no_grad()
def sampled_reference(model, tokenizer, example, seed, candidate, temperature, steps):
    """Sampling written out: full forward, no cache, logits / T, softmax, one uniform draw
    from the candidate's own generator, the first token whose cumulative mass exceeds it."""
    ids = encode_prompt_for_generation(tokenizer, example)["input_ids"]
    generator = torch.Generator().manual_seed(candidate_seed(seed, example.id, candidate))
    new: list[int] = []
    for _ in range(steps):
        logits = model(torch.tensor([ids + new])).logits[0, -1].float()
        probs = torch.softmax(logits / temperature, dim=-1).double()
        cdf = probs.cumsum(-1)
        draw = float(torch.rand(1, generator=generator, dtype=torch.float64)) * float(cdf[-1])
        token = int((cdf <= draw).sum())
        new.append(token)
        if token == tokenizer.eos_token_id:
            break
    return StopRule().apply(tokenizer.decode(new, skip_special_tokens=True))


def test_sampling_draws_each_candidate_from_its_own_stream(tiny):
    model, tokenizer = tiny
    settings = DecodingSettings(max_new_tokens=6, n=3, temperature=0.8, seed=4, batch_size=4)
    batched = generate_completions(model, tokenizer, examples(), settings, StopRule())
    for example, completion in zip(examples(), batched, strict=True):
        expected = [sampled_reference(model, tokenizer, example, 4, j, 0.8, 6) for j in range(3)]
        assert completion.texts == expected
    assert len({t for c in batched for t in c.texts}) > len(PROMPTS)  # really sampled


def test_sampled_candidates_do_not_depend_on_the_batch(tiny):
    model, tokenizer = tiny
    settings = DecodingSettings(max_new_tokens=6, n=2, temperature=1.0, seed=9, batch_size=4)
    whole = generate_completions(model, tokenizer, examples(), settings, StopRule())
    one_by_one = DecodingSettings(max_new_tokens=6, n=2, temperature=1.0, seed=9, batch_size=1)
    alone = generate_completions(model, tokenizer, examples(), one_by_one, StopRule())
    part = generate_completions(model, tokenizer, examples()[3:], settings, StopRule())
    assert [c.texts for c in alone] == [c.texts for c in whole]
    assert [c.texts for c in part] == [c.texts for c in whole[3:]]


class FakeStore:
    """The key-value store's `add` (what torch.distributed's stores offer)."""

    def __init__(self):
        self.values: dict[str, int] = {}

    def add(self, key: str, amount: int) -> int:
        self.values[key] = self.values.get(key, 0) + amount
        return self.values[key]


def test_counters_add_up_over_processes_through_the_store():
    store = FakeStore()
    main = SharedCounters("eval/1", ("items", "tokens"), store)
    other = SharedCounters("eval/1", ("items", "tokens"), store)
    main.add("items", 2)
    other.add("items", 3)
    other.add("tokens", 40)
    assert main.read() == {"items": 5, "tokens": 40}
    alone = SharedCounters("eval/2", ("items",))
    alone.add("items", 4)
    assert alone.read() == {"items": 4}


def test_one_process_is_its_own_world():
    world = EvalWorld()
    assert world.is_main and not world.distributed
    assert world.broadcast({"a": 1}) == {"a": 1} and world.all_gather(3) == [3]
    world.barrier()


def _generate_items(model, tokenizer, folder, feed_factory=None, batch_size=2, items=None):
    from advfusion_cli.evaluate.distributed import generate_items
    from advfusion_cli.evaluate.progress import NullEvalProgress

    items = items or examples()
    return generate_items(
        EvalWorld(),
        folder,
        "key",
        [e.id for e in items],
        items,
        model,
        tokenizer,
        DecodingSettings(max_new_tokens=4, batch_size=batch_size),
        StopRule(),
        max_prompt_tokens=4096,
        autocast=None,
        progress=NullEvalProgress(),
        feed_factory=feed_factory,
    )


def test_finished_batches_reach_the_feed_while_later_batches_generate(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    events: list[tuple] = []
    real_generate = model.generate

    def recording_generate(*args, **kwargs):
        events.append(("generate", kwargs["input_ids"].shape[0]))
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", recording_generate)

    class RecordingFeed:  # any feed: submit per item, results at the end
        def __init__(self, on_executed):
            self.on_executed = on_executed

        def submit(self, index, candidates):
            events.append(("submit", index))
            self.on_executed(1)

        def results(self):
            return {index: f"verdict {index}" for kind, index in events if kind == "submit"}

        def close(self):
            events.append(("close",))

    outcome = _generate_items(model, tokenizer, tmp_path, RecordingFeed)
    kinds = [event[0] for event in events]
    # 6 prompts, batches of 2: each batch's items are submitted before the next batch runs
    assert kinds == ["generate", "submit", "submit"] * 3 + ["close"]
    assert outcome.executions == {i: f"verdict {i}" for i in range(len(PROMPTS))}
    alone = generate_completions(
        model, tokenizer, examples(), DecodingSettings(max_new_tokens=4, batch_size=2), StopRule()
    )
    assert [c.texts for c in outcome.completions] == [c.texts for c in alone]
    assert outcome.stats == {"batch_size": 2, "oom_backoffs": 0, "resumed_items": 0}


class KeepingFeed:
    def __init__(self, on_executed):
        self.submitted: dict[int, list[str]] = {}

    def submit(self, index, candidates):
        self.submitted[index] = list(candidates)

    def results(self):
        return {index: len(texts) for index, texts in self.submitted.items()}

    def close(self): ...


def test_a_prompt_that_cannot_fit_still_reaches_the_feed(tiny, tmp_path):
    """Its empty answer must get a verdict too (it fails without running), as every item's."""
    model, tokenizer = tiny
    long = TaskExample("long", "code-generation", "python", "y" * 600, "")  # > 512 positions
    outcome = _generate_items(model, tokenizer, tmp_path, KeepingFeed, items=[*examples(), long])
    assert outcome.completions[-1].dropped == "prompt too long"
    assert outcome.executions == {i: 1 for i in range(len(PROMPTS) + 1)}


def test_journals_of_other_processes_are_resumed_by_one(tiny, tmp_path):
    """Three processes journaled a batch each (one with a torn tail) before a kill: one
    process reads all three, generates only the rest, and ends with the unbroken result."""
    from advfusion_cli.evaluate.journal import GenerationJournal, journal_name

    model, tokenizer = tiny
    unbroken = _generate_items(model, tokenizer, tmp_path / "unbroken")
    ids = [e.id for e in examples()]
    features = encode_prompts(tokenizer, examples(), 4096, 4, model_max_positions(model))
    plan = batch_plan(features, 2)  # what every process plans
    folder = tmp_path / "killed"
    folder.mkdir()
    for rank in (1, 2):  # process r had generated batch r - 1 (its first of the deal)
        journal = GenerationJournal.open(folder, "key", ids, name=journal_name(rank))
        journal.append([(i, unbroken.completions[i]) for i in plan[rank - 1]])
    with (folder / journal_name(2)).open("a") as handle:
        handle.write('{"index": 0, "texts": ["to')  # killed in the middle of a write
    GenerationJournal.open(folder, "other settings", ids, name=journal_name(3)).append(
        [(i, unbroken.completions[i]) for i in plan[2]]
    )  # another evaluation's journal: ignored and removed
    generated = []
    real_append = GenerationJournal.append

    def counting(self, finished):
        generated.extend(i for i, _ in finished)
        real_append(self, finished)

    GenerationJournal.append = counting
    try:
        resumed = _generate_items(model, tokenizer, folder)
    finally:
        GenerationJournal.append = real_append
    assert sorted(generated) == sorted(plan[2])  # only the batch nobody had journaled
    assert resumed.stats["resumed_items"] == 4
    assert [c.texts for c in resumed.completions] == [c.texts for c in unbroken.completions]
    assert not (folder / journal_name(3)).exists()


class RecordingProgress:
    def __init__(self):
        self.lines: list[tuple] = []

    def progress_to(self, done, total):
        self.lines.append(("at", done, total))

    def describe(self, text):
        self.lines.append(("detail", text))


def test_the_live_line_counts_every_process(monkeypatch):
    from advfusion_cli.evaluate import distributed
    from advfusion_cli.evaluate.distributed import LiveProgress

    store = FakeStore()
    main = SharedCounters("eval/9", ("items", "tokens", "programs"), store)
    other = SharedCounters("eval/9", ("items", "tokens", "programs"), store)
    clock = iter([100.0, 102.0])
    monkeypatch.setattr(distributed.time, "perf_counter", lambda: next(clock))
    progress = RecordingProgress()
    live = LiveProgress(progress, main, total=10, start=3, world=2, executes=True)
    main.add("items", 2)
    other.add("items", 4)  # another process's batches
    other.add("tokens", 500)
    main.add("programs", 7)
    live.refresh()
    assert progress.lines == [
        ("at", 3 + 6, 10),  # resumed + every process's items
        ("detail", "250 tok/s, 7 programs run, 2 processes"),
    ]
