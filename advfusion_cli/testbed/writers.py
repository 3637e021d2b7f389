"""Write the three tasks in the real datasets' on-disk schemas (see notes/data-contract.md).

- commit-message: CommitPackFT `data/<lang>/data.jsonl`, 10 string fields.
- code-generation: xCodeEval program_synthesis rows, 21 fields, `{train,validation,test}.jsonl`.
- code-translation: CodeTransOcean `MultilingualTrans/multilingual_{train,valid,test}.json`
  (JSON Lines; key order = direction: 3rd key source, 4th key target).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import Counter
from pathlib import Path

from .config import TestbedConfig
from .edits import draw_edits
from .generator import seeded_rng
from .naming import kebab
from .pools import EDITS_PER_PROGRAM, Pools, commit_records
from .problems import Problem
from .render import render_module, render_program
from .repos import REPO_SIZE, file_for, make_repos

DISPLAY = {
    "python": "Python",
    "javascript": "JavaScript",
    "java": "Java",
    "go": "Go",
    "ruby": "Ruby",
}
XCODEEVAL_LANG = {
    "python": "Python 3",
    "javascript": "Node.js",
    "java": "Java 17",
    "go": "Go",
    "ruby": "Ruby 3",
}
XCODEEVAL_CLUSTER = {
    "python": "Python",
    "javascript": "Javascript",
    "java": "Java",
    "go": "Go",
    "ruby": "Ruby",
}
SPLIT_FILES = {"train": "train", "validation": "valid", "test": "test"}  # CodeTransOcean names


def src_uid(config: TestbedConfig, problem: Problem) -> str:
    """32-hex problem id shared by every language (xCodeEval `src_uid`)."""
    return hashlib.md5(f"advfusion-testbed:{config.seed}:{problem.uid}".encode()).hexdigest()


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


# ----- code generation (xCodeEval program_synthesis) -----------------------------------


def xcodeeval_row(config: TestbedConfig, problem: Problem, language: str) -> dict:
    uid = src_uid(config, problem)
    samples = problem.samples
    return {
        "prob_desc_input_from": "standard input",
        "lang": XCODEEVAL_LANG[language],
        "src_uid": uid,
        "difficulty": problem.difficulty,
        "prob_desc_sample_inputs": json.dumps([t.input.removesuffix("\n") for t in samples]),
        "prob_desc_time_limit": "1 second",
        "tags": list(problem.tags),
        "prob_desc_output_spec": problem.output_spec,
        "prob_desc_input_spec": problem.input_spec,
        "lang_cluster": XCODEEVAL_CLUSTER[language],
        "source_code": render_program(problem.program, language),
        "prob_desc_notes": "",
        "prob_desc_memory_limit": "256 megabytes",
        "file_name": hashlib.sha256(f"{uid}:{language}:file".encode()).hexdigest(),
        "code_uid": hashlib.md5(f"{uid}:{language}".encode()).hexdigest(),
        "prob_desc_description": problem.description,
        "prob_desc_output_to": "standard output",
        "prob_desc_created_at": str(1_500_000_000 + int(uid[:7], 16) % 200_000_000),
        "exec_outcome": "PASSED",
        "prob_desc_sample_outputs": json.dumps([t.output for t in samples]),
        "hidden_unit_tests": json.dumps(
            [{"input": t.input, "output": [t.output]} for t in problem.tests]
        ),
    }


def code_generation_problems(
    config: TestbedConfig, pools: Pools, split: str, language: str
) -> list[Problem]:
    """Which problems a language has in a split: the target gets a subset of train only."""
    problems = list(pools.split(split))
    if split == "train" and config.train_size(language) < len(problems):
        rng = seeded_rng("code-generation", config.seed, language)
        problems = rng.sample(problems, config.train_size(language))
    return problems


def write_code_generation(config: TestbedConfig, pools: Pools, root: Path) -> Counter:
    counts: Counter = Counter()
    for split in ("train", "validation", "test"):
        rows = []
        for language in config.languages:
            for problem in code_generation_problems(config, pools, split, language):
                rows.append(xcodeeval_row(config, problem, language))
                counts[(split, language)] += 1
        seeded_rng("code-generation-order", config.seed, split).shuffle(rows)
        _write_jsonl(root / f"{split}.jsonl", rows)
    return counts


# ----- code translation (CodeTransOcean MultilingualTrans) -----------------------------


def translation_name(config: TestbedConfig, problem: Problem) -> str:
    """`count-prices-above-1a2b3c4d`: the entry function and the first 8 hex of `src_uid`."""
    return f"{kebab(problem.program.entry.name)}-{src_uid(config, problem)[:8]}"


def translation_pairs(
    config: TestbedConfig, pools: Pools, split: str
) -> list[tuple[Problem, str, str]]:
    """(problem, source, target) triples. Train: `train_size(target)` pairs per target, with
    the low-resource language rarer as source too; evaluation: every pool program per target."""
    rng = seeded_rng("code-translation", config.seed, split)
    pairs = []
    for target in config.languages:
        sources = [lang for lang in config.languages if lang != target]
        if split == "train":
            size = min(config.train_size(target), len(pools.train))
            problems = rng.sample(list(pools.train), size)
            weights = [config.weight(lang) for lang in sources]
            chosen = rng.choices(sources, weights, k=len(problems))
        else:
            problems = list(pools.split(split))
            chosen = [rng.choice(sources) for _ in problems]
        pairs += [(p, src, target) for p, src in zip(problems, chosen, strict=True)]
    rng.shuffle(pairs)
    return pairs


def write_code_translation(config: TestbedConfig, pools: Pools, root: Path) -> Counter:
    counts: Counter = Counter()
    cache: dict[tuple[str, str], str] = {}

    def code(problem: Problem, language: str) -> str:
        key = (problem.uid, language)
        if key not in cache:
            cache[key] = render_module(problem.program, language)
        return cache[key]

    for split, suffix in SPLIT_FILES.items():
        rows = []
        for index, (problem, source, target) in enumerate(translation_pairs(config, pools, split)):
            rows.append(
                {
                    "id": index,
                    "name": translation_name(config, problem),
                    DISPLAY[source]: code(problem, source),
                    DISPLAY[target]: code(problem, target),
                }
            )
            counts[(split, source, target)] += 1
        _write_jsonl(root / "MultilingualTrans" / f"multilingual_{suffix}.json", rows)
    return counts


# ----- commit messages (CommitPackFT) --------------------------------------------------


def commit_rows(config: TestbedConfig, pools: Pools, language: str) -> list[dict]:
    rng = seeded_rng("commit-message", config.seed, language)
    wanted = commit_records(config, language)
    repos = make_repos(language, math.ceil(wanted / REPO_SIZE), rng)
    programs = list(pools.commit)
    rng.shuffle(programs)
    rows: list[dict] = []
    for problem in programs:  # each file gets a few commits, all from the same parent
        if len(rows) == wanted:
            break
        # Fill repositories in turn, to equal sizes (within one file's commits).
        repo = repos[min(len(rows) * len(repos) // wanted, len(repos) - 1)]
        path, layout = file_for(language, repo, problem.topic, problem.module, rng)
        documented = tuple(
            dataclasses.replace(f, documented=rng.random() < 0.3) for f in problem.program.functions
        )
        base = dataclasses.replace(problem.program, functions=documented)
        for edit in draw_edits(base, language, rng, min(EDITS_PER_PROGRAM, wanted - len(rows))):
            old = render_module(edit.before, language, layout)
            new = render_module(edit.after, language, layout)
            if old == new:
                continue
            digest = hashlib.sha1(
                f"{config.seed}:{language}:{repo.full_name}:{path}:{old}\0{new}".encode()
            )
            rows.append(
                {
                    "commit": digest.hexdigest(),
                    "old_file": path,
                    "new_file": path,
                    "old_contents": old,
                    "new_contents": new,
                    "subject": edit.subject,
                    "message": edit.subject + "\n",
                    "lang": DISPLAY[language],
                    "license": "mit",
                    "repos": repo.full_name,
                }
            )
    if len(rows) < wanted:
        raise RuntimeError(f"only {len(rows)} of {wanted} commit records for {language}")
    rows.sort(key=lambda row: row["commit"])
    return rows


def write_commit_messages(config: TestbedConfig, pools: Pools, root: Path) -> Counter:
    counts: Counter = Counter()
    for language in config.languages:
        rows = commit_rows(config, pools, language)
        _write_jsonl(root / "data" / language / "data.jsonl", rows)
        counts[language] = len(rows)
    return counts
