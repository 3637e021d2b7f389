"""Loaders on the real-schema samples in ../shared/data (skipped when the folder is absent).

Counts are the ones shared/data/README.md documents for each sample; expected prompts are
rebuilt here from the raw rows with the reference's formulas, independently of the loader.
"""

from __future__ import annotations

import difflib
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from advfusion_cli.data import load_task

SHARED = Path(
    os.environ.get("ADVFUSION_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")

COMMIT_COUNTS = {"python": 176, "java": 250, "ruby": 250, "go": 151, "javascript": 250, "php": 223}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_commitpackft_sample_counts_and_prompts():
    data = load_task("commit-message", str(SHARED / "commit_messages"), None, "all")
    per_language = Counter(e.language for e in data)
    assert dict(per_language) == COMMIT_COUNTS
    assert data.stats.dropped == {}
    # one repository per language: the grouped split must fall back to commits
    assert data.stats.split_method == dict.fromkeys(COMMIT_COUNTS, "commit")
    for language, total in COMMIT_COUNTS.items():
        sizes = [data.stats.counts[(language, s)] for s in ("train", "validation", "test")]
        assert sum(sizes) == total and min(sizes) > 0
    by_id = {e.id: e for e in data}
    for row in _rows(SHARED / "commit_messages/data/ruby/data.jsonl")[:25]:
        diff = difflib.unified_diff(
            row["old_contents"].splitlines(),
            row["new_contents"].splitlines(),
            fromfile=row["old_file"],
            tofile=row["new_file"],
            lineterm="",
        )
        expected = (
            "Based on the change given, only write commit message.\n### Diff:\n"
            + "\n".join(diff)
            + "\n### Commit Message:\n"
        )
        assert by_id[row["commit"]].prompt == expected
        assert by_id[row["commit"]].target == row["subject"]


def test_xcodeeval_materialised_and_raw_layouts_agree():
    materialised = load_task(
        "code-generation", str(SHARED / "code_generation/xcodeeval"), "ruby", "validation"
    )
    raw = load_task(
        "code-generation",
        str(SHARED / "code_generation/xcodeeval/raw"),
        "ruby",
        "validation",
        problems_split="validation",
    )
    assert len(materialised) == len(raw) == 106
    assert sum(len(e.tests) for e in materialised) == 5579
    twins = {e.meta["src_uid"]: e for e in raw}
    for example in materialised:
        twin = twins[example.meta["src_uid"]]
        assert (example.prompt, example.tests) == (twin.prompt, twin.tests)
        assert example.prompt.startswith('"""\n') and example.prompt.endswith('\n"""\n')
    row = _rows(SHARED / "code_generation/xcodeeval/validation.jsonl")[0]
    tests = json.loads(row["hidden_unit_tests"])
    example = next(e for e in materialised if e.meta["src_uid"] == row["src_uid"])
    assert example.tests == tuple((t["input"], tuple(t["output"])) for t in tests)
    assert example.prompt.startswith('"""\n' + row["prob_desc_description"].strip() + "\n\nInput\n")


def test_rosetta_rows_without_exec_outcome_survive_the_filter():
    data = load_task(
        "code-generation",
        str(SHARED / "code_generation/rosetta"),
        None,
        "train",
        exec_outcome="PASSED",
    )
    assert Counter(e.language for e in data) == dict.fromkeys(
        ["python", "java", "go", "ruby", "javascript", "php", "cpp", "rust"], 150
    )
    assert data.stats.dropped == {}


def test_codetransocean_samples_directions_and_counts():
    data = load_task("code-translation", str(SHARED / "code_translation"), None, "all")
    by_subset = Counter((e.meta["subset"], e.split) for e in data)
    assert by_subset == {
        ("MultilingualTrans", "train"): 965,
        ("MultilingualTrans", "validation"): 128,
        ("MultilingualTrans", "test"): 107,
        ("NicheTrans", "train"): 1140,
        ("NicheTrans", "validation"): 143,
        ("NicheTrans", "test"): 117,
        ("LLMTrans", "test"): 350,
    }
    assert data.stats.dropped == {}
    llm = [e for e in data if e.meta["subset"] == "LLMTrans"]
    assert {e.language for e in llm} == {"python"}
    assert Counter(e.source_language for e in llm) == dict.fromkeys(
        ["c", "cpp", "csharp", "go", "java", "php", "vb"], 50
    )
    by_id = {e.id: e for e in data}
    for row in _rows(SHARED / "code_translation/NicheTrans/niche_train.json")[:50]:
        source_key, target_key = list(row)[2], list(row)[3]
        example = by_id[f"NicheTrans:train:{row['id']}"]
        assert example.prompt == (
            f"### Code written in {source_key}:\n{row[source_key]}\n### Code written in {target_key}:\n"
        )
        assert example.target == row[target_key]


def test_cli_show_on_shared_samples(cli):
    result = cli(
        "data",
        "show",
        "--source",
        str(SHARED / "commit_messages"),
        "--lang",
        "ruby",
        "--split",
        "test",
        "-n",
        "1",
    )
    assert result.exit_code == 0, result.stderr
    assert "### Commit Message:" in result.stdout and "commit" in result.stdout
    result = cli(
        "data",
        "show",
        "--task",
        "code-generation",
        "--source",
        str(SHARED / "code_generation/xcodeeval"),
        "--lang",
        "ruby",
        "--split",
        "validation",
        "-n",
        "1",
    )
    assert result.exit_code == 0, result.stderr
