"""Inference on finished runs: load a run as it was trained, generate as the authors decode.

loaded = load_run("advfusion-runs/runs/advfusion-ruby-1f3a9c02")
completions = generate_completions(loaded.model, loaded.tokenizer, examples,
                                   DecodingSettings(), stop_rule_for("code-translation"))
"""

from advfusion_cli.inference.generation import (
    AUTHORS_MAX_NEW_TOKENS,
    STOP_RULES,
    Completion,
    DecodingSettings,
    StopRule,
    generate_completions,
    stop_rule_for,
)
from advfusion_cli.inference.loading import LoadedRun, load_base_model, load_run
from advfusion_cli.inference.resolve import (
    ALL_METHODS,
    BASE_METHODS,
    RunRef,
    canonical_method,
    find_runs,
    resolve_run,
)

__all__ = [
    "ALL_METHODS",
    "AUTHORS_MAX_NEW_TOKENS",
    "BASE_METHODS",
    "STOP_RULES",
    "Completion",
    "DecodingSettings",
    "LoadedRun",
    "RunRef",
    "StopRule",
    "canonical_method",
    "find_runs",
    "generate_completions",
    "load_base_model",
    "load_run",
    "resolve_run",
    "stop_rule_for",
]
