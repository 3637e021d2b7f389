"""Final scores and plots to the experiment trackers (`evaluate` / `compare` with --report-to).

An evaluation of a training run goes into that run's tracker run: the same TensorBoard folder
(`<workdir>/tensorboard/<run id>/`), the same wandb run and MLflow run (their ids are in
`runs/<id>/tracking.json`, created here when the run was trained without trackers), at the
last step the training logged, so the scores sit beside the curves they come from. Scores are
tagged `<evaluation>/<metric>` (e.g. `test-all-greedy/bleu4_smooth_13a_corpus`); images
(the fusion-attention heatmap) go to TensorBoard and wandb as images, to MLflow as artifacts.
A base-model evaluation or a comparison is a tracker run of its own, named after its folder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from advfusion_cli.workflows import atomic
from advfusion_cli.workflows.runs import RunDir
from advfusion_cli.workflows.tracking import STATE_FILE, make_trackers, read_state

HEATMAP_FILE = "fusion-attention.png"


def report_results(
    names: Sequence[str],
    workdir: Path,
    run_name: str,
    state_folder: Path,
    scores: dict[str, float],
    images: dict[str, Path] | None = None,
) -> None:
    """Log `scores` (tag -> number) and `images` (tag -> PNG) to one tracker run, the one
    whose ids `state_folder/tracking.json` holds (continued) or a new one (recorded there)."""
    if not names:
        return
    state = read_state_at(state_folder)
    step = int(state.get("last_step", 0))
    trackers = make_trackers(names, run_name, workdir, state)
    values = {tag: float(value) for tag, value in scores.items() if _is_number(value)}
    for tracker in trackers:
        tracker.start()
        if tracker.name == "mlflow":
            state["mlflow_run_id"] = tracker.active_run.info.run_id
        try:
            tracker.log(values, step=step)
            for tag, path in (images or {}).items():
                _log_image(tracker, tag, path, step)
        finally:
            tracker.finish()
    state["trackers"] = sorted(set(state.get("trackers", [])) | set(names))
    atomic.write_json(state_folder / STATE_FILE, state)


def read_state_at(folder: Path) -> dict:
    return read_state(RunDir(folder))


def report_evaluation(
    names: Sequence[str], folder: Path, record: dict, run: RunDir | None, workdir: Path
) -> None:
    """One evaluation (its metrics.json `record`, in `folder`): scores, and the fusion
    attention heatmap of a fusion run, into the evaluated run's tracker run."""
    import json

    from advfusion_cli.evaluate.workflow import ATTENTION_FILE

    if not names:
        return
    scores = {f"{folder.name}/{metric}": value for metric, value in record["scores"].items()}
    images = {}
    if (folder / ATTENTION_FILE).is_file():
        from advfusion_cli.compare.plots import attention_heatmap

        attention = json.loads((folder / ATTENTION_FILE).read_text())
        title = f"{record['method']} -> {record['target']}: fusion attention"
        path = attention_heatmap(attention, folder / HEATMAP_FILE, title, record["target"])
        images[f"{folder.name}/fusion_attention"] = path
    if run is not None:
        report_results(names, run.path.parent.parent, run.id, run.path, scores, images)
    else:  # the frozen base: a tracker run of its own, its ids beside its metrics.json
        name = f"{record['method']}-{record['target']}-{folder.name}"
        report_results(names, workdir, name, folder, scores, images)


def report_comparison(names: Sequence[str], result, workdir: Path) -> None:
    """compare: every evaluation into its run's tracker run, and the comparison itself (mean
    score per method and metric, the plots) as a tracker run named after its folder."""
    from advfusion_cli.evaluate.workflow import read_evaluation

    if not names:
        return
    for row in result.rows:
        for entry in row.runs:
            folder = Path(entry["evaluation"])
            record = read_evaluation(folder)
            if record is not None:
                run = RunDir(Path(entry["run_dir"])) if entry.get("run_dir") else None
                report_evaluation(names, folder, record, run, workdir)
    scores = {}
    for row in result.rows:
        label = row.method if row.vary_value is None else f"{row.method}-{row.vary_value}"
        for metric, cell in row.metrics.items():
            scores[f"{label}/{metric}"] = cell.mean
    images = {f"plots/{path.stem}": path for path in result.files.values() if path.suffix == ".png"}
    report_results(names, workdir, f"compare-{result.folder.name}", result.folder, scores, images)


def _is_number(value: object) -> bool:
    """Finite numbers only (a metric without items is null; trackers take only numbers)."""
    if value is None or isinstance(value, bool | str):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _log_image(tracker, tag: str, path: Path, step: int) -> None:
    if tracker.name == "mlflow":
        tracker.log_artifact(str(path))  # MLflow keeps images as run artifacts
        return
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("RGB"))  # (H, W, 3) uint8
    if tracker.name == "tensorboard":
        tracker.writer.add_image(tag, pixels, global_step=step, dataformats="HWC")
        tracker.writer.flush()
    else:
        tracker.log_images({tag: [pixels]}, step=step)
