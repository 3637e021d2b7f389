"""Generation split across processes, journaled per process, gathered on the main process.

    main reads every journal (any earlier attempt, any number of processes) -> all get it
    -> the batch plan over ALL items: prompts longest first, cut into batches of --batch-size
    -> the batches still to do are dealt like cards, back and forth (0..N-1, then N-1..0,
       ...): longest first, so the shares weigh about the same
    -> each process generates its batches, journals each one, feeds finished candidates to
       the execution feed (overlap), and adds to the shared progress counters
    -> all_gather: the main process holds every item's completion (original order) and result

Every batch is exactly the batch one process would generate (the same rows, the same
padding), and sampled candidates draw from per-candidate streams (inference/sampling.py), so
the completions are the same whatever the number of processes, and across a resume with
another number. Prompts that cannot fit are answered on the main process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from advfusion_cli.evaluate.journal import GenerationJournal, journal_name, read_journals
from advfusion_cli.evaluate.overlap import CandidateFeed
from advfusion_cli.evaluate.processes import EvalWorld, SharedCounters
from advfusion_cli.inference.generation import (
    Completion,
    GenerationStats,
    encode_prompts,
    generate_completions,
    generation_order,
    model_max_positions,
)

COUNTERS = ("items", "tokens", "programs")
WAIT_POLL_S = 0.05  # the main process's refresh while the others finish their shares

# A feed for this process's share: given the callback that counts programs run.
FeedFactory = Callable[[Callable[[int], None]], CandidateFeed | None]


def batch_plan(
    features: Sequence, batch_size: int, groups: Sequence[Sequence[int]] | None = None
) -> list[list[int]]:
    """The batches one process generates: the generation order cut every `batch_size`; with
    `groups` (item indices generated together, e.g. one stop rule each), each group's own
    order cut alike, group after group."""
    plan: list[list[int]] = []
    for group in groups if groups is not None else [range(len(features))]:
        group = list(group)
        order = [group[p] for p in generation_order([features[i] for i in group])]
        plan += [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    return plan


def rule_groups(rules: Sequence) -> list[tuple[object, list[int]]]:
    """(rule, item indices) per distinct stop rule, in order of first appearance: one
    generation call each (a batch never mixes rules)."""
    groups: dict = {}
    for index, rule in enumerate(rules):
        groups.setdefault(rule, []).append(index)
    return list(groups.items())


def dealt_to(position: int, size: int) -> int:
    """The process that generates the pending batch at `position`: dealt back and forth
    (0, 1, .., N-1, N-1, .., 1, 0, 0, 1, ..), so no process always gets the longer batch of
    each round (batches go longest first)."""
    turn, place = divmod(position, size)
    return place if turn % 2 == 0 else size - 1 - place


def process_share(
    batches: Sequence[Sequence[int]], done: set[int], rank: int, size: int
) -> list[int]:
    """Item indices process `rank` generates, ascending: its deal of the pending batches.
    A union of whole batches, so re-planning it alone gives the same batches."""
    pending = [batch for batch in batches if any(i not in done for i in batch)]
    return sorted(i for k, batch in enumerate(pending) if dealt_to(k, size) == rank for i in batch)


@dataclass
class GenerationOutcome:
    """What the main process scores (others get `completions=None`)."""

    completions: list[Completion] | None
    executions: dict[int, object] = field(default_factory=dict)  # item index -> feed result
    stats: dict = field(default_factory=dict)  # batch_size, oom_backoffs, resumed_items, ...


class LiveProgress:
    """The main process's line: items done, tokens/s, programs run, ETA, across processes."""

    def __init__(
        self,
        progress,
        counters: SharedCounters,
        total: int,
        start: int,
        world: int,
        executes: bool,
    ):
        self.progress = progress
        self.executes = executes
        self.counters = counters
        self.total = total
        self.start = start  # resumed and dropped items: done before anything was generated
        self.world = world
        self.started = time.perf_counter()

    def refresh(self) -> dict[str, int]:
        counts = self.counters.read()
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.progress.progress_to(self.start + counts["items"], self.total)
        parts = [f"{counts['tokens'] / elapsed:,.0f} tok/s"]
        if self.executes:
            parts.append(f"{counts['programs']} programs run")
        if self.world > 1:
            parts.append(f"{self.world} processes")
        self.progress.describe(", ".join(parts))
        return counts


