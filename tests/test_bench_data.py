"""`advfusion bench data`: the folders it writes and the three ways of preparing it compares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import advfusion_cli
from advfusion_cli.bench.data import _prepare, goal_checks, write_commitpack_folder
from advfusion_cli.data import load_task

COMMITS = Path(__file__).parent / "fixtures" / "data" / "commitpackft"
TINY_CODE = str(Path(advfusion_cli.__file__).parent / "assets" / "tiny-code")


def test_written_folder_has_distinct_records_in_many_repositories(tmp_path):
    size = write_commitpack_folder(COMMITS, "ruby", 60, tmp_path / "big")
    path = tmp_path / "big" / "data" / "ruby" / "data.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 60 and size == path.stat().st_size
    assert len({r["commit"] for r in rows}) == 60
    assert len({r["subject"] for r in rows}) == 60
    data = load_task("commit-message", str(tmp_path / "big"), "ruby", "all")
    assert data.stats.split_method == {"ruby": "repository"}
    assert len(data) == 60


def test_old_cold_and_warm_prepare_the_same_examples(tmp_path):
    write_commitpack_folder(COMMITS, "ruby", 40, tmp_path / "big")
    runs = {
        mode: _prepare(mode, tmp_path / "big", "ruby", tmp_path / "cache", TINY_CODE)
        for mode in ("old", "cold", "warm")
    }
    assert runs["old"]["features"] == runs["cold"]["features"] == runs["warm"]["features"]
    assert runs["old"]["examples"] == runs["warm"]["examples"]
    assert runs["cold"]["features"]["train"] > 0
    assert list((tmp_path / "cache").glob("features-*"))
    assert all(
        r["seconds"] > 0 and r["cpu_seconds"] > 0 and r["peak_rss_mb"] > 0 for r in runs.values()
    )
    from advfusion_cli.data import row_pool

    assert float("inf") > row_pool.PARALLEL_MIN_BYTES  # the old path's setting was undone


def test_goal_lines_follow_the_measurements():
    rows = [
        {"records": 50_000, "mode": "cold", "seconds": 20.0, "peak_rss_mb": 900.0},
        {"records": 50_000, "mode": "warm", "seconds": 4.0, "peak_rss_mb": 600.0},
        {"records": 100_000, "mode": "cold", "seconds": 40.0, "peak_rss_mb": 1100.0},
    ]
    assert goal_checks(rows) == [
        "50k cold: 20.0s (goal <= 30s) ok",
        "50k warm: 4.0s (goal <= 3s) MISSED",
        "50k peak RSS: 900.0 MB (goal <= 1024 MB) ok",
        "100k/50k peak RSS (cold): 1.22x (goal <= 1.15x) MISSED",
    ]


@pytest.mark.slow
def test_bench_data_command_prints_a_row_per_size_and_mode(cli, tmp_path):
    out = tmp_path / "rows.json"
    result = cli(
        *["bench", "data", "--sizes", "30,60", "--from", str(COMMITS), "--lang", "ruby"],
        *["--json", str(out)],
    )
    assert result.exit_code == 0, result.stderr
    rows = json.loads(out.read_text())
    assert [(r["records"], r["mode"]) for r in rows] == [
        (n, m) for n in (30, 60) for m in ("old", "cold", "warm")
    ]
    assert "Data preparation" in result.stdout


def test_bench_data_rejects_bad_options_in_one_line(cli):
    result = cli("bench", "data", "--sizes", "ten")
    assert result.exit_code == 2 and result.stderr.startswith("error: --sizes must list")
    result = cli("bench", "data", "--modes", "hot")
    assert result.exit_code == 2 and result.stderr.startswith("error: --modes must be")
    # its first name still answers, for scripts written against it
    result = cli("bench-data", "--modes", "hot")
    assert result.exit_code == 2 and result.stderr.startswith("error: --modes must be")
