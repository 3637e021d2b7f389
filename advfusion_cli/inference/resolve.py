"""Finding the run a user means: a run folder, a run id, or `method/target` in the workdir.

`base` (or `base/<target>`) is not a run: it is the frozen base with no adapter, the floor
every method must beat. `base-1shot` is the same base with one training example in front of
each prompt (what a prompt alone buys, without training).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from advfusion_cli.errors import UserError, unknown_name_error
from advfusion_cli.workflows.runs import RunDir, Workdir

BASE_METHODS = ("base", "base-1shot")
RUN_METHODS = (
    "lora",
    "compacter",
    "task-adapter",
    "adapterfusion",
    "adapterfusion-compacter",
    "advfusion",
    "advfusion-compacter",
)
ALL_METHODS = (*BASE_METHODS, *RUN_METHODS)


def canonical_method(name: str) -> str:
    """A method label as runs are named (`advfusion-compacter`), with did-you-mean for typos."""
    from advfusion_cli.spec.names import METHOD_ALIASES

    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    if key in ALL_METHODS:
        return key
    if key in METHOD_ALIASES:
        canonical, implied = METHOD_ALIASES[key]
        return canonical + ("-compacter" if implied.get("adapter_kind") == "compacter" else "")
    raise unknown_name_error("method", name, ALL_METHODS)


@dataclass(frozen=True)
class RunRef:
    """What `--run` named: a finished run, or the base model (method base/base-1shot)."""

    method: str
    run: RunDir | None = None
    target: str | None = None  # base only: the language evaluated

    @property
    def is_base(self) -> bool:
        return self.run is None


def describe_run(run: RunDir) -> tuple[str, str | None, str | None]:
    """(method label, target language, task) from a run's job.yaml."""
    from advfusion_cli.spec.loading import load_spec
    from advfusion_cli.workflows.stages import method_label

    spec = load_spec(run.job_yaml)
    return method_label(spec), spec.data.target, spec.data.task


def require_finished(run: RunDir) -> RunDir:
    """The run itself, or a one-line error saying why it cannot be evaluated."""
    if not run.path.is_dir():
        raise UserError(f"Run folder '{run.path}' does not exist.")
    if not run.job_yaml.is_file():
        raise UserError(f"'{run.path}' is not a run folder (no job.yaml).")
    if not run.is_finished():
        status = (run.status() or {}).get("status", "unknown")
        raise UserError(
            f"Run '{run.id}' is not finished (status: {status}); run its command again to "
            "finish it, then evaluate."
        )
    return run


def finished_runs(workdir: Workdir) -> list[RunDir]:
    if not workdir.runs.is_dir():
        return []
    return [
        RunDir(path)
        for path in sorted(workdir.runs.iterdir())
        if path.is_dir() and RunDir(path).is_finished()
    ]


def find_runs(workdir: Workdir, method: str, target: str, task: str | None = None) -> list[RunDir]:
    """Finished runs of `method` for `target` (and `task`), oldest first."""
    matches = []
    for run in finished_runs(workdir):
        try:
            label, run_target, run_task = describe_run(run)
        except UserError:
            continue  # a job.yaml this version cannot read is not the run asked for
        if label == method and run_target == target and (task is None or run_task == task):
            matches.append(run)
    return sorted(matches, key=lambda r: (r.status() or {}).get("finished", ""))


def resolve_run(value: str, workdir: Path, task: str | None = None) -> RunRef:
    """`--run` as given: a folder, a run id under <workdir>/runs, `method/target`, or `base`."""
    text = value.strip()
    path = Path(text).expanduser()
    if path.is_dir() and (path / "job.yaml").exists():
        return _run_ref(require_finished(RunDir(path)))
    work = Workdir(Path(workdir))
    if text and "/" not in text and (work.runs / text).is_dir():
        return _run_ref(require_finished(work.run(text)))
    method, _, target = text.partition("/")
    if method.strip().lower() in BASE_METHODS or (target and method):
        method = canonical_method(method)
        if method in BASE_METHODS:
            return RunRef(method, None, _language(target) if target else None)
        language = _language(target)
        runs = find_runs(work, method, language, task)
        if not runs:
            damaged = damaged_runs(work)
            if damaged:
                raise UserError(
                    f"No finished {method} run for '{language}' in {work.runs}; damaged run "
                    f"file(s), maybe of the run meant: {', '.join(damaged)}."
                )
            raise UserError(
                f"No finished {method} run for '{language}' in {work.runs}; train it first "
                f"(e.g. `advfusion compare --methods {method} --target {language}`)."
            )
        if len(runs) > 1:
            names = ", ".join(r.id for r in runs)
            raise UserError(
                f"{len(runs)} finished {method} runs for '{language}' in {work.runs} ({names}); "
                "pass one run folder."
            )
        return _run_ref(runs[0])
    if path.exists():
        raise UserError(f"'{text}' is not a run folder (no job.yaml).")
    if text.startswith((".", "/", "~")):
        raise UserError(f"Run folder '{text}' does not exist.")
    raise UserError(
        f"Run '{text}' not found: pass a run folder, a run id under {work.runs}, "
        "method/target (e.g. advfusion/ruby) or base."
    )


def _language(name: str) -> str:
    from advfusion_cli.spec.names import canonical_language

    return canonical_language(name)


def _run_ref(run: RunDir) -> RunRef:
    label, target, _ = describe_run(run)
    return RunRef(label, run, target)


def damaged_runs(workdir: Workdir) -> list[str]:
    """'<file> (reason)' for each run in the workdir whose job.yaml or status.json is corrupt:
    such a run is never found by `method/target`, so a failed lookup names them."""
    import json

    from advfusion_cli.spec.loading import load_spec

    runs = workdir.runs
    found = []
    for path in sorted(runs.iterdir()) if runs.is_dir() else []:
        run = RunDir(path)
        if not path.is_dir() or not run.job_yaml.exists():
            continue
        if run.status_json.exists():
            try:
                status = json.loads(run.status_json.read_text())
            except (OSError, ValueError) as err:
                found.append(f"{run.status_json} ({_reason(err)})")
                continue
            if not isinstance(status, dict):
                found.append(f"{run.status_json} (not a mapping)")
                continue
        try:
            load_spec(run.job_yaml)
        except UserError as err:
            found.append(f"{run.job_yaml} ({str(err).splitlines()[0]})")
    return found


def _reason(err: Exception) -> str:
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return f"not valid JSON: {err}"
