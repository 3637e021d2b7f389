"""Progress in logs: when stderr is not a terminal, training and pipelines print plain lines
(start, one every PLAIN_EVERY_S seconds, evaluations, end) instead of a live bar that would
stay blank until the end. Time comes from a fake clock, so the lines are exact."""

from __future__ import annotations

import io

from rich.console import Console

from advfusion_cli.compare.progress import PipelineProgress
from advfusion_cli.workflows.progress import PLAIN_EVERY_S, PhaseProgress, Throttle


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=200, highlight=False), buffer


def record(loss: float) -> dict:
    return {"loss": loss, "lr": 1e-4, "tokens_per_s": 1234.0, "peak_memory_mb": 2048.0}


def test_throttle_is_due_first_then_every_interval():
    clock = FakeClock()
    throttle = Throttle(every_s=30, clock=clock)
    seen = []
    for t in (0, 10, 29.9, 30, 45, 60.5, 61):
        clock.now = 1000 + t
        seen.append(throttle.due())
    assert seen == [True, False, False, True, False, True, False]


def test_training_in_a_log_prints_start_throttled_steps_eval_and_end():
    out, buffer = console(terminal=False)
    clock = FakeClock()
    progress = PhaseProgress(out, clock=clock)
    assert progress.plain
    progress.start("adapter", "ruby adapter", total=100, completed=0)
    for step in range(1, 101):
        clock.now += 1.0  # one second a step: a line every 30 steps
        progress.update(step, record(2.0 - step / 100))
        if step == 50:
            progress.note_eval(step, 1.25, improved=True)
    progress.finish(1.25)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "ruby adapter: 100 steps"
    steps = [line for line in lines if ": step " in line and "eval" not in line]
    assert [line.split()[3] for line in steps] == ["30/100", "60/100", "90/100"]
    assert steps[0] == (
        "ruby adapter: step 30/100 (30%)  loss 1.7000  lr 1.00e-04  1,234 tok/s  mem 2.00 GiB"
        "  ETA 1:10"
    )
    assert "ruby adapter: step 50 eval loss 1.2500 (best)" in lines
    assert lines[-1] == "ruby adapter: finished 100 steps in 1:40, best eval loss 1.2500"
    assert len(lines) == 6  # never a line per step


def test_a_resumed_phase_says_so_and_times_only_the_new_steps():
    out, buffer = console(terminal=False)
    clock = FakeClock()
    progress = PhaseProgress(out, clock=clock)
    progress.start("phase2-restored", "phase 2: ruby restored", total=200, completed=100)
    clock.now += PLAIN_EVERY_S
    progress.update(150, record(1.0))  # 50 steps in 30 s: 50 more take 30 s
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "phase 2: ruby restored: 200 steps, resuming at step 100"
    assert lines[1].endswith("ETA 0:30")


def test_on_a_terminal_the_live_bar_is_used_instead():
    out, buffer = console(terminal=True)
    progress = PhaseProgress(out, clock=FakeClock())
    assert not progress.plain
    progress.start("adapter", "ruby adapter", total=10, completed=0)
    progress.update(5, record(1.0))
    progress.finish(None)
    assert "ruby adapter: 10 steps" not in buffer.getvalue()
    assert "ruby adapter" in buffer.getvalue()  # drawn by the bar


def test_a_pipeline_in_a_log_prints_each_stage_and_throttled_work():
    out, buffer = console(terminal=False)
    clock = FakeClock()
    pipeline = PipelineProgress(2, "advfusion demo", out, clock=clock)
    pipeline.open()
    pipeline.stage("train task-adapter ruby")
    pipeline.start("adapter", "ruby adapter", total=60, completed=0)
    for step in range(1, 61):
        clock.now += 1.0
        pipeline.update(step, record(1.0))
    pipeline.finish(None)
    pipeline.stage_done("trained task-adapter ruby: task-adapter-ruby-1234abcd")
    pipeline.stage("evaluate task-adapter ruby")
    pipeline.begin("generate 10 items", 10)
    for _ in range(10):
        clock.now += 4.0
        pipeline.advance()
    pipeline.end()
    pipeline.stage_done("evaluated task-adapter ruby")
    pipeline.close()
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    assert lines[0] == "[1/2] train task-adapter ruby"
    assert lines[1].startswith("      train ruby adapter: step 30/60  loss 1.000")
    assert lines[2].startswith("      train ruby adapter: step 60/60")
    assert lines[3] == "[1/2] trained task-adapter ruby: task-adapter-ruby-1234abcd (1:00)"
    assert lines[4] == "[2/2] evaluate task-adapter ruby"
    assert lines[5] == "      generate 10 items: 8/10"  # 32 s after the stage began
    assert lines[6] == "[2/2] evaluated task-adapter ruby (0:40)"
    assert "advfusion demo" in lines[-1]  # the final display, drawn once
