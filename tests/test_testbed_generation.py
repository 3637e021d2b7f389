"""Testbed files: real schemas field for field, determinism, caching, sizes, correspondence, edits."""

from __future__ import annotations

import difflib
import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from advfusion_cli.errors import UserError
from advfusion_cli.testbed import (
    TASK_DIRS,
    TestbedConfig,
    commit_split_fractions,
    ensure_testbed,
    generate_testbed,
    iter_corpus,
)
from advfusion_cli.testbed.edits import EDITS
from advfusion_cli.testbed.generator import fingerprint
from advfusion_cli.testbed.interpreter import evaluate
from advfusion_cli.testbed.naming import LANGUAGES
from advfusion_cli.testbed.pools import build_pools
from advfusion_cli.testbed.problems import format_output, parse_input
from advfusion_cli.testbed.render import render_module, render_program
from advfusion_cli.testbed.repos import REPO_SIZE
from advfusion_cli.testbed.writers import src_uid, translation_name

SMALL = TestbedConfig(
    seed=3, train_per_language=60, validation_per_language=8, test_per_language=10
)

COMMIT_FIELDS = [
    "commit",
    "old_file",
    "new_file",
    "old_contents",
    "new_contents",
    "subject",
    "message",
    "lang",
    "license",
    "repos",
]
XCODEEVAL_FIELDS = [
    "prob_desc_input_from", "lang", "src_uid", "difficulty", "prob_desc_sample_inputs",
    "prob_desc_time_limit", "tags", "prob_desc_output_spec", "prob_desc_input_spec", "lang_cluster",
    "source_code", "prob_desc_notes", "prob_desc_memory_limit", "file_name", "code_uid",
    "prob_desc_description", "prob_desc_output_to", "prob_desc_created_at", "exec_outcome",
    "prob_desc_sample_outputs", "hidden_unit_tests",
]  # fmt: skip
DISPLAY = {
    "python": "Python",
    "javascript": "JavaScript",
    "java": "Java",
    "go": "Go",
    "ruby": "Ruby",
}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("testbed") / "small"
    generate_testbed(SMALL, root)
    return root


def test_generation_is_byte_identical_and_seed_dependent(small_root, tmp_path):
    again = tmp_path / "again"
    generate_testbed(SMALL, again)
    assert tree_digest(small_root) == tree_digest(again)
    other = tmp_path / "other-seed"
    generate_testbed(
        TestbedConfig(
            seed=4, train_per_language=60, validation_per_language=8, test_per_language=10
        ),
        other,
    )
    first, second = tree_digest(small_root), tree_digest(other)
    assert first.keys() == second.keys()
    assert all(
        first[name] != second[name]
        for name in first
        if name.endswith(("jsonl", ".json")) and "testbed" not in name
    )


def test_ensure_testbed_caches_by_config_hash_and_leaves_no_partial_folders(tmp_path):
    root = ensure_testbed("code-translation", SMALL, cache_dir=tmp_path)
    assert root == tmp_path / SMALL.cache_key() / "CodeTransOcean"
    manifest = tmp_path / SMALL.cache_key() / "testbed.json"
    stamp = manifest.stat().st_mtime_ns
    assert (
        ensure_testbed("commit-message", SMALL, cache_dir=tmp_path)
        == tmp_path / SMALL.cache_key() / "commitpackft"
    )
    assert manifest.stat().st_mtime_ns == stamp  # reused, not regenerated
    assert [p.name for p in tmp_path.iterdir()] == [SMALL.cache_key()]  # no staging leftovers
    bigger = TestbedConfig(
        seed=3, train_per_language=61, validation_per_language=8, test_per_language=10
    )
    assert bigger.cache_key() != SMALL.cache_key()
    with pytest.raises(
        UserError, match="Unknown task 'commit-messages'. Did you mean 'commit-message'"
    ):
        ensure_testbed("commit-messages", SMALL, cache_dir=tmp_path)


def test_ensure_testbed_reads_the_cache_env_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVFUSION_CACHE", str(tmp_path))
    root = ensure_testbed("code-generation", SMALL)
    assert root == tmp_path / "testbed" / SMALL.cache_key() / "xcodeeval"
    assert {p.name for p in root.iterdir()} == {"train.jsonl", "validation.jsonl", "test.jsonl"}


