"""Training what a comparison needs, through the workflows, reusing every finished run.

One job is (method, seed, value of the varied setting). Its spec is built exactly as the
training commands build theirs (defaults < preset < --spec < --set < flags), so a run that
`train-adapters`, `fuse` or `adv-fuse` already trained is found and reused, and vice versa.

Before a fusion is planned, the target's adapter for the same seed and setting is trained or
reused; the fusion's plan then fuses only stored adapters trained with its own spec (seed and
setting included) and trains the others, so a rerun of the same comparison plans the same
fusion runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from advfusion_cli.compare.options import Vary
from advfusion_cli.errors import UserError
from advfusion_cli.spec.methods import METHOD_MODELS
from advfusion_cli.spec.schema import JobSpec
from advfusion_cli.workflows.runs import RunDir


@dataclass(frozen=True)
class SpecInputs:
    """What the command line gave for every job: spec file, preset, --set items, flags.

    `--set METHOD:key=value` items apply to that method's runs only (e.g.
    `compacter:method.reduction_factor=24`); they are kept apart in `method_sets`.
    """

    spec_path: Path | None = None
    preset: str | None = None
    sets: tuple[str, ...] = ()
    flags: dict = field(default_factory=dict)  # dotted key -> value (None = not given)
    method_sets: tuple[tuple[str, str], ...] = ()  # (method label, "key=value")

    @classmethod
    def from_cli(cls, spec_path, preset, sets, flags) -> SpecInputs:
        from advfusion_cli.inference.resolve import canonical_method

        shared, scoped = [], []
        for item in sets or ():
            head, colon, rest = item.partition(":")
            if colon and "=" not in head and "." not in head:
                scoped.append((canonical_method(head), rest.strip()))
            else:
                shared.append(item)
        return cls(spec_path, preset, tuple(shared), dict(flags), tuple(scoped))


@dataclass(frozen=True)
class Job:
    method: str  # label: lora, task-adapter, advfusion-compacter, base, ...
    seed: int | None  # None: the spec's own training.seed (the reference spec)
    vary_value: str | None

    @property
    def is_base(self) -> bool:
        return self.method.startswith("base")


@dataclass
class TrainedJob:
    job: Job
    spec: JobSpec
    run: RunDir | None  # None for base methods
    summary: dict = field(default_factory=dict)
    adapter_runs: dict[str, str] = field(default_factory=dict)  # fusion: language -> run id
    reused: bool = False


def _method_flags(method: str, target: str, languages: str | None) -> dict:
    if method.startswith("base"):
        return {"method.name": "task-adapter", "data.target": target}
    if method in ("lora", "compacter", "task-adapter"):
        return {"method.name": method, "data.languages": target, "data.target": target}
    name = method.removesuffix("-compacter")
    kind = "compacter" if method.endswith("-compacter") else "task-adapter"
    return {
        "method.name": name,
        "method.adapter_kind": kind,
        "data.target": target,
        "data.languages": languages,
    }


def _vary_applies(vary: Vary, method_name: str) -> bool:
    """A `method.*` setting only exists for some methods; others run once for every value."""
    section, _, rest = vary.key.partition(".")
    if section != "method":
        return True
    return rest.split(".")[0] in METHOD_MODELS[method_name].model_fields


def job_spec(
    job: Job, target: str, languages: str | None, inputs: SpecInputs, vary: Vary | None
) -> JobSpec:
    from advfusion_cli.workflows import cli_common

    flags = {**inputs.flags, **_method_flags(job.method, target, languages)}
    if job.seed is not None:
        flags["training.seed"] = job.seed
    sets = list(inputs.sets) + [item for method, item in inputs.method_sets if method == job.method]
    if vary is not None and job.vary_value is not None:
        if flags.get(vary.key) is not None and vary.key != "training.seed":
            raise UserError(f"--vary {vary.label} conflicts with the flag that sets {vary.key}.")
        if _vary_applies(vary, flags["method.name"]):
            sets.append(f"{vary.key}={job.vary_value}")
    return cli_common.resolve(inputs.spec_path, inputs.preset, sets, flags)


def check_adapter_geometry(job: Job, spec: JobSpec) -> None:
    """Fail before any training when a Compacter cannot be built on this base (its PHM
    layers need the hidden and bottleneck sizes divisible by phm_dim)."""
    from advfusion_cli.engine.modules.phm import check_phm_sizes
    from advfusion_cli.workflows.methods import adapter_config
    from advfusion_cli.workflows.plan import model_fingerprint
    from advfusion_cli.workflows.stages import adapter_method_of

    if job.is_base or spec.method.name == "lora":
        return
    method = adapter_method_of(spec)
    if method.name != "compacter":
        return
    fingerprint = model_fingerprint(spec)
    if fingerprint is None:
        return  # the model cannot be read yet; training will report it
    config = adapter_config(method)
    hidden = fingerprint["hidden_size"]
    try:
        check_phm_sizes(hidden, config.bottleneck_size(hidden), config.phm_dim)
    except UserError as err:
        key = "method.adapter.reduction_factor" if spec.is_fusion else "method.reduction_factor"
        raise UserError(
            f"{job.method} on this base (hidden {hidden}): {err} For this method only: "
            f"--set {job.method}:{key}=N (e.g. N = {hidden // 8} gives bottleneck 8)."
        ) from None


class JobTrainer:
    """Runs the training of jobs in one accelerate session with one progress display."""

    def __init__(self, progress):
        self.progress = progress
        self._session = None

    def session(self, spec: JobSpec):
        from advfusion_cli.workflows.execute import open_session

        if self._session is None:
            training = spec.training
            self._session = open_session(
                training.precision,
                training.report_to,
                spec.output.workdir,
                training.timeout_minutes,
            )
            self._session.progress = self.progress
        return self._session

    def train(self, job: Job, spec: JobSpec) -> TrainedJob:
        if job.is_base:
            return TrainedJob(job, spec, None)
        from advfusion_cli.workflows.runs import Workdir

        Workdir(spec.output.workdir).ensure_writable()
        if spec.is_fusion:
            return self._train_fusion(job, spec)
        outcome = self._train_adapter(spec)
        return TrainedJob(job, spec, outcome.plan.run, _summary(outcome), reused=outcome.reused)

    def _train_adapter(self, spec: JobSpec):
        from advfusion_cli.workflows.plan import plan_adapters
        from advfusion_cli.workflows.train_adapters import run_adapter

        plan = plan_adapters("compare", spec, False)  # finished runs are reused, never redone
        (run_plan,) = plan.runs
        return run_adapter(run_plan, self.session(spec))

    def _train_fusion(self, job: Job, spec: JobSpec) -> TrainedJob:
        from advfusion_cli.workflows.adv_fuse import run_advfusion
        from advfusion_cli.workflows.fuse import run_adapterfusion
        from advfusion_cli.workflows.plan import plan_fusion
        from advfusion_cli.workflows.stages import adapter_method_of
        from advfusion_cli.workflows.train_adapters import run_adapter

        target = spec.data.target
        # The target adapter of this seed/setting first (the single-language run of it).
        adapter_data = spec.data.model_copy(update={"languages": [target]})
        adapter_spec = spec.model_copy(
            update={"method": adapter_method_of(spec), "data": adapter_data}
        )
        self._train_adapter(adapter_spec)
        plan = plan_fusion("compare", spec, False, train_missing=True)
        session = self.session(spec)
        outcome = None
        for run_plan in plan.runs:
            if run_plan.role == "adapter":
                run_adapter(run_plan, session)
            elif spec.method.name == "advfusion":
                outcome = run_advfusion(run_plan, session)
            else:
                outcome = run_adapterfusion(run_plan, session)
        fusion_plan = plan.runs[-1]
        return TrainedJob(
            job,
            spec,
            fusion_plan.run,
            _summary(outcome),
            adapter_runs=dict(fusion_plan.adapter_sources),
            reused=outcome.reused,
        )


def _summary(outcome) -> dict:
    return {
        "trainable_params": outcome.trainable_params,
        "total_params": outcome.total_params,
        "elapsed_s": outcome.elapsed_s,
        "training_s": sum(p.get("elapsed_s", 0.0) for p in outcome.phases) or outcome.elapsed_s,
        "peak_memory_mb": outcome.peak_memory_mb,
        "best_eval_loss": outcome.best_eval_loss,
    }
