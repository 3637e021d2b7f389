"""What a submitted job runs: one stage, as `advfusion grid-stage` in a child process.

    state "running" -> child `python -m advfusion_cli grid-stage <stage file>` (output to the
    stage's log) -> exit 0: "done"; exit 75: the stage checkpointed and asks to be requeued
    -> requeue (Slurm: `scontrol requeue`; submitit's local executor: its restart code);
    anything else: "failed" with the log's last line, and the job fails (dependants do not run)

The stage runs in its own process so that the exit code is the command's own (a preempted
stage exits 75, a bad input 2) and so that SIGTERM/SIGUSR1 from the scheduler reach the
training loop, which checkpoints before the job's time runs out. Only the standard library
(and advfusion_cli.errors, which needs nothing else) is imported here (the job starts fast;
the child loads the model code).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from advfusion_cli.errors import EXIT_REQUEUE
from advfusion_cli.grid import state

# A stage that was told to stop (SIGTERM/SIGUSR1 before the time limit, or preemption)
# checkpoints, marks its run interrupted and exits with this code: "requeue me; running the
# same stage again resumes it" (docs/workflows.md#grids-on-a-cluster-slurm). The training
# commands' own constant (advfusion_cli.errors, standard library only), so the two agree.
REQUEUE_EXIT_CODE = EXIT_REQUEUE
# submitit's local controller starts a job's process again when it exits with this code.
LOCAL_RESTART_CODE = 144
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)


SUMMARY = "summary"  # the grid summary only reads JSON files: it runs in the job's process


class StageFailed(RuntimeError):
    """A stage's command failed; the message is its last error line."""


def job_id() -> str:
    """The scheduler's id of this job (array task ids as `<array job>_<task>`)."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or env.get("SUBMITIT_LOCAL_JOB_ID") or str(os.getpid())


def stage_command(stage_file: Path) -> list[str]:
    return [sys.executable, "-m", "advfusion_cli", "grid-stage", str(stage_file)]


def run_stage(grid: str, name: str) -> str:
    """Run stage `name` of the grid in folder `grid`; return "done" or raise StageFailed."""
    folder = Path(grid)
    log = state.log_file(folder, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    executor = os.environ.get("SUBMITIT_EXECUTOR", "local")
    state.update_state(
        folder,
        name,
        state.RUNNING,
        job_id=job_id(),
        host=socket.gethostname(),
        started=state.now_iso(),
        log=str(log),
        launcher=executor,
    )
    with open(log, "ab") as out:
        out.write(f"--- {state.now_iso()} {name} on {socket.gethostname()}\n".encode())
        out.flush()
        if name == SUMMARY:
            return _write_summary(folder, name, out)
        child = subprocess.Popen(
            stage_command(state.stage_file(folder, name)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the scheduler's signals reach it once, through us
        )
    previous = {sig: signal.signal(sig, _forward_to(child)) for sig in FORWARDED_SIGNALS}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code == 0:
        state.update_state(folder, name, state.DONE, exit_code=0, error=None)
        return state.DONE
    if code == REQUEUE_EXIT_CODE:
        state.update_state(folder, name, state.REQUEUED, exit_code=code)
        requeue(executor)
    line = state.last_error_line(log) or f"exit code {code}"
    state.update_state(folder, name, state.FAILED, exit_code=code, error=line)
    raise StageFailed(f"{name}: {line}")


def _write_summary(folder: Path, name: str, out) -> str:
    import pickle

    from advfusion_cli.grid.summary import write_summary

    try:
        payload = pickle.loads(state.stage_file(folder, name).read_bytes())
        paths = write_summary(Path(payload["folder"]), payload["cells"])
    except (OSError, ValueError, KeyError, pickle.UnpicklingError) as err:
        line = f"{type(err).__name__}: {err}"
        out.write(f"{line}\n".encode())
        state.update_state(folder, name, state.FAILED, exit_code=1, error=line)
        raise StageFailed(f"{name}: {line}") from None
    out.write("".join(f"wrote {path}\n" for path in paths).encode())
    state.update_state(folder, name, state.DONE, exit_code=0, error=None)
    return state.DONE


def _forward_to(child: subprocess.Popen):
    def forward(signum, frame) -> None:
        if child.poll() is None:
            # submitit's local controller warns of the time limit with SIGUSR2; a stage
            # checkpoints on SIGUSR1 or SIGTERM, so it gets SIGUSR1.
            child.send_signal(signal.SIGUSR1 if signum == signal.SIGUSR2 else signum)

    return forward


def requeue(executor: str) -> None:
    """Put this job back in the queue; the rerun resumes the stage from its checkpoint."""
    if executor == "slurm":
        # Slurm may already be requeueing a preempted job; a refusal here changes nothing.
        subprocess.run(["scontrol", "requeue", job_id()], check=False, timeout=60)
        raise SystemExit(REQUEUE_EXIT_CODE)
    raise SystemExit(LOCAL_RESTART_CODE)