def test_commitpackft_schema_and_sizes(small_root):
    root = small_root / TASK_DIRS["commit-message"]
    assert sorted(p.name for p in (root / "data").iterdir()) == sorted(LANGUAGES)
    for language in LANGUAGES:
        rows = read_jsonl(root / "data" / language / "data.jsonl")
        expected = (
            SMALL.train_size(language) + SMALL.validation_per_language + SMALL.test_per_language
        )
        assert len(rows) == expected
        for row in rows:
            assert list(row) == COMMIT_FIELDS
            assert all(isinstance(value, str) for value in row.values())
            assert re.fullmatch(r"[0-9a-f]{40}", row["commit"])
            assert row["old_file"] == row["new_file"]
            assert row["old_contents"] != row["new_contents"]
            assert row["message"] == row["subject"] + "\n" and row["subject"][0].isupper()
            assert row["lang"] == DISPLAY[language] and row["license"] == "mit"
            assert re.fullmatch(r"[a-z]+/[a-z-]+", row["repos"])
        assert len({row["commit"] for row in rows}) == len(rows)
        sizes = Counter(row["repos"] for row in rows)
        assert len(sizes) == -(-expected // REPO_SIZE)  # enough groups for a split by repository
        assert all(abs(n - expected / len(sizes)) <= 2 for n in sizes.values())  # equal sizes
        assert [row["commit"] for row in rows] == sorted(row["commit"] for row in rows)
    assert read_jsonl(root / "data" / "java" / "data.jsonl")[0]["old_file"].startswith(
        "src/main/java/com/"
    )
    assert all(
        r["old_file"].startswith("lib/") and r["old_file"].endswith(".rb")
        for r in read_jsonl(root / "data" / "ruby" / "data.jsonl")
    )


def test_commit_split_fractions_hold_out_full_size_target_splits(small_root):
    """Holding out whole (equal-sized) repositories by these fractions gives every language
    its configured sizes: the target keeps full validation/test splits, ~10x less train."""
    config = TestbedConfig()
    assert commit_split_fractions(config, "ruby") == pytest.approx((0.4, 0.2, 0.4))
    python = commit_split_fractions(config, "python")
    assert sum(python) == pytest.approx(1) and python[0] * 2300 == pytest.approx(2000)
    rows = read_jsonl(small_root / TASK_DIRS["commit-message"] / "data" / "ruby" / "data.jsonl")
    repos = sorted(Counter(row["repos"] for row in rows).items(), key=lambda item: -item[1])
    fractions = commit_split_fractions(SMALL, "ruby")
    held = [round(len(repos) * f) for f in fractions[1:]]
    sizes = [sum(n for _, n in repos[: held[0]]), sum(n for _, n in repos[held[0] : sum(held)])]
    assert abs(sizes[0] - SMALL.validation_per_language) <= REPO_SIZE
    assert abs(sizes[1] - SMALL.test_per_language) <= REPO_SIZE


def test_xcodeeval_schema_and_sizes(small_root):
    root = small_root / TASK_DIRS["code-generation"]
    counts = Counter()
    for split in ("train", "validation", "test"):
        for row in read_jsonl(root / f"{split}.jsonl"):
            assert list(row) == XCODEEVAL_FIELDS
            assert isinstance(row["difficulty"], int) and isinstance(row["tags"], list)
            assert all(
                isinstance(row[k], str) for k in XCODEEVAL_FIELDS if k not in ("difficulty", "tags")
            )
            assert row["exec_outcome"] == "PASSED"
            tests = json.loads(row["hidden_unit_tests"])
            assert tests and all(
                set(t) == {"input", "output"} and isinstance(t["output"], list) for t in tests
            )
            samples_in, samples_out = (
                json.loads(row["prob_desc_sample_inputs"]),
                json.loads(row["prob_desc_sample_outputs"]),
            )
            assert [s + "\n" for s in samples_in] == [t["input"] for t in tests[: len(samples_in)]]
            assert samples_out == [t["output"][0] for t in tests[: len(samples_out)]]
            assert (row["lang"], row["lang_cluster"]) in {
                ("Python 3", "Python"), ("Node.js", "Javascript"), ("Java 17", "Java"), ("Go", "Go"), ("Ruby 3", "Ruby"),
            }  # fmt: skip
            counts[(split, row["lang_cluster"])] += 1
    for cluster in ("Python", "Javascript", "Java", "Go"):
        assert counts[("train", cluster)] == 60
        assert counts[("validation", cluster)] == 8 and counts[("test", cluster)] == 10
    assert counts[("train", "Ruby")] == 6  # ~10x fewer train records for the target
    assert counts[("validation", "Ruby")] == 8 and counts[("test", "Ruby")] == 10  # full-size eval


def test_codetransocean_layout_directions_and_sizes(small_root):
    root = small_root / TASK_DIRS["code-translation"] / "MultilingualTrans"
    assert sorted(p.name for p in root.iterdir()) == [
        "multilingual_test.json",
        "multilingual_train.json",
        "multilingual_valid.json",
    ]
    keys = set(DISPLAY.values())
    involvement: Counter = Counter()
    directions: Counter = Counter()
    for split in ("train", "valid", "test"):
        rows = read_jsonl(root / f"multilingual_{split}.json")
        assert [row["id"] for row in rows] == list(range(len(rows)))
        for row in rows:
            names = list(row)
            assert names[:2] == ["id", "name"] and len(names) == 4 and names[2] != names[3]
            assert {names[2], names[3]} <= keys
            if split == "train":
                involvement.update(names[2:])
            directions[(split, names[3])] += 1
    assert directions[("train", "Ruby")] == 6 and directions[("train", "Go")] == 60
    assert directions[("valid", "Ruby")] == 8 and directions[("test", "Ruby")] == 10
    assert involvement["Ruby"] * 5 < involvement["Go"]  # the target is rare on both sides


def test_all_directions_appear_with_default_sizes():
    pools = build_pools(
        TestbedConfig(
            seed=0, train_per_language=200, validation_per_language=20, test_per_language=20
        )
    )
    from advfusion_cli.testbed.writers import translation_pairs

    config = TestbedConfig(
        seed=0, train_per_language=200, validation_per_language=20, test_per_language=20
    )
    seen = {(source, target) for _, source, target in translation_pairs(config, pools, "train")}
    assert len(seen) == 20  # every ordered pair of the five languages


def test_splits_hold_disjoint_programs_and_every_language_gets_the_same_problem(small_root):
    pools = build_pools(SMALL)
    prints = {name: pools.fingerprints(name) for name in ("train", "validation", "test", "commit")}
    names = list(prints)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert not prints[first] & prints[second], (first, second)
    rows = read_jsonl(small_root / TASK_DIRS["code-generation"] / "test.jsonl")
    by_uid = defaultdict(dict)
    for row in rows:
        by_uid[row["src_uid"]][row["lang_cluster"]] = row
    assert len(by_uid) == SMALL.test_per_language
    problems = {src_uid(SMALL, p): p for p in pools.test}
    for uid, per_language in by_uid.items():
        assert set(per_language) == {"Python", "Javascript", "Java", "Go", "Ruby"}
        statements = {
            (r["prob_desc_description"], r["hidden_unit_tests"]) for r in per_language.values()
        }
        assert len(statements) == 1  # one problem, five solutions
        program = problems[uid].program
        for cluster, language in (("Python", "python"), ("Java", "java"), ("Ruby", "ruby")):
            assert per_language[cluster]["source_code"] == render_program(program, language)


def test_hidden_tests_equal_the_interpreter_on_the_parsed_inputs():
    pools = build_pools(SMALL)
    for problem in (*pools.test, *pools.validation, *pools.train):
        entry = problem.program.entry
        assert len(problem.tests) >= 6 and len({t.output for t in problem.tests}) >= 2
        for test in problem.tests:
            args = parse_input(entry.params, test.input)
            assert format_output(entry.returns, evaluate(problem.program, args)) == test.output


def test_translation_pairs_are_the_same_program_in_two_languages(small_root):
    pools = build_pools(SMALL)
    by_name = {
        translation_name(SMALL, p): p for p in (*pools.train, *pools.validation, *pools.test)
    }
    language_of = {v: k for k, v in DISPLAY.items()}
    for split in ("train", "valid", "test"):
        for row in read_jsonl(
            small_root
            / TASK_DIRS["code-translation"]
            / "MultilingualTrans"
            / f"multilingual_{split}.json"
        ):
            problem = by_name[row["name"]]
            source, target = list(row)[2:]
            assert row[source] == render_module(problem.program, language_of[source])
            assert row[target] == render_module(problem.program, language_of[target])


def _changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
    removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    return removed, added


def _has_word(word: str, lines: list[str]) -> bool:
    return any(re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", line) for line in lines)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_edit_changes_the_code_and_its_subject_describes_it(language):
    rng = random.Random(11)
    pools = build_pools(SMALL)
    applied = Counter()
    for problem in pools.commit:
        for kind, edit_fn in EDITS.items():
            edit = edit_fn(problem.program, language, rng)
            if edit is None:
                continue
            applied[kind] += 1
            before, after = (
                render_module(edit.before, language),
                render_module(edit.after, language),
            )
            assert before != after, (kind, edit.subject)
            removed, added = _changed_lines(before, after)
            subject = edit.subject
            assert subject[0].isupper() and not subject.endswith(".")
            if kind in ("rename_variable", "rename_function"):
                match = re.match(
                    r"(?:Rename|Use|Give) (\w+)(?: variable| function)? (?:to|instead of|a clearer name)\s*(\w*)",
                    subject,
                )
                assert match, subject
                first, second = match.groups()
                old, new = (second, first) if subject.startswith("Use") else (first, second)
                assert _has_word(old, removed) and not _has_word(old, added), subject
                if new:
                    assert _has_word(new, added) and not _has_word(new, removed), subject
            elif kind == "add_guard":
                assert not removed and any(
                    "return" in line or "return" in line.lower() for line in added
                ), subject
            elif kind == "fix_off_by_one":
                assert any(
                    re.search(r"\b(for|while|range|times|each|downto|step)\b", line)
                    for line in removed + added
                ), subject
            elif kind == "change_constant":
                numbers = re.findall(r"-?\d+", subject)
                if subject.startswith("Use "):  # "Use 7 instead of 6 in f"
                    new, old = numbers
                else:  # "Change 6 to 7 in f", "Increase limit from 6 to 7", "Set limit to 7"
                    old, new = ([None, *numbers])[-2:]
                assert _has_word(new, added) and (old is None or _has_word(old, removed)), subject
            elif kind == "fix_comparison":
                assert len(removed) == len(added) == 1 and removed[0] != added[0]
                if subject.startswith("Use "):
                    good, bad = subject.split()[1], subject.split()[4]
                    assert f" {good} " in added[0] and f" {bad} " in removed[0]
            elif kind == "add_default":
                value = re.findall(r"\d+", subject)
                if language == "java":  # an overload that passes the default
                    assert (
                        not removed and any(f", {value[-1]});" in line for line in added)
                        if value
                        else added
                    )
                else:  # the signature gains `= value`
                    assert (
                        len(removed) == len(added) == 1
                        and " = " in added[0]
                        and " = " not in removed[0]
                    )
            elif kind == "extract_variable":
                name = re.match(
                    r"(?:Extract|Introduce|Store length of \w+ in|Compute length of \w+ once in) (\w+)",
                    subject,
                )
                if name and not subject.startswith("Compute"):
                    assert _has_word(name.group(1), added)
            elif kind == "add_doc_comment":
                assert not removed and all(
                    re.match(r"\s*(#|//|/\*\*|\*|\"\"\")", line) for line in added
                ), added
            elif kind == "remove_debug_print":
                if language == "go":  # the fmt import goes with the print
                    removed = [
                        line for line in removed if line and not re.match(r'import|\)|\t"', line)
                    ]
                    added = [
                        line for line in added if line and not re.match(r'import|\)|\t"', line)
                    ]
                assert not added and len(removed) == 1
                assert re.search(
                    r"print\(|console\.log|System\.out\.println|fmt\.Println|puts ", removed[0]
                )
    expected = set(EDITS) - ({"add_default"} if language == "go" else set())
    assert set(applied) == expected, applied


def test_corpus_is_single_language_documents_with_the_target_rare():
    pools = build_pools(SMALL)
    held_out = pools.fingerprints("test", "validation", "commit")
    docs = list(iter_corpus(SMALL, num_programs=150))
    per_language = Counter(doc.language for doc in docs)
    assert per_language["python"] > 100 and 0 < per_language["ruby"] * 4 < per_language["python"]
    assert {doc.kind for doc in docs} == {"program", "module"}
    assert len({doc.program_uid for doc in docs}) == 150
    assert docs == list(iter_corpus(SMALL, num_programs=150))  # deterministic
    corpus_programs = {doc.program_uid for doc in docs}
    train_uids = {p.uid for p in pools.train}
    assert train_uids <= corpus_programs  # train programs first, then fresh ones
    fresh = [p for p in _stream_problems(SMALL, corpus_programs - train_uids)]
    assert fresh and not {fingerprint(p.program) for p in fresh} & held_out
    java_doc = next(doc for doc in docs if doc.language == "java" and doc.kind == "program")
    assert "public class Main" in java_doc.text and "public static void main" in java_doc.text


def _stream_problems(config, uids):
    from itertools import islice

    from advfusion_cli.testbed.generator import problem_stream

    pools = build_pools(config)
    held = pools.fingerprints("test", "validation", "commit", "train")
    wanted = set(uids)
    for problem in islice(problem_stream(config.seed, "corpus", exclude=held), len(wanted)):
        if problem.uid in wanted:
            yield problem
