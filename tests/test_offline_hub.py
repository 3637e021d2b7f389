"""Offline compute nodes (HF_HUB_OFFLINE=1): hub sources load from a pre-filled local hub
cache (a fake one, in huggingface_hub's own layout) or fail in one line naming what is
missing; custom tasks read the hub's standard layouts (data/ parquet shards, README configs,
config folders)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_custom_task_data import load, rows, write

from advfusion_cli.data import load_task
from advfusion_cli.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "data"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
XCODEEVAL = "NTU-NLP-sg/xCodeEval"


def fill_cache(cache: Path, repo_id: str, files: dict[str, Path], listed: list[str] = ()) -> Path:
    """A dataset in the hub cache as snapshot_download leaves it: refs/main -> commit,
    snapshots/<commit>/<files>, and the repository's full listing in trees/<commit>.json
    (`listed`: files the repository has that were not downloaded)."""
    storage = cache / f"datasets--{repo_id.replace('/', '--')}"
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(COMMIT)
    snapshot = storage / "snapshots" / COMMIT
    for name, source in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, snapshot / name)
    tree = {
        name: {"size": source.stat().st_size, "blob_id": "0" * 40} for name, source in files.items()
    }
    tree |= {name: {"size": 1, "blob_id": "0" * 40} for name in listed}
    (storage / "trees").mkdir()
    (storage / "trees" / f"{COMMIT}.json").write_text(
        json.dumps({"format_version": 1, "files": tree})
    )
    return snapshot


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1 with the hub cache under tmp_path; any network call fails the test."""
    import huggingface_hub
    from huggingface_hub import constants

    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    def no_network(*args, **kwargs):
        raise AssertionError("a network call was made offline")

    for name in ("list_repo_files", "repo_info", "list_repo_tree"):
        monkeypatch.setattr(huggingface_hub.HfApi, name, no_network)
    return cache


def xcodeeval_files() -> dict[str, Path]:
    origin = FIXTURES / "xcodeeval_raw"
    return {p.relative_to(origin).as_posix(): p for p in origin.rglob("*") if p.is_file()}


def test_xcodeeval_loads_from_the_local_hub_cache_offline(offline):
    # the repository also has a Go file that was never downloaded: ruby does not need it
    fill_cache(offline, XCODEEVAL, xcodeeval_files(), ["program_synthesis/train/train_go.jsonl"])
    hub = load_task("code-generation", f"hub:{XCODEEVAL}", "ruby", "train")
    assert sorted(e.id for e in hub) == ["u-rb-rev", "u-rb-sum", "u-rb-sum-wrong"]
    assert all(e.tests for e in hub)


def test_offline_without_the_repository_cached_is_one_line(offline):
    with pytest.raises(UserError) as caught:
        load_task("code-generation", f"hub:{XCODEEVAL}", "ruby", "train")
    message = str(caught.value)
    assert "\n" not in message
    assert f"hub:{XCODEEVAL} is not in the local hub cache and HF_HUB_OFFLINE is set" in message
    assert f"hf download {XCODEEVAL} --repo-type dataset" in message


def test_offline_with_a_needed_file_not_downloaded_names_it(offline):
    files = xcodeeval_files()
    files.pop("unittest_db.json")  # listed by the repository, never downloaded
    fill_cache(offline, XCODEEVAL, files, ["unittest_db.json"])
    with pytest.raises(UserError) as caught:
        load_task("code-generation", f"hub:{XCODEEVAL}", "ruby", "train")
    assert "unittest_db.json" in str(caught.value) and "\n" not in str(caught.value)


