"""The held-out perplexity sample: validation-pool programs written out in every language.

The testbed draws its validation programs before train and the pretraining corpus excludes
them, so these files were never trained on. The same programs in every language make the
per-language perplexities comparable; the sample is regenerated from the generator (never
stored), so the card's numbers can be re-checked on any machine.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from advfusion_cli.pretrain.perplexity import document_perplexity


class HeldoutSample(BaseModel):
    """Which held-out files the card's perplexity is measured on."""

    model_config = ConfigDict(extra="forbid")

    documents_per_language: int = Field(40, ge=1, description="Programs per language.")
    seed: int = Field(0, description="Testbed seed whose validation pool is used.")
    max_length: int = Field(1024, ge=16, description="Tokens scored per document at most.")
    languages: tuple[str, ...] = Field(("python", "javascript", "java", "go", "ruby"))


def heldout_documents(sample: HeldoutSample) -> dict[str, list[str]]:
    """{language: files}; even positions are stdin/stdout programs, odd ones library modules,
    the two shapes the pretraining corpus holds."""
    from advfusion_cli.testbed import TestbedConfig, build_pools
    from advfusion_cli.testbed.render import render_module, render_program

    programs = build_pools(TestbedConfig(seed=sample.seed)).validation
    programs = programs[: sample.documents_per_language]
    return {
        language: [
            render_program(p.program, language)
            if i % 2 == 0
            else render_module(p.program, language)
            for i, p in enumerate(programs)
        ]
        for language in sample.languages
    }


def heldout_perplexity(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sample: HeldoutSample
) -> dict[str, float]:
    """Perplexity per language on the held-out sample."""
    return {
        language: document_perplexity(model, tokenizer, docs, sample.max_length)[0]
        for language, docs in heldout_documents(sample).items()
    }
