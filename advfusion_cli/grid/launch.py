"""Running a grid's job graph through submitit: on this machine, or submitted to SLURM.

local  the stages as subprocesses (submitit's LocalExecutor), up to --max-parallel at once,
       each started when the stages it needs are done, one GPU each where there are GPUs; a
       failed stage marks every stage that needs it "not-run" and the others go on.
slurm  every stage to run is submitted at once: the adapters of one base as a job array, the
       others as single jobs, each with `--dependency=afterok:<the jobs it needs>` and
       `--kill-on-invalid-dep=yes` (a failed stage cancels its dependants), its stage kind's
       resources, `--signal` before the time limit and `--requeue` (a stage that exits 75
       after checkpointing is requeued and resumes).

Stages already done in the workdir are not submitted; stages still queued or running from an
earlier submission are not submitted twice (their job ids become the dependencies).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from advfusion_cli.errors import UserError
from advfusion_cli.grid import state
from advfusion_cli.grid.graph import Graph, Stage
from advfusion_cli.grid.job import run_stage
from advfusion_cli.grid.spec import Resources, minutes, sbatch_option

LAUNCHERS = ("local", "slurm")
MISSING_SUBMITIT = (
    "--launcher {launcher} needs the 'submitit' package, which is not installed; "
    "pip install 'advfusion[cluster]'"
)


def require_submitit(launcher: str):
    # On import submitit applies a logging.config.dictConfig, which closes every logging
    # handler the process already has (a tracker's, absl's, the user's own); NOCONFIG keeps
    # them. Its warnings still reach stderr through logging's last-resort handler.
    os.environ.setdefault("SUBMITIT_LOG_LEVEL", "NOCONFIG")
    try:
        import submitit
    except ImportError:
        raise UserError(MISSING_SUBMITIT.format(launcher=launcher)) from None
    return submitit


def check_launcher(launcher: str | None) -> str | None:
    if launcher is None or launcher in LAUNCHERS:
        return launcher
    from advfusion_cli.errors import unknown_name_error

    raise unknown_name_error("--launcher", launcher, LAUNCHERS)


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # stage -> last error line
    not_run: dict[str, str] = field(default_factory=dict)  # stage -> the failed stage it needs
    submitted: dict[str, str] = field(default_factory=dict)  # stage -> scheduler job id

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_run


# ---- local -----------------------------------------------------------------------------------


def visible_gpus() -> list[int]:
    """The GPUs jobs may use (indices as this process sees them); none on a CPU machine."""
    try:
        import torch

        return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    except ImportError:
        return []


def run_local(graph: Graph, max_parallel: int, say) -> Outcome:
    """Run the graph's stages to do here; `say(line)` reports each start and end."""
    submitit = require_submitit("local")
    folder = graph.folder
    todo = graph.todo()
    for stage in todo:
        state.write_state(folder, stage.name, state.PENDING, launcher="local")
    finished = {s.name for s in graph.stages.values() if s.done}
    free_gpus = visible_gpus()
    has_gpus = bool(free_gpus)
    running: dict[str, tuple[object, int | None]] = {}
    outcome = Outcome()
    total, started = len(todo), 0
    try:
        while todo or running:
            for name, (job, gpu) in list(running.items()):
                if not job.done():
                    continue
                del running[name]
                if gpu is not None:
                    free_gpus.append(gpu)
                record = state.read_state(folder, name) or {}
                if record.get("state") == state.DONE:
                    finished.add(name)
                    outcome.done.append(name)
                    say(f"done     {name}")
                    continue
                line = record.get("error") or _job_error(job)
                if record.get("state") != state.FAILED:
                    state.update_state(folder, name, state.FAILED, error=line)
                outcome.failed[name] = line
                log = state.log_file(folder, name)
                say(f"FAILED   {name}: {line} (log: {log})")
                for dependant in graph.dependants(name):
                    if dependant in outcome.not_run or graph.stages[dependant].done:
                        continue
                    outcome.not_run[dependant] = name
                    state.write_state(folder, dependant, state.NOT_RUN, needs=name)
                    todo = [s for s in todo if s.name != dependant]
                    say(f"not run  {dependant} (needs {name}, which failed)")
            for stage in list(todo):
                if len(running) >= max_parallel:
                    break
                if not all(dep in finished for dep in stage.deps):
                    continue
                wants_gpu = has_gpus and bool(stage.resources.gpus)
                if wants_gpu and not free_gpus:
                    continue
                gpu = free_gpus.pop(0) if wants_gpu else None
                job = _submit_local(submitit, folder, stage, gpu)
                running[stage.name] = (job, gpu)
                todo.remove(stage)
                started += 1
                say(f"start    {stage.name} [{started}/{total}] {stage.label}")
            if todo and not running:  # nothing can start: only possible if a dep is missing
                for stage in todo:
                    outcome.not_run[stage.name] = ",".join(stage.deps)
                    state.write_state(folder, stage.name, state.NOT_RUN, needs=stage.deps)
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        for name, (job, _) in running.items():
            job.cancel(check=False)
            state.update_state(folder, name, state.INTERRUPTED)
        raise
    return outcome


