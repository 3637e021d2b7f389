"""Bench results as rich tables and JSON, with the issue's goals checked against the same run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from advfusion_cli.errors import UserError


@dataclass(frozen=True)
class Goal:
    """A target for one measured value: value >= target (or <= when `at_most`)."""

    description: str
    target: float
    at_most: bool = False

    def met(self, value: float) -> bool:
        return value <= self.target if self.at_most else value >= self.target


RATIO = "ratio_min"  # the step-time ratio the goals are checked on (see goal_checks)


def _rows(results: dict, names: list[str]) -> list[dict]:
    return [row for row in results["training"] if row["name"] in names]


def _extreme(rows: list[dict], key: str, pick) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return pick(values) if values else None


def goal_checks(results: dict) -> list[dict]:
    """Each goal with its worst measured value and whether it is met.

    Step-time goals use the ratio of the fastest steps (`ratio_min`): other processes only
    ever add time, so the minimum is the least disturbed estimate on a shared machine.
    measured None: not measured (e.g. N=6 not in --n-adapters); met False also when one of
    the goal's configurations failed.
    """
    fusion6 = ["adapterfusion-6", "advfusion-6"]
    generation = results.get("generation") or {}
    speedups = list(generation.get("batched_speedup", {}).values())
    checks = [
        (Goal("fusion N=6 step-time ratio to the frozen base", 0.60), fusion6, RATIO),
        (Goal("fusion N=12 step-time ratio", 0.50), ["adapterfusion-12", "advfusion-12"], RATIO),
        (Goal("task adapter step-time ratio", 0.90), ["task-adapter"], RATIO),
        (Goal("Compacter step-time ratio", 0.85), ["compacter"], RATIO),
        (
            Goal("fusion N=6 peak memory / one-adapter training", 1.30, at_most=True),
            fusion6,
            "memory_vs_adapter",
        ),
    ]
    outcomes = []
    for goal, names, key in checks:
        rows = _rows(results, names)
        value = _extreme(rows, key, max if goal.at_most else min)  # the worse of the rows
        failed = any("error" in row for row in rows)
        outcomes.append((goal, value, failed))
    outcomes.append(
        (
            Goal("batched / one-at-a-time generation tokens/s", 5.0),
            min(speedups) if speedups else None,
            False,
        )
    )
    return [
        {
            "goal": goal.description,
            "target": f"{'<=' if goal.at_most else '>='} {goal.target:g}",
            "measured": value,
            "met": False if failed else (None if value is None else goal.met(value)),
        }
        for goal, value, failed in outcomes
    ]


def training_table(results: dict) -> Table:
    settings = results["settings"]
    shapes = settings["shapes"]
    env = results["environment"]
    table = Table(
        title=(
            f"Training step (forward + backward + AdamW), {shapes['batch']} x {shapes['seq']} "
            f"tokens, {env['device_name']}, {env['threads']} thread(s)"
        )
    )
    for header in ("configuration", "trainable", "median s", "min s", "tokens/s"):
        table.add_column(header, justify="left" if header == "configuration" else "right")
    for header in ("ratio", "ratio (min)", "ratio (cpu)", "peak MiB", "mem / adapter"):
        table.add_column(header, justify="right")
    for row in results["training"]:
        if "error" in row:
            table.add_row(row["name"], "-", "[red]failed[/]", *["-"] * 7)
            continue
        table.add_row(
            row["name"],
            f"{row['trainable_parameters']:,}",
            f"{row['median_s']:.3f}",
            f"{row['min_s']:.3f}",
            f"{row['tokens_per_s']:,.0f}",
            f"{row['ratio']:.2f}",
            f"{row['ratio_min']:.2f}",
            f"{row['ratio_cpu']:.2f}",
            _number(row.get("peak_mb"), "{:,.0f}"),
            _number(row.get("memory_vs_adapter"), "{:.2f}"),
        )
    return table


def generation_table(generation: dict) -> Table:
    table = Table(
        title=(
            f"Greedy generation, {generation['prompts']} prompts x {generation['prompt_tokens']} "
            f"tokens, {generation['new_tokens']} new tokens each"
        )
    )
    for header in ("variant", "mode", "median s", "tokens/s", "batched speed-up"):
        table.add_column(header, justify="left" if header in ("variant", "mode") else "right")
    for row in generation["rows"]:
        speedup = (
            generation["batched_speedup"][row["variant"]] if row["mode"] == "batched" else None
        )
        table.add_row(
            row["variant"],
            row["mode"],
            f"{row['median_s']:.3f}",
            f"{row['tokens_per_s']:,.0f}",
            _number(speedup, "{:.1f}x"),
        )
    return table


def real_shapes_table(rows: list[dict]) -> Table:
    table = Table(
        title=(
            "Fusion training state at real shapes, one place per layer (task adapters; Compacter "
            "fusions have two: double it), fp32 weights + gradients + AdamW moments"
        )
    )
    for header in ("model", "h", "layers", "query rank", "places"):
        table.add_column(header, justify="left" if header == "model" else "right")
    for header in ("trainable", "weights GiB", "optimizer GiB", "total GiB"):
        table.add_column(header, justify="right")
    for row in rows:
        if row["adapter_kind"] != "task-adapter":
            continue  # in the JSON; exactly twice the task-adapter row
        table.add_row(
            row["model"],
            str(row["hidden"]),
            str(row["layers"]),
            str(row["query_rank"] or "full"),
            str(row["places"]),
            f"{row['trainable_parameters'] / 1e6:,.1f} M",
            f"{row['weights_gib']:.2f}",
            f"{row['adamw_moments_gib']:.2f}",
            f"{row['training_state_gib']:.2f}",
        )
    return table


def goals_table(goals: list[dict]) -> Table:
    table = Table(title="Goals (same run; step-time goals on the ratio of the fastest steps)")
    for header in ("goal", "target", "measured", "met"):
        table.add_column(header, justify="left" if header == "goal" else "right")
    for goal in goals:
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "not measured"}[goal["met"]]
        table.add_row(goal["goal"], goal["target"], _number(goal["measured"], "{:.2f}"), met)
    return table


def render(results: dict, console: Console) -> None:
    console.print(training_table(results))
    for row in results["training"]:
        if "error" in row:
            console.print(f"[red]{row['name']} failed:[/] {row['error']}")
    if results.get("generation"):
        console.print(generation_table(results["generation"]))
    console.print(real_shapes_table(results["real_shapes"]))
    console.print(goals_table(results["goals"]))
    load = results["environment"]
    console.print(
        f"load average before/after: {load['load_average_before']} / {load['load_average_after']}"
        " (ratios compare configurations of the same run; 'ratio (cpu)' uses this process's"
        " CPU clock, which waiting for other processes does not inflate)"
    )


def write_json(results: dict, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"Could not write the bench results to '{path}': {exc.strerror}.") from exc


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
