"""The decoding and execution options `evaluate` and `compare` share, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

NOpt = Annotated[int, typer.Option("--n", help="Candidates per item (pass@k needs n >= k).")]
TemperatureOpt = Annotated[
    float | None,
    typer.Option("--temperature", help="Sample at this temperature (default: greedy)."),
]
TopPOpt = Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass.")]
TopKOpt = Annotated[int, typer.Option("--top-k", help="Top-k filter; 0 = none.")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="Prompts per batch.")]
MaxNewTokensOpt = Annotated[
    int, typer.Option("--max-new-tokens", help="New tokens per candidate (authors: 512).")
]
ExecuteOpt = Annotated[
    bool,
    typer.Option("--execute/--no-execute", help="Run code-generation candidates in the sandbox."),
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", help="Sandbox processes (default up to 4).")
]
