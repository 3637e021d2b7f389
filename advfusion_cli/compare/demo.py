"""`advfusion demo`: the whole pipeline on the embedded default, in one command and one display.

    testbed data -> an adapter per testbed language -> AdapterFusion and AdvFusion for the
    target -> LoRA / Compacter / task-adapter baselines -> the frozen base (the floor)
    -> evaluation on the same test items (pass@k for code generation) -> the comparison
    table with noise verdicts, results.* and plots

Budgeted for a 2-core CPU in under 10 minutes: short training stages, 100 test items and a
cap on new tokens (the settings below; every one is a flag). Runs go to their own workdir so
the demo never mixes with real experiments; rerunning it reuses everything already done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from advfusion_cli.compare.training import SpecInputs
from advfusion_cli.compare.workflow import CompareRequest, CompareResult

DEMO_WORKDIR = Path("advfusion-demo")
DEMO_METHODS = (
    "base",
    "base-1shot",
    "lora",
    "compacter",
    "task-adapter",
    "adapterfusion",
    "advfusion",
)


@dataclass(frozen=True)
class DemoSettings:
    """The demo's budget. Defaults keep the whole pipeline under 10 minutes on 2 CPU cores."""

    task: str = "code-generation"
    target: str | None = None  # None: the embedded default's target (ruby)
    methods: tuple[str, ...] = DEMO_METHODS
    seeds: tuple[int, ...] = (0,)
    limit: int = 100  # test items
    # 50 steps x batch 8 = 2 epochs of the target's 200 training examples (the authors' epoch
    # count); AdvFusion splits them over its two phases.
    steps: int = 50
    eval_records: int = 32  # validation items per language for the eval loss
    max_new_tokens: int = 192  # the testbed's longest answer is ~140 tokens; the CLI default is 512
    batch_size: int = 50  # prompts per generation batch (bigger batches amortise per-step cost)
    workdir: Path = DEMO_WORKDIR
    model: str | None = None  # None: the shipped tiny model
    extra_sets: tuple[str, ...] = field(default_factory=tuple)  # --set items (METHOD:key=v too)

    def sets(self) -> tuple[str, ...]:
        interval = max(1, self.steps // 2)
        return (
            f"training.max_steps={self.steps}",
            f"training.eval_every_steps={interval}",
            f"training.save_every_steps={self.steps}",
            f"data.max_eval_records={self.eval_records}",
            *self.extra_sets,
        )


def demo_request(settings: DemoSettings) -> CompareRequest:
    from advfusion_cli.evaluate.workflow import EvalRequest
    from advfusion_cli.inference.generation import DecodingSettings

    flags = {
        "model.name_or_path": settings.model,
        "data.task": settings.task,
        "data.target": settings.target,
        "output.workdir": settings.workdir,
    }
    return CompareRequest(
        methods=settings.methods,
        seeds=settings.seeds,
        inputs=SpecInputs.from_cli(None, None, settings.sets(), flags),
        evaluation=EvalRequest(
            limit=settings.limit,
            decoding=DecodingSettings(
                max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size
            ),
        ),
        title=None,
    )


def prepare_data(task: str, source: str = "testbed") -> None:
    """Generate (once) and read the testbed for the task, so later stages only read it."""
    from advfusion_cli.data import load_task

    load_task(task, source, None, "all")


def run_demo(settings: DemoSettings, progress=None) -> CompareResult:
    """The whole demo; `progress` is the one PipelineProgress shown from start to end."""
    from advfusion_cli.compare.progress import PipelineProgress
    from advfusion_cli.compare.workflow import compare

    owns = progress is None
    progress = progress or PipelineProgress(1, "advfusion demo")
    progress.open()
    try:
        progress.stage(f"testbed data ({settings.task})")
        prepare_data(settings.task)
        progress.stage_done()
        result = compare(demo_request(settings), progress=progress)
    finally:
        if owns:
            progress.close()
    result.elapsed_s = progress.elapsed_s
    return result


def next_steps(result: CompareResult, settings: DemoSettings) -> list[str]:
    """Commands worth running after the demo (printed under the table)."""
    workdir = settings.workdir
    return [
        f"open {result.folder / 'results.md'} (table, verdicts, plots)",
        f"advfusion inspect advfusion/{result.target} --workdir {workdir}",
        "advfusion demo --seeds 0,1  (a second seed: are the differences stable?)",
        f"advfusion compare --methods {','.join(settings.methods)} --task {settings.task} "
        f"--seeds 0,1,2 --limit 200  (the same comparison at full size, ./advfusion-runs)",
    ]
