"""Experiment trackers (TensorBoard, Weights & Biases, MLflow) through accelerate's integrations.

`training.report_to` names the trackers. Each training run is one tracker run named by its
run id (`advfusion-ruby-1f3a9c02`), so methods and seeds line up side by side; the resolved
job spec is its config. Only the main process ever creates a tracker.

Steps are the run's optimizer steps counted across phases: a phase's step plus the planned
steps of the phases before it (AdvFusion's phase 2 continues where phase 1's budget ends),
and `train/phase` is the phase number as its own curve. metrics.jsonl keeps per-phase steps.

A resumed run continues the same tracker run (wandb id / MLflow run id in
`runs/<id>/tracking.json`) without duplicated steps: TensorBoard gets a purge marker at the
resumed step + 1, so what the crashed session logged after its checkpoint is hidden and
logged again (TensorBoard's own restart rule); wandb and MLflow cannot rewind, so the steps
the crashed session already sent (those metrics.jsonl holds) are not sent again.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

from advfusion_cli.errors import UserError
from advfusion_cli.workflows import atomic
from advfusion_cli.workflows.runs import RunDir, now_iso

# tracker name -> (module to import, package to pip install)
TRACKER_PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}
PROJECT = (
    "advfusion"  # the wandb project / MLflow experiment (WANDB_PROJECT, MLFLOW_EXPERIMENT_NAME)
)
TENSORBOARD_FOLDER = "tensorboard"  # <workdir>/tensorboard/<run id>/
STATE_FILE = "tracking.json"

# metrics.jsonl key -> tracker tag
STEP_TAGS = {
    "loss": "train/loss",
    "lr": "train/learning_rate",
    "tokens_per_s": "train/tokens_per_s",
    "peak_memory_mb": "train/peak_memory_mb",
    "epoch": "train/epoch",
    "regularizer": "train/fusion_regularizer",
}
EVAL_TAG = "eval/loss"
PHASE_TAG = "train/phase"


def parse_report_to(text: str | None) -> list[str]:
    """`--report-to tensorboard,wandb` (or `none`) for commands without a job spec."""
    from advfusion_cli.errors import unknown_name_error

    names = [part.strip().lower() for part in (text or "").split(",") if part.strip()]
    if names == ["none"]:
        return []
    for name in names:
        if name not in TRACKER_PACKAGES:
            raise unknown_name_error("tracker (--report-to)", name, TRACKER_PACKAGES)
    return list(dict.fromkeys(names))


def check_installed(names: Sequence[str], option: str = "training.report_to") -> None:
    """One line naming the package to install, for the first tracker that is missing."""
    for name in names:
        module, package = TRACKER_PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(
                f"{option}: {name} needs the '{package}' package, which is not "
                f"installed; pip install {package} (or pip install 'advfusion[track]')."
            )


def tensorboard_root(workdir: Path) -> Path:
    return Path(workdir) / TENSORBOARD_FOLDER


def project_name() -> str:
    return os.environ.get("WANDB_PROJECT") or PROJECT


def flat_config(values: dict, prefix: str = "") -> dict[str, str | int | float | bool]:
    """A nested spec as `section.key` scalars (lists joined by commas, null as 'null'): the
    value types every tracker's config accepts."""
    flat: dict[str, str | int | float | bool] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = ",".join(str(v) for v in value)
        elif value is None:
            flat[name] = "null"
        elif isinstance(value, str | int | float | bool):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def read_state(run: RunDir) -> dict:
    try:
        state = json.loads((run.path / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def start_after_earlier_event_files(folder: Path) -> None:
    """Wait, if need be, until the clock is past the second of the run's newest event file.

    TensorBoard reads a run's event files in name order; a name is
    `events.out.tfevents.<second>.<host>.<pid>.<counter>`, the counter compared as text. A
    resumed session's file made in the same second as the interrupted one's (same process:
    `compare`, tests) can sort first when the counter gains a digit ('10' < '9'), and its
    restart marker would then drop the wrong steps. A later second sorts it last."""
    stamps = []
    for path in folder.glob("events.out.tfevents.*"):
        second = path.name.split(".")[3]
        if second.isdigit():
            stamps.append(int(second))
    if stamps:
        while int(time.time()) <= max(stamps):  # at most about a second
            time.sleep(0.02)


def make_trackers(names: Sequence[str], run_name: str, workdir: Path, state: dict) -> list:
    """accelerate tracker objects for one tracker run; `state` holds the ids of an earlier
    session's wandb/MLflow run (a missing one is created and recorded in `state`)."""
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

    made = []
    for name in names:
        if name == "tensorboard":
            start_after_earlier_event_files(tensorboard_root(workdir) / run_name)
            made.append(TensorBoardTracker(run_name, str(tensorboard_root(workdir))))
        elif name == "wandb":
            state.setdefault("wandb_id", f"{run_name}-{secrets.token_hex(4)}")
            made.append(
                WandBTracker(
                    project_name(),
                    name=run_name,
                    id=state["wandb_id"],
                    resume="allow",
                    dir=str(workdir),
                )
            )
        elif name == "mlflow":
            made.append(
                MLflowTracker(
                    experiment_name=PROJECT, run_name=run_name, run_id=state.get("mlflow_run_id")
                )
            )
    return made


def start_trackers(accelerator, trackers: list, config: dict | None) -> None:
    """accelerate's init_trackers over ready-made tracker objects (named by their run, not by
    one project folder), storing `config` when given."""
    accelerator.log_with = trackers
    accelerator.init_trackers(project_name(), config=config)


def end_trackers(accelerator) -> None:
    """Close this run's trackers but keep the session: accelerate's end_training would also
    tear down the process group that the command's next run still needs."""
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers.clear()


def purge_tensorboard_from(tracker, step: int) -> None:
    """TensorBoard's restart marker: events of step >= `step` written earlier are dropped."""
    from tensorboard.compat.proto.event_pb2 import Event, SessionLog

    tracker.writer.file_writer.add_event(
        Event(session_log=SessionLog(status=SessionLog.START)), step=step
    )
    tracker.writer.flush()


class NullRunTracker:
    """Reports nothing: no trackers asked for, or not the main process."""

    def resume(self, phase: str, step: int) -> None: ...
    def log_step(self, record: dict) -> None: ...
    def log_eval(self, record: dict) -> None: ...
    def finish(self) -> None: ...


class RunTracker(NullRunTracker):
    """One training run's tracker run: started before the first phase, ended after the last."""

    def __init__(
        self,
        accelerator,
        run: RunDir,
        names: Sequence[str],
        workdir: Path,
        phase_steps: Sequence[tuple[str, int]],
        config: dict,
    ):
        self.accelerator, self.run, self.names = accelerator, run, list(names)
        self.offsets: dict[str, int] = {}
        self.numbers: dict[str, int] = {}
        total = 0
        for number, (phase, steps) in enumerate(phase_steps, start=1):
            self.offsets[phase], self.numbers[phase] = total, number
            total += steps
        state = read_state(run)
        earlier = set(state.get("trackers", []))
        # What the earlier sessions already sent to the trackers that cannot rewind.
        sent_steps, sent_evals = self._logged_steps()
        self.sent = {
            name: (sent_steps, sent_evals) if name in earlier else (0, 0)
            for name in self.names
            if name != "tensorboard"
        }
        trackers = make_trackers(self.names, run.id, workdir, state)
        start_trackers(accelerator, trackers, None)
        for tracker in accelerator.trackers:
            if tracker.name not in earlier:  # a new tracker run gets the config once
                tracker.store_init_configuration(config)
            if tracker.name == "mlflow":
                state["mlflow_run_id"] = tracker.active_run.info.run_id
        state["trackers"] = sorted(earlier | set(self.names))
        state.setdefault("started", now_iso())
        self.state = state
        self.last_step = max(sent_steps, int(state.get("last_step", 0)))
        atomic.write_json(run.path / STATE_FILE, state)

    def global_step(self, phase: str, step: int) -> int:
        return self.offsets[phase] + step

    def _logged_steps(self) -> tuple[int, int]:
        """Highest global step of the step records and of the eval records in metrics.jsonl."""
        steps = evals = 0
        for record in self.run.read_metrics():
            phase = record.get("phase")
            if phase not in self.offsets or "step" not in record:
                continue
            step = self.global_step(phase, record["step"])
            if "loss" in record:
                steps = max(steps, step)
            elif "eval_loss" in record:
                evals = max(evals, step)
        return steps, evals

    def resume(self, phase: str, step: int) -> None:
        """A phase (re)starts after `step`: TensorBoard forgets anything logged after it."""
        for tracker in self.accelerator.trackers:
            if tracker.name == "tensorboard":
                purge_tensorboard_from(tracker, self.global_step(phase, step) + 1)

    def _send(self, values: dict, step: int, kind: int) -> None:
        self.last_step = max(self.last_step, step)
        for tracker in self.accelerator.trackers:
            already = self.sent.get(tracker.name)
            if already is not None and step <= already[kind]:
                continue
            tracker.log(values, step=step)

    def log_step(self, record: dict) -> None:
        values = {tag: record[key] for key, tag in STEP_TAGS.items() if key in record}
        values[PHASE_TAG] = self.numbers[record["phase"]]
        self._send(values, self.global_step(record["phase"], record["step"]), 0)

    def log_eval(self, record: dict) -> None:
        step = self.global_step(record["phase"], record["step"])
        self._send({EVAL_TAG: record["eval_loss"]}, step, 1)

    def finish(self) -> None:
        """End the tracker run; remember its last step (evaluations log their scores there)."""
        end_trackers(self.accelerator)
        self.state["last_step"] = self.last_step
        atomic.write_json(self.run.path / STATE_FILE, self.state)