def parquet_shards(folder: Path) -> dict[str, Path]:
    """The layout `push_to_hub` writes: data/<split>-0000k-of-0000n.parquet."""
    records = rows(12)
    return {
        "data/train-00000-of-00002.parquet": write(folder / "a.parquet", records[:4]),
        "data/train-00001-of-00002.parquet": write(folder / "b.parquet", records[4:8]),
        "data/validation-00000-of-00001.parquet": write(folder / "c.parquet", records[8:10]),
        "data/test-00000-of-00001.parquet": write(folder / "d.parquet", records[10:]),
        "README.md": write_text(folder / "README.md", "# records\n"),
    }


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_custom_task_in_the_hub_data_parquet_layout_loads_offline(offline, tmp_path):
    fill_cache(offline, "me/records", parquet_shards(tmp_path / "made"))
    examples = load_task(
        "custom",
        "hub:me/records",
        None,
        "all",
        template="### {language}\n# {doc}\n{{body}}:\n",
        target_field="code",
        id_field="id",
    )
    by_split = {}
    for example in examples:
        by_split.setdefault(example.split, []).append(example.id)
    assert by_split == {
        "train": [f"r{i}" for i in range(8)],
        "validation": ["r8", "r9"],
        "test": ["r10", "r11"],
    }


# ---- hub layouts, local ------------------------------------------------------------------


def test_split_folders_under_data_are_read(tmp_path):
    records = rows(6)
    write(tmp_path / "data" / "train" / "part-0.jsonl", records[:4])
    write(tmp_path / "data" / "test" / "part-0.jsonl", records[4:])
    # without id_field a record is named by its file under the root: no clash between splits
    assert [(e.id, e.split) for e in load(tmp_path)] == [
        ("data/train/part-0.jsonl:1", "train"),
        ("data/train/part-0.jsonl:2", "train"),
        ("data/train/part-0.jsonl:3", "train"),
        ("data/train/part-0.jsonl:4", "train"),
        ("data/test/part-0.jsonl:1", "test"),
        ("data/test/part-0.jsonl:2", "test"),
    ]
    assert [e.target for e in load(tmp_path)] == [r["code"] for r in records]


README_CONFIGS = """---
configs:
- config_name: easy
  default: true
  data_files:
  - split: train
    path: easy/train-*.parquet
  - split: validation
    path: easy/valid.jsonl
- config_name: hard
  data_files:
  - split: train
    path: "hard/*.jsonl"
---
# two configs
"""


def test_readme_configs_choose_the_files_and_the_default(tmp_path):
    records = rows(8)
    write(tmp_path / "easy" / "train-00000-of-00001.parquet", records[:3])
    write(tmp_path / "easy" / "valid.jsonl", records[3:4])
    write(tmp_path / "hard" / "all.jsonl", records[4:])
    (tmp_path / "README.md").write_text(README_CONFIGS)
    default = load(tmp_path, id_field="id")
    assert [(e.id, e.split) for e in default] == [
        ("r0", "train"),
        ("r1", "train"),
        ("r2", "train"),
        ("r3", "validation"),
    ]
    hard = load(tmp_path, config="hard", id_field="id")
    assert [(e.id, e.split) for e in hard] == [(f"r{i}", "train") for i in range(4, 8)]
    line = one_line_error_of(lambda: load(tmp_path, config="medium"))
    assert "no config 'medium' (configs: easy, hard)" in line and "data.custom.config" in line


def test_a_config_folder_is_read_when_named(tmp_path):
    write(tmp_path / "small" / "train.jsonl", rows(2))
    write(tmp_path / "small" / "validation.jsonl", rows(3)[2:])
    assert [e.split for e in load(tmp_path, config="small")] == ["train", "train", "validation"]


def test_two_configs_without_a_default_ask_for_one(tmp_path):
    write(tmp_path / "a" / "train.jsonl", rows(2))
    (tmp_path / "README.md").write_text(
        "---\nconfigs:\n- config_name: a\n  data_files: a/*.jsonl\n"
        "- config_name: b\n  data_files: a/*.jsonl\n---\n"
    )
    line = one_line_error_of(lambda: load(tmp_path))
    assert "declares configs a, b and none is the default" in line


def one_line_error_of(call) -> str:
    with pytest.raises(UserError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message
