"""xCodeEval at full size: a hub load fetches only the wanted splits' and languages' files
(hub listing and download mocked, no network); training gets a validation split with targets,
carved out of train by problem with a seeded hash; a phase without validation examples makes
the plan say keep-best is off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
from conftest import run_cli
from test_evaluate_support import make_model, training_args, write_translation

from advfusion_cli.data import load_task, sources
from advfusion_cli.data.tasks.xcodeeval import carved_problems, file_language, select_hub_files
from advfusion_cli.errors import UserError
from advfusion_cli.spec.schema import DataSpec
from advfusion_cli.workflows.task_data import load_examples

FIXTURES = Path(__file__).parent / "fixtures" / "data"

LISTING = [
    ".gitattributes",
    "README.md",
    "xCodeEval.py",
    "problem_descriptions.jsonl",
    "unittest_db.json",
    "apr/train/train_000.jsonl",
    "code_translation/train/train_000.jsonl",
    "program_synthesis/train/train_000.jsonl",  # the official shards mix languages
    "program_synthesis/train/train_001.jsonl",
    "program_synthesis/train/train_Python_000.jsonl",  # per-language files (mirrors)
    "program_synthesis/train/train_Java_000.jsonl",
    "program_synthesis/train/C++/part-000.jsonl",
    "program_synthesis/train/Python/part-000.jsonl",
    "program_synthesis/validation/prog_syn_val.jsonl",
    "program_synthesis/test/prog_syn_test.jsonl",
]


def test_files_are_chosen_by_split_and_language_from_the_listing():
    assert file_language("program_synthesis/train/train_Java_000.jsonl") == "java"
    assert file_language("program_synthesis/train/C++/part-000.jsonl") == "cpp"
    assert file_language("program_synthesis/train/train_000.jsonl") is None
    assert file_language("program_synthesis/validation/prog_syn_val.jsonl") is None

    python_train = select_hub_files(LISTING, ("train", "validation"), frozenset({"python"}))
    assert python_train == [
        "problem_descriptions.jsonl",
        "program_synthesis/train/Python/part-000.jsonl",
        "program_synthesis/train/train_000.jsonl",
        "program_synthesis/train/train_001.jsonl",
        "program_synthesis/train/train_Python_000.jsonl",
        "program_synthesis/validation/prog_syn_val.jsonl",
        "unittest_db.json",
    ]
    test_only = select_hub_files(LISTING, ("test",), frozenset({"java"}))
    assert test_only == [
        "problem_descriptions.jsonl",
        "program_synthesis/test/prog_syn_test.jsonl",
        "unittest_db.json",
    ]
    every = select_hub_files(LISTING, ("train",), None)  # no language given: all of train
    assert "program_synthesis/train/train_Java_000.jsonl" in every
    assert not any(f.startswith(("apr/", "code_translation/")) for f in every)


@pytest.fixture
def per_language_hub(monkeypatch, tmp_path):
    """A hub repository whose train files are one per language; records what is fetched."""
    origin = tmp_path / "origin"
    shutil.copytree(FIXTURES / "xcodeeval_raw", origin)
    shard = origin / "program_synthesis/train/train_000.jsonl"
    rows = [json.loads(line) for line in shard.read_text().splitlines()]
    shard.unlink()
    for cluster in {row["lang_cluster"] for row in rows}:
        named = origin / f"program_synthesis/train/train_{cluster}_000.jsonl"
        named.write_text(
            "".join(json.dumps(r) + "\n" for r in rows if r["lang_cluster"] == cluster)
        )
    listing = sorted(p.relative_to(origin).as_posix() for p in origin.rglob("*") if p.is_file())
    fetched: list[list[str]] = []

    def snapshot_download(repo_id, *, repo_type=None, allow_patterns=None, **_):
        from huggingface_hub.utils import filter_repo_objects

        fetched.append(list(allow_patterns))
        snapshot = tmp_path / "snapshot"
        for name in filter_repo_objects(listing, allow_patterns=allow_patterns):
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(origin / name, snapshot / name)
        return str(snapshot)

    monkeypatch.setattr(sources, "list_hub_files", lambda repo_id, revision=None: listing)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return fetched


def test_a_hub_load_fetches_only_the_requested_languages_files(per_language_hub):
    data = load_task("code-generation", "hub:NTU-NLP-sg/xCodeEval", "ruby", "train")
    assert per_language_hub[-1] == [
        "problem_descriptions.jsonl",
        "program_synthesis/train/train_Ruby_000.jsonl",
        "unittest_db.json",
    ]
    assert sorted(e.id for e in data) == ["u-rb-rev", "u-rb-sum", "u-rb-sum-wrong"]
    # with the training carve-out, validation is read with train (it decides the carve-out)
    load_task("code-generation", "hub:", "ruby", "train", validation_fraction=0.05, split_seed=3)
    assert per_language_hub[-1] == [
        "problem_descriptions.jsonl",
        "program_synthesis/train/train_Ruby_000.jsonl",
        "program_synthesis/validation/prog_syn_val.jsonl",
        "unittest_db.json",
    ]
    with pytest.raises(UserError):  # this repository has no test file: nothing to read
        load_task("code-generation", "hub:", "ruby", "test")
    assert not any("/train/" in f for f in per_language_hub[-1])


def test_training_validation_is_a_grouped_carve_out_of_train_with_targets():
    root = str(FIXTURES / "xcodeeval")
    published = load_task("code-generation", root, "ruby", ["train", "validation"])
    assert all(e.target == "" for e in published.split("validation"))  # problems only

    carved = {}
    for language in ("ruby", "python", "cpp"):
        data = load_task(
            "code-generation", root, language, ["train", "validation"], validation_fraction=0.05
        )
        train, validation = data.split("train"), data.split("validation")
        assert all(e.target for e in validation)  # solutions, so there is an eval loss
        train_uids = {e.meta["src_uid"] for e in train}
        carved[language] = {e.meta["src_uid"] for e in validation}
        assert not train_uids & carved[language]  # a problem is all train or all validation
        assert data.stats.dropped["validation problem without solutions (carved out of train)"]
    # the hash of src_uid decides, so every language holds out the same problem
    assert carved["ruby"] == carved["cpp"] == {"fedcba9876543210fedcba9876543210"}
    assert carved["python"] == set()  # python has no solution of that problem

    # loading train alone leaves out the same carved problems
    alone = load_task("code-generation", root, "ruby", "train", validation_fraction=0.05)
    assert {e.id for e in alone} == {e.id for e in published.split("train")} - {"u-rb-rev"}


def test_carve_out_is_seeded_sized_and_keeps_train():
    uids = {f"uid{i:05d}" for i in range(4000)}
    first = carved_problems(uids, 0.05, seed=0)
    assert 150 < len(first) < 250  # ~5% of 4000
    assert carved_problems(uids, 0.05, seed=0) == first
    assert carved_problems(uids, 0.05, seed=1) != first
    assert carved_problems(uids - {"uid00000"}, 0.05, seed=0) == first - {"uid00000"}
    assert carved_problems({"a", "b"}, 0.9, seed=0) != {"a", "b"}  # train keeps a problem
    assert carved_problems({"a"}, 0.5, seed=0) == set()
    assert carved_problems(uids, 0.0, seed=0) == set()


def test_training_stage_data_has_validation_targets():
    data = DataSpec(
        task="code-generation",
        source=str(FIXTURES / "xcodeeval"),
        languages=["ruby", "python"],
        target="ruby",
    )
    validation = load_examples(data, "ruby", "validation")
    assert validation and all(e.target for e in validation)
    train = {e.meta["src_uid"] for e in load_examples(data, "ruby", "train")}
    assert train.isdisjoint(e.meta["src_uid"] for e in validation)


def test_plan_says_keep_best_is_off_without_validation_examples(tmp_path):
    model = make_model(tmp_path / "model")
    data = write_translation(tmp_path / "trans", {"train": 6, "test": 2})  # no valid file
    args = training_args(model, data, "code-translation", tmp_path / "work")
    result = run_cli("train-adapters", "--langs", "ruby", "--dry-run", *args)
    assert result.exit_code == 0, result.stderr
    assert "keep-best is off for" in result.stdout and "no validation examples for ruby" in (
        " ".join(result.stdout.split())
    )
    with_valid = write_translation(tmp_path / "trans2", {"train": 6, "valid": 2, "test": 2})
    args = training_args(model, with_valid, "code-translation", tmp_path / "work2")
    result = run_cli("train-adapters", "--langs", "ruby", "--dry-run", *args)
    assert result.exit_code == 0, result.stderr
    assert "keep-best is off" not in result.stdout
