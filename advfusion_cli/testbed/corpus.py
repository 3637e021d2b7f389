"""Pretraining documents: single-language source files of testbed programs (target rare).

Only programs outside every evaluation pool are used (the train pool first, then fresh
programs that are not in the test, validation or commit pools), so a model pretrained on
this corpus has never seen an evaluation program. Each program appears in every
high-resource language; the low-resource target appears for `target_train_ratio` of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from .config import TestbedConfig
from .generator import problem_stream, seeded_rng
from .pools import build_pools
from .render import render_module, render_program
from .repos import file_for, make_repos


@dataclass(frozen=True)
class CorpusDocument:
    language: str
    text: str
    program_uid: str
    kind: str  # "program" (reads stdin, prints) or "module" (library file)


def iter_corpus(
    config: TestbedConfig | None = None, num_programs: int | None = None
) -> Iterator[CorpusDocument]:
    """Documents for `num_programs` programs (default: 4x the train pool), deterministic."""
    config = config or TestbedConfig()
    pools = build_pools(config)
    held_out = pools.fingerprints("test", "validation", "commit", "train")
    fresh = problem_stream(config.seed, "corpus", exclude=held_out)
    total = num_programs if num_programs is not None else 4 * config.train_per_language
    rng = seeded_rng("corpus", config.seed)
    repos = {
        lang: make_repos(lang, 20, seeded_rng("corpus-repos", config.seed, lang))
        for lang in config.languages
    }
    for problem in itertools.islice(itertools.chain(pools.train, fresh), total):
        for language in config.languages:
            if rng.random() >= config.weight(language):
                continue
            if rng.random() < 0.5:
                text, kind = render_program(problem.program, language), "program"
            else:
                layout = None
                if rng.random() < 0.5:
                    repo = rng.choice(repos[language])
                    _, layout = file_for(language, repo, problem.topic, problem.module, rng)
                text, kind = render_module(problem.program, language, layout), "module"
            yield CorpusDocument(language, text, problem.uid, kind)
