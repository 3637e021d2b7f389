"""Loaders: layouts, splits, joins, language names, malformed records, sources (hub, testbed)."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from advfusion_cli.data import describe_options, list_tasks, load_task, sources
from advfusion_cli.data.languages import canonical_language, display_name, normalize_language
from advfusion_cli.data.splits import split_by_repository
from advfusion_cli.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


# ---- registry, names ---------------------------------------------------------------------


def test_registry_lists_the_tasks_and_suggests_on_typos():
    assert list_tasks() == ["code-generation", "code-translation", "commit-message", "custom"]
    with pytest.raises(UserError, match="Unknown task 'code-gen'. Did you mean 'code-generation'"):
        load_task("code-gen", str(FIXTURES / "xcodeeval"))
    assert describe_options("commit-message") == {
        "seed": 0,
        "split_fractions": (0.8, 0.1, 0.1),
        "language_fractions": None,
    }


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("C++", "cpp"),
        ("cpp", "cpp"),
        ("c++", "cpp"),
        ("GNU C++17", "cpp"),
        ("GNU C++17 (64)", "cpp"),
        ("Clang++20 Diagnostics", "cpp"),
        ("GNU G++17 7.3.0", "cpp"),
        ("C#", "csharp"),
        ("csharp", "csharp"),
        ("c-sharp", "csharp"),
        ("MS C#", "csharp"),
        ("Mono C#", "csharp"),
        ("JavaScript", "javascript"),
        ("Javascript", "javascript"),
        ("js", "javascript"),
        ("Node.js", "javascript"),
        ("Python 3", "python"),
        ("PyPy 3", "python"),
        ("PyPy 3-64", "python"),
        ("Java 17", "java"),
        ("Ruby 3", "ruby"),
        ("Kotlin 1.4", "kotlin"),
        ("GNU C11", "c"),
        ("Go", "go"),
        ("VB", "vb"),
        ("Visual-Basic-.NET", "vb"),
        ("Common_Lisp", "common-lisp"),
        (" ruby ", "ruby"),
    ],
)
def test_language_spellings_normalise_to_one_id(name, canonical):
    assert normalize_language(name) == canonical


def test_unknown_language_and_display_names():
    assert normalize_language("Brainfart 2") is None
    with pytest.raises(UserError, match="Unknown language 'rubby'. Did you mean 'ruby'"):
        canonical_language("rubby")
    assert [display_name(x) for x in ("cpp", "csharp", "javascript", "python", "ruby")] == [
        "C++",
        "C#",
        "JavaScript",
        "Python",
        "Ruby",
    ]


def test_unknown_option_and_split_are_user_errors():
    root = str(FIXTURES / "commitpackft")
    with pytest.raises(UserError, match="Unknown option for task 'commit-message' 'sead'"):
        load_task("commit-message", root, "ruby", sead=1)
    with pytest.raises(UserError, match="Unknown split 'tset'. Did you mean 'test'"):
        load_task("commit-message", root, "ruby", "tset")
    with pytest.raises(UserError, match="split_fractions must sum to 1"):
        load_task("commit-message", root, "ruby", split_fractions=(0.5, 0.1, 0.1))


# ---- CommitPackFT grouped split ------------------------------------------------------------


def test_grouped_split_keeps_every_repository_in_one_split_and_is_deterministic():
    root = str(FIXTURES / "commitpackft")
    first = load_task("commit-message", root, "ruby", "all", seed=3)
    again = load_task("commit-message", root, "ruby", "all", seed=3)
    assert [(e.id, e.split) for e in first] == [(e.id, e.split) for e in again]
    assert first.stats.split_method == {"ruby": "repository"}
    split_of_repo: dict[str, set[str]] = {}
    for example in first:
        for repo in example.meta["repos"]:
            split_of_repo.setdefault(repo, set()).add(example.split)
    assert all(len(splits) == 1 for splits in split_of_repo.values()), split_of_repo
    # "acme/shop,forker/shop" links the two repositories: same split for all three commits
    linked = {e.split for e in first if {"acme/shop", "forker/shop"} & set(e.meta["repos"])}
    assert len(linked) == 1
    # 5 groups (two repositories are linked) -> 3 train, 1 validation, 1 test groups
    repos_per_split = {
        split: {r for e in first if e.split == split for r in e.meta["repos"]}
        for split in ("train", "validation", "test")
    }
    groups = {s: len(r) - ("acme/shop" in r) for s, r in repos_per_split.items()}  # linked pair
    assert groups == {"train": 3, "validation": 1, "test": 1}


def test_grouped_split_does_not_depend_on_read_order():
    items = [(f"{i:02d}", f"repo{i % 7}") for i in range(40)]
    forward, _ = split_by_repository(
        items, repos_of=lambda x: [x[1]], unit_of=lambda x: x[0], seed=5
    )
    backward, _ = split_by_repository(
        items[::-1], repos_of=lambda x: [x[1]], unit_of=lambda x: x[0], seed=5
    )
    assert dict(zip(items, forward, strict=True)) == dict(zip(items[::-1], backward, strict=True))
    other_seed, _ = split_by_repository(
        items, repos_of=lambda x: [x[1]], unit_of=lambda x: x[0], seed=6
    )
    assert other_seed != forward


def test_too_few_repositories_fall_back_to_a_seeded_split_by_commit():
    root = str(FIXTURES / "commitpackft")
    data = load_task("commit-message", root, "python", "all")
    assert data.stats.split_method == {"python": "commit"}
    assert sorted(e.split for e in data) == ["test", "train", "validation"]
    # one repository, so the grouped rule alone could not have produced three splits
    assert {r for e in data for r in e.meta["repos"]} == {"pallets/tiny"}


def test_split_fractions_option_changes_sizes():
    root = str(FIXTURES / "commitpackft")
    data = load_task("commit-message", root, "ruby", "all", split_fractions=(1.0, 0.0, 0.0))
    assert {e.split for e in data} == {"train"}
    with pytest.raises(UserError, match="No commit-message examples .* split test"):
        load_task("commit-message", root, "ruby", "test", split_fractions=(1.0, 0.0, 0.0))


# ---- xCodeEval ---------------------------------------------------------------------------


def test_exec_outcome_filter_keeps_rows_without_an_outcome():
    root = str(FIXTURES / "xcodeeval")
    every = load_task("code-generation", root, "ruby", "train")
    assert sorted(e.id for e in every) == ["u-rb-rev", "u-rb-sum", "u-rb-sum-wrong"]
    passed = load_task("code-generation", root, "ruby", "train", exec_outcome="PASSED")
    assert sorted(e.id for e in passed) == ["u-rb-rev", "u-rb-sum"]  # u-rb-rev has no outcome
    assert passed.stats.dropped == {"exec_outcome is not PASSED": 1}


def test_problem_only_rows_expand_to_the_requested_languages_with_tests():
    data = load_task("code-generation", str(FIXTURES / "xcodeeval"), ["ruby", "go"], "validation")
    assert sorted(e.id for e in data) == [
        "0123456789abcdef0123456789abcdef:go",
        "0123456789abcdef0123456789abcdef:ruby",
        "fedcba9876543210fedcba9876543210:go",
        "fedcba9876543210fedcba9876543210:ruby",
    ]
    example = next(e for e in data if e.id.endswith("f:ruby"))
    assert example.target == "" and example.meta["problem_only"]
    assert example.tests == (("1 2\r\n", ("3",)), ("10 20\r\n", ("30", "30\n")))


def test_raw_layout_joins_descriptions_and_unit_tests_by_src_uid():
    materialised = load_task("code-generation", str(FIXTURES / "xcodeeval"), None, "all")
    raw = load_task("code-generation", str(FIXTURES / "xcodeeval_raw"), None, "all")
    key = lambda e: (e.id, e.split)  # noqa: E731
    assert sorted(map(key, raw)) == sorted(map(key, materialised))
    by_key = {key(e): e for e in materialised}
    for example in raw:
        twin = by_key[key(example)]
        assert (example.prompt, example.target, example.tests, example.language) == (
            twin.prompt,
            twin.target,
            twin.tests,
            twin.language,
        )


def test_raw_layout_without_solution_files_is_a_problem_bank(tmp_path):
    for name in ("problem_descriptions.jsonl", "unittest_db.json"):
        shutil.copy(FIXTURES / "xcodeeval_raw" / name, tmp_path / name)
    data = load_task("code-generation", str(tmp_path), "ruby", "test")
    assert len(data) == 2 and all(e.meta["problem_only"] for e in data)
    moved = load_task(
        "code-generation", str(tmp_path), "ruby", "validation", problems_split="valid"
    )
    assert len(moved) == 2
    with pytest.raises(UserError, match="choose the language"):
        load_task("code-generation", str(tmp_path), None, "test")


def test_raw_row_with_unknown_src_uid_is_counted(tmp_path):
    shutil.copytree(FIXTURES / "xcodeeval_raw", tmp_path / "x")
    rows = tmp_path / "x/program_synthesis/train/train_000.jsonl"
    rows.write_text(
        rows.read_text()
        + json.dumps(
            {
                "lang": "Ruby 3",
                "source_code": "p 1\n",
                "lang_cluster": "Ruby",
                "src_uid": "nope",
                "code_uid": "z",
                "exec_outcome": "PASSED",
            }
        )
        + "\n"
    )
    data = load_task("code-generation", str(tmp_path / "x"), "ruby", "train")
    assert data.stats.dropped == {"src_uid not in problem_descriptions": 1}


# ---- malformed records -------------------------------------------------------------------


def _good_commit(**changes) -> dict:
    row = {
        "commit": "ab" * 20,
        "old_file": "a.rb",
        "new_file": "a.rb",
        "old_contents": "x = 1\n",
        "new_contents": "x = 2\n",
        "subject": "Change x",
        "message": "Change x\n",
        "lang": "Ruby",
        "license": "mit",
        "repos": "o/r",
    }
    row.update(changes)
    return row


@pytest.fixture
def malformed_commits(tmp_path) -> Path:
    lines = [
        json.dumps(_good_commit()).encode(),
        b'{"commit": "broken',
        json.dumps({k: v for k, v in _good_commit().items() if k != "subject"}).encode(),
        json.dumps(_good_commit(subject=7)).encode(),
        json.dumps(_good_commit(subject="caf\u00e9")).encode().replace(b"caf", b"caf\xff"),
        json.dumps(_good_commit(subject="   ")).encode(),
        b"[1, 2]",
        json.dumps(_good_commit(lang="Klingon")).encode(),
        b"",
        json.dumps(_good_commit(commit="cd" * 20)).encode(),
    ]
    path = tmp_path / "data" / "ruby" / "data.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return tmp_path


def test_malformed_records_are_counted_per_reason(malformed_commits):
    data = load_task("commit-message", str(malformed_commits), "ruby", "all")
    assert sorted(e.id for e in data) == ["ab" * 20, "cd" * 20]
    assert data.stats.dropped == {
        "invalid JSON": 1,
        "missing field 'subject'": 1,
        "wrong type for field 'subject'": 1,
        "invalid UTF-8": 1,
        "empty target": 1,
        "not a JSON object": 1,
        "unknown language 'Klingon'": 1,
    }


def test_strict_stops_at_the_first_malformed_record_naming_file_and_line(malformed_commits):
    path = malformed_commits / "data" / "ruby" / "data.jsonl"
    with pytest.raises(UserError) as err:
        load_task("commit-message", str(malformed_commits), "ruby", "all", strict=True)
    assert str(err.value).startswith(f"{path}:2: malformed record: invalid JSON (")
    assert "\n" not in str(err.value)


def test_translation_rows_with_too_few_keys_or_unknown_languages(tmp_path):
    folder = tmp_path / "NicheTrans"
    folder.mkdir()
    rows = [
        {"id": 0, "name": "t", "Python": "print(1)\n", "Ruby": "p 1\n"},
        {"id": 1, "name": "t", "Ruby": "p 1\n"},
        {"id": 2, "name": "t", "Python": "print(1)\n", "Quenya": "x"},
        {"id": 3, "name": "t", "Python": "print(1)\n", "Ruby": ""},
        {"id": 4, "name": "t", "Python": 5, "Ruby": "p 1\n"},
    ]
    (folder / "niche_train.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_task("code-translation", str(tmp_path), None, "train")
    assert [e.id for e in data] == ["NicheTrans:train:0"]
    assert data.stats.dropped == {
        "fewer than 4 keys (no language pair)": 1,
        "unknown language 'Quenya'": 1,
        "empty target": 1,
        "wrong type for field 'Python'": 1,
    }


def test_parquet_rows_load_like_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        json.loads(line) for line in (FIXTURES / "xcodeeval/train.jsonl").read_text().splitlines()
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    from_parquet = load_task("code-generation", str(tmp_path), "ruby", "train")
    from_jsonl = load_task("code-generation", str(FIXTURES / "xcodeeval"), "ruby", "train")
    assert [(e.id, e.prompt, e.target, e.tests) for e in from_parquet] == [
        (e.id, e.prompt, e.target, e.tests) for e in from_jsonl
    ]


def test_parquet_is_refused_for_codetransocean(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "NicheTrans").mkdir()
    table = pa.Table.from_pylist([{"id": 0, "name": "t", "Python": "a", "Ruby": "b"}])
    pq.write_table(table, tmp_path / "NicheTrans" / "niche_train.parquet")
    with pytest.raises(UserError, match="key order"):
        load_task("code-translation", str(tmp_path), None, "train")


def test_a_single_file_source(tmp_path):
    data = load_task(
        "commit-message", str(FIXTURES / "commitpackft/data/ruby/data.jsonl"), None, "all"
    )
    assert len(data) == 8 and {e.language for e in data} == {"ruby"}
    niche = load_task(
        "code-translation",
        str(FIXTURES / "codetransocean/NicheTrans/niche_test.json"),
        None,
        "test",
    )
    assert [(e.source_language, e.language) for e in niche] == [("go", "ruby")]


def test_missing_path_and_empty_selection_are_user_errors():
    with pytest.raises(UserError, match="does not exist"):
        load_task("commit-message", "/no/such/folder")
    with pytest.raises(UserError, match="No commit-message examples .* for split train and go"):
        load_task("commit-message", str(FIXTURES / "commitpackft"), "go")


# ---- sources: hub and testbed ------------------------------------------------------------


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """snapshot_download that serves fixture trees, filtered by allow_patterns like the hub."""
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    repos = {
        "bigcode/commitpackft": FIXTURES / "commitpackft",
        "NTU-NLP-sg/xCodeEval": FIXTURES / "xcodeeval_raw",
        "WeixiangYan/CodeTransOcean": FIXTURES / "codetransocean",
    }
    calls: list[tuple[str, list[str]]] = []

    def listing(repo_id, revision=None):
        origin = repos[repo_id]
        files = [p.relative_to(origin).as_posix() for p in origin.rglob("*") if p.is_file()]
        if repo_id == "WeixiangYan/CodeTransOcean":  # the hub keeps a "CodeTrans Datasets/" level
            files = [f"CodeTrans Datasets/{f}" for f in files]
        return sorted(files)

    def snapshot_download(repo_id, *, repo_type=None, allow_patterns=None, **_):
        assert repo_type == "dataset"
        calls.append((repo_id, list(allow_patterns)))
        origin = repos[repo_id]
        files = listing(repo_id)
        snapshot = tmp_path / repo_id.replace("/", "--")
        for name in filter_repo_objects(files, allow_patterns=allow_patterns):
            source = origin / name.removeprefix("CodeTrans Datasets/")
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, snapshot / name)
        snapshot.mkdir(exist_ok=True)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(sources, "list_hub_files", listing)
    return calls


def test_hub_commitpackft_downloads_only_the_language_configs(fake_hub):
    local = load_task("commit-message", str(FIXTURES / "commitpackft"), "ruby", "all")
    hub = load_task("commit-message", "hub:", "ruby", "all")  # bare hub: = the task's dataset
    assert fake_hub == [("bigcode/commitpackft", ["data/ruby/*"])]
    assert [(e.id, e.prompt, e.split) for e in hub] == [(e.id, e.prompt, e.split) for e in local]
    load_task("commit-message", "hub:bigcode/commitpackft", ["C++"], "all")
    assert fake_hub[-1] == ("bigcode/commitpackft", ["data/c++/*"])


def test_hub_xcodeeval_joins_the_raw_files(fake_hub):
    data = load_task("code-generation", "hub:NTU-NLP-sg/xCodeEval", "ruby", "train")
    assert fake_hub[-1][1] == [  # the files themselves, chosen from the listing
        "problem_descriptions.jsonl",
        "program_synthesis/train/train_000.jsonl",
        "unittest_db.json",
    ]
    assert sorted(e.id for e in data) == ["u-rb-rev", "u-rb-sum", "u-rb-sum-wrong"]
    assert all(e.tests for e in data)


def test_hub_codetransocean_reads_the_nested_folder(fake_hub):
    data = load_task(
        "code-translation", "hub:WeixiangYan/CodeTransOcean", "ruby", "test", subsets=["NicheTrans"]
    )
    assert fake_hub[-1][1] == ["*NicheTrans/niche_test.json"]
    assert [e.id for e in data] == ["NicheTrans:test:3"]


def test_hub_failures_become_user_errors(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(UserError, match="Could not download hub:bigcode/commitpackft"):
        load_task("commit-message", "hub:bigcode/commitpackft", "ruby")


def test_testbed_source_resolves_through_ensure_testbed(monkeypatch):
    asked: list[str] = []
    roots = {"commit-message": FIXTURES / "commitpackft"}
    fake = types.ModuleType("advfusion_cli.testbed")

    def ensure_testbed(task, config=None, cache_dir=None):
        asked.append(task)
        return roots[task]

    class TestbedConfig:
        languages = ("ruby",)

    def commit_split_fractions(config, language):
        return (0.2, 0.4, 0.4)  # the testbed's per-language split sizes

    fake.ensure_testbed = ensure_testbed
    fake.TestbedConfig = TestbedConfig
    fake.commit_split_fractions = commit_split_fractions
    monkeypatch.setitem(sys.modules, "advfusion_cli.testbed", fake)
    data = load_task("commit-message", languages="ruby", split="all")  # source defaults to testbed
    assert asked == ["commit-message"] and len(data) == 8
    assert data.stats.split_method["ruby"] in {"repository", "commit"}
    assert sum(1 for e in data if e.split == "train") == 2  # 6 with the default 0.8


def test_bad_unit_tests_and_unknown_compilers_in_xcodeeval_rows(tmp_path):
    rows = [
        json.loads(line) for line in (FIXTURES / "xcodeeval/train.jsonl").read_text().splitlines()
    ]
    rows[0]["hidden_unit_tests"] = "[{"
    rows[1]["hidden_unit_tests"] = json.dumps([{"input": 1, "output": ["2"]}])
    rows[2]["lang"], rows[2]["lang_cluster"] = "Befunge 98", ""
    rows[3]["source_code"] = ""
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_task("code-generation", str(tmp_path), None, "train")
    assert sorted(e.id for e in data) == ["u-cpp-rev", "u-js-rev"]
    assert data.stats.dropped == {
        "invalid JSON in field 'hidden_unit_tests'": 1,
        "wrong type for field 'hidden_unit_tests'": 1,
        "unknown language 'Befunge 98'": 1,
        "empty target": 1,
    }
    with pytest.raises(UserError, match=r"train.jsonl:1: malformed record: invalid JSON in field"):
        load_task("code-generation", str(tmp_path), None, "train", strict=True)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["commit-message", "code-generation", "code-translation"])
def test_the_generated_testbed_loads_without_drops(task, monkeypatch, tmp_path):
    testbed = pytest.importorskip("advfusion_cli.testbed")
    if not hasattr(testbed, "ensure_testbed"):
        pytest.skip("advfusion_cli.testbed.ensure_testbed is not there yet")
    monkeypatch.setenv("ADVFUSION_CACHE", str(tmp_path))
    data = load_task(task, "testbed", None, "all")
    assert data.stats.dropped == {}
    assert {"python", "javascript", "java", "go", "ruby"} <= set(data.stats.languages)
    assert all(e.prompt and (e.target or e.tests) for e in data)
