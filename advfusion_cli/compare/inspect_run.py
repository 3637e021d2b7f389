"""`advfusion inspect RUN`: what a run is, what it cost, how it scored, where its fusion looks.

The fusion heatmap comes from an existing evaluation of the run when one recorded fusion
attention (the latest such); otherwise the run is loaded and the attention is recorded on
the target's test items (teacher-forced, the answer's tokens), then drawn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from advfusion_cli.errors import UserError
from advfusion_cli.evaluate.report import format_value, metric_order
from advfusion_cli.evaluate.workflow import ATTENTION_FILE, METRICS_FILE, read_evaluation
from advfusion_cli.workflows import atomic
from advfusion_cli.workflows.runs import RunDir


@dataclass
class Inspection:
    run: RunDir
    spec: object
    summary: dict
    evaluations: list[tuple[Path, dict]]
    attention: dict | None = None
    attention_source: str | None = None
    heatmap: Path | None = None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _invalid(path: Path, what: str, why: str) -> UserError:
    return UserError(f"{path} is not a valid {what}: {why}.")


def read_summary(path: Path) -> dict:
    """summary.json (empty when the run has none yet); a damaged one is a one-line error."""
    if not path.exists():
        return {}
    try:
        summary = json.loads(path.read_text())
    except OSError as err:
        raise UserError(f"Cannot read {path}: {err.strerror or err}.") from None
    except ValueError as err:
        raise _invalid(path, "summary", f"not valid JSON ({err})") from None
    if not isinstance(summary, dict):
        raise _invalid(path, "summary", f"a mapping expected, got {type(summary).__name__}")
    phases = summary.get("phases")
    if phases is not None and (
        not isinstance(phases, list) or not all(isinstance(p, dict) for p in phases)
    ):
        raise _invalid(path, "summary", "'phases' must be a list of mappings")
    for phase in phases or []:
        if "name" not in phase or "steps" not in phase:
            raise _invalid(path, "summary", "a phase lacks 'name' or 'steps'")
    for key in ("best_eval_loss", "trainable_params", "total_params", "peak_memory_mb"):
        value = summary.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _invalid(path, "summary", f"'{key}' must be a number")
    return summary


def check_evaluation(folder: Path, record: object) -> dict:
    """A metrics.json read back: a mapping with a 'scores' mapping, or a one-line error."""
    path = folder / METRICS_FILE
    if not isinstance(record, dict):
        raise _invalid(
            path, "evaluation record", f"a mapping expected, got {type(record).__name__}"
        )
    scores = record.get("scores")
    if not isinstance(scores, dict):
        raise _invalid(path, "evaluation record", "'scores' must be a mapping")
    for name, value in scores.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _invalid(path, "evaluation record", f"score '{name}' must be a number")
    if not isinstance(record.get("provenance", {}), dict):
        raise _invalid(path, "evaluation record", "'provenance' must be a mapping")
    return record


def evaluations_of(run: RunDir) -> list[tuple[Path, dict]]:
    folder = run.path / "evals"
    if not folder.is_dir():
        return []
    found = []
    for child in sorted(folder.iterdir()):
        record = read_evaluation(child)
        if record is not None:
            found.append((child, check_evaluation(child, record)))
    return found


def inspect_run(
    run: RunDir, *, split: str = "test", limit: int | None = 100, out: Path | None = None
) -> Inspection:
    from advfusion_cli.compare.plots import attention_heatmap
    from advfusion_cli.spec.loading import load_spec

    spec = load_spec(run.job_yaml)
    found = Inspection(run, spec, read_summary(run.summary_json), evaluations_of(run))
    if not spec.is_fusion:
        return found
    recorded = [
        (folder, record)
        for folder, record in found.evaluations
        if (folder / ATTENTION_FILE).exists()
    ]
    if recorded:
        folder, _ = max(recorded, key=lambda pair: pair[1]["provenance"].get("evaluated", ""))
        found.attention = _read_json(folder / ATTENTION_FILE)
        found.attention_source = str(folder)
    else:
        found.attention = record_attention(run, split, limit)
        found.attention_source = f"{found.attention['items']} {split} items (recorded now)"
        target_folder = run.path / "inspect"
        target_folder.mkdir(parents=True, exist_ok=True)
        atomic.write_json(target_folder / ATTENTION_FILE, found.attention)
    path = Path(out) if out is not None else run.path / "inspect" / "fusion-attention.png"
    title = (
        f"{run.id}: fusion attention on {found.attention['items']} {split} items "
        f"(mean over answer tokens)"
    )
    found.heatmap = attention_heatmap(found.attention, path, title, spec.data.target)
    return found


def record_attention(run: RunDir, split: str, limit: int | None) -> dict:
    from advfusion_cli.evaluate.examples import select_items
    from advfusion_cli.inference.attention import fusion_attention
    from advfusion_cli.inference.loading import load_run

    loaded = load_run(run)
    items = select_items(loaded.spec.data, loaded.target, split, limit)
    return fusion_attention(loaded, items)


def summary_table(found: Inspection) -> Table:
    from advfusion_cli.compare.table import format_memory, format_params, format_seconds
    from advfusion_cli.workflows.stages import method_label

    spec, summary = found.spec, found.summary
    table = Table(title=f"run {found.run.id}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    status = (found.run.status() or {}).get("status", "unknown")
    rows = [
        ("method", method_label(spec)),
        ("task / target", f"{spec.data.task} / {spec.data.target}"),
        ("base model", f"{spec.model.name_or_path} (quantization {spec.model.quantization})"),
        ("status", status),
        (
            "trainable params",
            f"{format_params(summary.get('trainable_params'))} of "
            f"{format_params(summary.get('total_params'))}",
        ),
        ("training time", format_seconds(summary.get("training_s") or summary.get("elapsed_s"))),
        (
            "best eval loss",
            f"{summary['best_eval_loss']:.4f}" if summary.get("best_eval_loss") else "-",
        ),
        ("peak memory", format_memory(summary.get("peak_memory_mb"))),
    ]
    for phase in summary.get("phases", []):
        loss = phase.get("best_eval_loss")
        rows.append(
            (
                f"phase {phase['name']}",
                f"{phase['steps']} steps, {format_seconds(phase.get('elapsed_s'))}, best eval loss "
                f"{'-' if loss is None else f'{loss:.4f}'} at step {phase.get('best_step')}",
            )
        )
    env = _read_json(found.run.env_json)
    for language, entry in (env.get("adapters") or {}).items():
        rows.append((f"fuses {language}", f"{entry.get('source')} ({entry.get('folder')})"))
    for folder, record in found.evaluations:
        scores = record["scores"]
        shown = ", ".join(
            f"{name} {format_value(name, scores[name])}" for name in metric_order(scores)[:4]
        )
        rows.append((f"eval {folder.name}", shown))
    if found.heatmap is not None:
        rows.append(("fusion heatmap", f"{found.heatmap} (from {found.attention_source})"))
    rows.append(("folder", str(found.run.path)))
    for key, value in rows:
        table.add_row(key, value)
    return table


def attention_table(attention: dict, target: str) -> Table:
    """The heatmap's numbers in the terminal: layer × adapter per place."""
    table = Table(title="fusion attention (mean over answer tokens)", title_justify="left")
    table.add_column("layer")
    places = attention["places"]
    for place in places:
        for adapter in attention["adapters"]:
            mark = "*" if adapter == target else ""
            table.add_column(
                f"{place}:{adapter}{mark}" if len(places) > 1 else f"{adapter}{mark}",
                justify="right",
            )
    for layer, per_place in enumerate(attention["mean"]):
        cells = [str(layer)]
        for values in per_place:
            cells += ["-" if v is None else f"{v:.2f}" for v in values]
        table.add_row(*cells)
    return table
