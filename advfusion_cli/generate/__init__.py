"""Use a trained run on your own input: a diff, a source file or a problem statement.

The input becomes the task's prompt exactly as in training (the data package's renderers,
the run's token budgets), and the run generates through advfusion_cli.inference:

    from advfusion_cli.generate import Generator, generate

    generate("advfusion/ruby", "commit-message", diff_text)          # -> ["Fix ..."]
    gen = Generator("lora/ruby", task="code-translation")            # load once, reuse
    gen.generate(java_code, source_language="java", n=3, temperature=0.8)
"""

from advfusion_cli.generate.api import (
    GenerationRecord,
    GenerationResult,
    GenerationWarning,
    Generator,
    Note,
    PromptCutWarning,
    generate,
)
from advfusion_cli.generate.diffs import FileDiff, ParsedDiff, parse_diff
from advfusion_cli.generate.inputs import InputText, read_inputs
from advfusion_cli.generate.prompts import PromptItem, build_items
from advfusion_cli.generate.runs import ResolvedRun, best_of_compare, resolve_generation_run

__all__ = [
    "FileDiff",
    "GenerationRecord",
    "GenerationResult",
    "GenerationWarning",
    "Generator",
    "InputText",
    "Note",
    "ParsedDiff",
    "PromptCutWarning",
    "PromptItem",
    "ResolvedRun",
    "best_of_compare",
    "build_items",
    "generate",
    "parse_diff",
    "read_inputs",
    "resolve_generation_run",
]