def _submit_local(submitit, folder: Path, stage: Stage, gpu: int | None):
    executor = submitit.LocalExecutor(folder=folder / "submitit" / "%j")
    executor.update_parameters(
        timeout_min=minutes(stage.resources.time or 24 * 60),
        gpus_per_node=1 if gpu is not None else 0,
        visible_gpus=[gpu] if gpu is not None else [],
        **({"setup": list(stage.resources.setup)} if stage.resources.setup else {}),
    )
    # Recorded before the start: the job itself writes "running" (with its id) and its end,
    # which a record written after the start could overwrite.
    state.write_state(folder, stage.name, state.SUBMITTED, launcher="local")
    return executor.submit(run_stage, str(folder), stage.name)


def _job_error(job) -> str:
    """The job's own error when the stage never wrote one (the wrapper itself failed)."""
    try:
        error = job.exception()
    except Exception as err:  # submitit raises when the job left no result at all
        error = err
    text = str(error or "the job ended without a result").strip().splitlines()
    return text[-1] if text else "the job ended without a result"


# ---- slurm -----------------------------------------------------------------------------------


def slurm_parameters(resources: Resources, job_name: str, dependencies: list[str]) -> dict:
    """submitit SlurmExecutor parameters for one job (or one array)."""
    extra: dict[str, object] = {"requeue": True}
    if resources.signal:
        extra["signal"] = resources.signal  # replaces submitit's own USR2@90
    if dependencies:
        extra["kill-on-invalid-dep"] = "yes"
    for line in resources.sbatch or ():
        key, value = sbatch_option(line)
        extra[key] = value
    params: dict[str, object] = {
        "job_name": job_name,
        "time": minutes(resources.time or 24 * 60),
        "additional_parameters": extra,
    }
    if dependencies:
        params["dependency"] = "afterok:" + ":".join(dependencies)
    if resources.gpus:
        params["gpus_per_node"] = resources.gpus
    if resources.cpus:
        params["cpus_per_task"] = resources.cpus
    for key in ("mem", "partition", "account"):
        if getattr(resources, key):
            params[key] = getattr(resources, key)
    if resources.setup:
        params["setup"] = list(resources.setup)
    return params


def queued_jobs(ids: list[str]) -> set[str]:
    """Which of these job ids Slurm still has queued or running (squeue), an empty set when
    squeue is missing or says nothing."""
    if not ids or shutil.which("squeue") is None:
        return set()
    try:
        listed = subprocess.run(
            ["squeue", "-h", "-o", "%i", "-j", ",".join(ids)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return set()
    return set(listed) & set(ids)


def submit_slurm(graph: Graph, say) -> Outcome:
    """Submit every stage to do, dependencies first; returns the job ids."""
    submitit = require_submitit("slurm")
    if shutil.which("sbatch") is None:
        raise UserError(
            "--launcher slurm: 'sbatch' is not on PATH; run this on a SLURM login node "
            "(or --launcher local on this machine)."
        )
    folder = graph.folder
    todo = graph.todo()
    earlier = {}
    for stage in todo:
        record = state.read_state(folder, stage.name) or {}
        if record.get("state") in (state.SUBMITTED, state.RUNNING, state.REQUEUED):
            earlier[stage.name] = str(record.get("job_id"))
    still_queued = queued_jobs(list(earlier.values()))
    job_ids = {name: job_id for name, job_id in earlier.items() if job_id in still_queued}
    outcome = Outcome()
    for name, job_id in job_ids.items():
        say(f"queued   {name} (job {job_id}, from an earlier submission)")
    to_submit = [s for s in todo if s.name not in job_ids]
    for group in _submission_groups(to_submit):
        first = group[0]
        deps = sorted({job_ids[d] for s in group for d in s.deps if d in job_ids})
        job_name = (
            f"advfusion-adapters-{Path(first.model).name}"
            if len(group) > 1
            else f"advfusion-{first.kind}"
        )
        executor = submitit.SlurmExecutor(folder=folder / "submitit" / "%j")
        executor.update_parameters(**slurm_parameters(first.resources, job_name, deps))
        if len(group) > 1:
            with executor.batch():
                jobs = [executor.submit(run_stage, str(folder), s.name) for s in group]
        else:
            jobs = [executor.submit(run_stage, str(folder), first.name)]
        for stage, job in zip(group, jobs, strict=True):
            job_ids[stage.name] = str(job.job_id)
            outcome.submitted[stage.name] = str(job.job_id)
            # Written right after sbatch returns; the job needs seconds (srun, Python, its
            # pickle) before it writes "running" over it.
            state.write_state(
                folder,
                stage.name,
                state.SUBMITTED,
                job_id=str(job.job_id),
                launcher="slurm",
                log=str(state.log_file(folder, stage.name)),
                scheduler_log=str(job.paths.stdout),
            )
            after = f" after {', '.join(job_ids[d] for d in stage.deps if d in job_ids)}"
            say(f"submitted {stage.name}: job {job.job_id}{after if stage.deps else ''}")
    return outcome


def _submission_groups(stages: list[Stage]) -> list[list[Stage]]:
    """Adapter stages of one base with the same resources as one array (they need nothing
    before them), then every other stage alone, in dependency order."""
    arrays: dict[tuple, list[Stage]] = {}
    others = []
    for stage in stages:
        if stage.kind == "adapter" and not stage.deps:
            key = (stage.model, stage.resources.model_dump_json())
            arrays.setdefault(key, []).append(stage)
        else:
            others.append([stage])
    return list(arrays.values()) + others


def environment_note() -> str:
    """Where a local job's GPUs come from, for the start line."""
    gpus = visible_gpus()
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not gpus:
        return "no GPU: stages run on CPU"
    return f"{len(gpus)} GPU(s){f' (CUDA_VISIBLE_DEVICES={devices})' if devices else ''}"