def generate_items(
    world: EvalWorld,
    folder: Path,
    key: str,
    item_ids: Sequence[str],
    prompts: Sequence,
    model,
    tokenizer,
    settings,
    rule,
    *,
    max_prompt_tokens: int,
    autocast,
    progress,
    label: str = "generate",
    feed_factory: FeedFactory | None = None,
) -> GenerationOutcome:
    """Generate every item's candidates on `world`'s processes; see the module doc.

    `rule`: one stop rule for every item, or a list with one per item (items that share a
    rule are planned and generated together). `feed_factory`: this process's execution feed.
    """
    done: dict[int, Completion] = world.broadcast(
        read_journals(folder, key, item_ids) if world.is_main else None
    )
    features = encode_prompts(
        tokenizer, prompts, max_prompt_tokens, settings.max_new_tokens, model_max_positions(model)
    )
    groups = rule_groups(rule if isinstance(rule, list | tuple) else [rule] * len(prompts))
    batches = batch_plan(features, settings.batch_size, [indices for _, indices in groups])
    planned = {i for batch in batches for i in batch}
    dropped = [i for i in range(len(prompts)) if i not in planned]
    share = process_share(batches, set(done), world.rank, world.size)
    if world.is_main:
        share = sorted(share + dropped)  # cheap, no model call; the main process answers them
    journal = GenerationJournal.open(folder, key, item_ids, name=journal_name(world.rank))
    counters = world.counters(COUNTERS)
    to_generate = sum(1 for i in planned if i not in done)
    feed = feed_factory(lambda count: counters.add("programs", count)) if feed_factory else None
    start = len(done) + len(dropped)
    live = LiveProgress(progress, counters, len(prompts), start, world.size, feed is not None)
    stats = GenerationStats(settings.batch_size)
    try:
        if feed is not None and world.is_main:
            for index, completion in sorted(done.items()):  # resumed items still need a verdict
                feed.submit(index, completion.texts)

        def finished(part: list[int], rows: list[tuple[int, Completion]]) -> None:
            rows = [(part[position], completion) for position, completion in rows]
            journal.append(rows)
            if feed is not None:
                for index, completion in rows:
                    feed.submit(index, completion.texts)
            counters.add("items", len(rows))
            counters.add("tokens", sum(sum(c.new_tokens) for _, c in rows))

        def batch_done(_count: int) -> None:
            if world.is_main:
                live.refresh()

        progress.begin(label, len(prompts))
        live.refresh()
        mine = set(share)
        results: dict[int, Completion] = {}
        for group_rule, indices in groups:
            part = [i for i in indices if i in mine]  # ascending: whole batches of the plan
            got = generate_completions(
                model,
                tokenizer,
                [prompts[i] for i in part],
                settings,
                group_rule,
                max_prompt_tokens=max_prompt_tokens,
                on_batch=batch_done,
                done={p: done[i] for p, i in enumerate(part) if i in done},
                on_results=lambda rows, part=part: finished(part, rows),
                autocast=autocast,
                stats=stats,
            )
            results.update(zip(part, got, strict=True))
        if world.is_main and counters.store is not None:
            while live.refresh()["items"] < to_generate:  # the others are still generating
                time.sleep(WAIT_POLL_S)
        progress.end()
        generated = {i: c for i, c in results.items() if i not in done}
        if feed is not None:  # dropped prompts never reach `finished`: their empty answers
            for index in dropped if world.is_main else ():
                feed.submit(index, generated[index].texts)
        executions = feed.results() if feed is not None else {}
    finally:
        if feed is not None:
            feed.close()
    own = (generated, executions, {"batch_size": stats.batch_size, "oom": stats.oom_backoffs})
    gathered = world.all_gather(own)
    if not world.is_main:
        return GenerationOutcome(None)
    merged = dict(done)
    all_executions: dict[int, object] = {}
    for generated_part, executions_part, _ in gathered:
        merged.update(generated_part)
        all_executions.update(executions_part)
    outcome_stats = {
        "batch_size": min(part[2]["batch_size"] for part in gathered),
        "oom_backoffs": sum(part[2]["oom"] for part in gathered),
        "resumed_items": len(done),
    }
    if world.size > 1:
        outcome_stats["processes"] = world.size
    return GenerationOutcome(
        [merged[i] for i in range(len(prompts))], all_executions, outcome_stats
    )
