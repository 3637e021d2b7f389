"""The prepared-data cache: hits, a miss for each fingerprint input, features identical to the
per-example encoder (every task, and the shared real-schema samples), damaged entries rebuilt
with one warning, two processes on one cache, --no-cache, and the silenced length warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import one_line_error
from test_workflow_cli import write_commits

import advfusion_cli
from advfusion_cli.data import load_task
from advfusion_cli.data import prepared as prepared_module
from advfusion_cli.data.batch_encoding import encode_examples_batched, fit_prompts
from advfusion_cli.data.cache import PreparedCache
from advfusion_cli.data.encoding import encode_examples, encode_prompt_for_generation
from advfusion_cli.data.prepared import build_features, load_features
from advfusion_cli.spec.schema import DataSpec
from advfusion_cli.workflows import task_data
from advfusion_cli.workflows.task_data import StageEncoder, count_examples, load_examples

TINY_CODE = Path(advfusion_cli.__file__).parent / "assets" / "tiny-code"
FIXTURES = Path(__file__).parent / "fixtures" / "data"
SHARED = Path(
    os.environ.get("ADVFUSION_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)
# Small budgets so examples are cut (bisection) and some are dropped.
BUDGETS = {"max_prompt_tokens": 60, "max_target_tokens": 12, "max_total_tokens": 70}


def tiny_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TINY_CODE)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def commits(tmp_path):
    write_commits(tmp_path / "commits", per_language=12)
    return tmp_path / "commits"


def spec_for(source: Path, **changes) -> DataSpec:
    values = dict(
        task="commit-message",
        source=str(source),
        languages=["ruby"],
        target="ruby",
        max_prompt_tokens=40,
        max_target_tokens=12,
        max_total_tokens=48,
    )
    return DataSpec(**{**values, **changes})


@pytest.fixture
def builds(monkeypatch):
    """A list that gets one entry per features build (a tokenizing pass)."""
    calls: list[int] = []
    real = prepared_module.encode_example_file

    def counting(folder, examples_file, rows, *args, **kwargs):
        calls.append(len(rows))
        return real(folder, examples_file, rows, *args, **kwargs)

    monkeypatch.setattr(prepared_module, "encode_example_file", counting)
    task_data._load.cache_clear()
    return calls


def uncached(tokenizer, data: DataSpec, split: str) -> list[dict]:
    """Today's per-example encoder on the same examples: the reference."""
    return encode_examples(
        tokenizer,
        load_examples(data, "ruby", split),
        max_prompt_tokens=data.max_prompt_tokens,
        max_target_tokens=data.max_target_tokens,
        max_total_tokens=data.max_total_tokens,
        loss_on=data.loss_on,
    )


# ---- hits and misses -------------------------------------------------------------------------


def test_second_run_reads_the_cache_and_tokenizes_nothing(tmp_path, commits, tokenizer, builds):
    cache = PreparedCache(tmp_path / "cache")
    data = spec_for(commits)
    first = StageEncoder(data, tokenizer, cache).stage(["ruby"], ["ruby"])
    n_validation = len(task_data.load_examples(data, "ruby", "validation"))
    # one tokenizing pass for both splits of the language
    assert builds == [len(task_data.load_examples(data, "ruby", "train")) + n_validation]
    task_data._load.cache_clear()
    second = StageEncoder(data, tokenizer, cache).stage(["ruby"], ["ruby"])
    assert len(builds) == 1
    assert not isinstance(second.train, list)  # read from Arrow, not a list of every example
    assert list(second.train) == list(first.train) == uncached(tokenizer, data, "train")
    assert list(second.eval) == uncached(tokenizer, data, "validation")
    assert second.truncated == first.truncated and sum(first.truncated.values()) > 0
    assert second.counts == first.counts


def test_plan_counts_are_read_back_without_loading_records(tmp_path, commits, monkeypatch):
    cache = PreparedCache(tmp_path / "cache")
    data = spec_for(commits)
    counts = count_examples(data, ["ruby", "java"], cache)
    task_data._load.cache_clear()

    def no_loading(*args, **kwargs):
        raise AssertionError("records were loaded although the counts are cached")

    monkeypatch.setattr(task_data, "load_examples", no_loading)
    assert count_examples(data, ["ruby", "java"], cache) == counts
    assert counts["ruby"]["train"] > 0 and counts["ruby"]["validation"] > 0


def _append_record(commits: Path) -> None:
    path = commits / "data" / "ruby" / "data.jsonl"
    row = json.loads(path.read_text().splitlines()[0])
    row.update(commit="ruby9999", repos="org/ruby-repo9999", subject="Add one more record")
    path.write_text(path.read_text() + json.dumps(row) + "\n")


def _touch(commits: Path) -> None:
    path = commits / "data" / "ruby" / "data.jsonl"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


CHANGES = {
    "source file rewritten": ({}, _append_record, None),
    "source file touched": ({}, _touch, None),
    "split seed": ({"split_seed": 3}, None, None),
    "record cap": ({"max_train_records": 5}, None, None),
    "prompt budget": ({"max_prompt_tokens": 30}, None, None),
    "target budget": ({"max_target_tokens": 10}, None, None),
    "total budget": ({"max_total_tokens": 44}, None, None),
    "tokenizer": ({}, None, "add a token"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_each_fingerprint_input_misses(tmp_path, commits, tokenizer, builds, change):
    cache = PreparedCache(tmp_path / "cache")
    StageEncoder(spec_for(commits), tokenizer, cache).features("ruby", "train")
    assert len(builds) == 1
    spec_changes, edit_files, tokenizer_change = CHANGES[change]
    if edit_files:
        edit_files(commits)
    used = tokenizer
    if tokenizer_change:
        used = tiny_tokenizer()
        used.add_tokens(["def_zz"])
    data = spec_for(commits, **spec_changes)
    task_data._load.cache_clear()
    rows = StageEncoder(data, used, cache).features("ruby", "train")
    assert len(builds) == 2, f"{change}: the stale entry was used"
    assert list(rows) == uncached(used, data, "train")


def test_task_options_are_part_of_the_key(tmp_path, tokenizer, builds):
    cache = PreparedCache(tmp_path / "cache")
    budgets = {"max_prompt_tokens": 200, "max_target_tokens": 200, "max_total_tokens": 400}
    source = str(FIXTURES / "codetransocean")
    multi = DataSpec(task="code-translation", source=source, languages=["go"], **budgets)
    niche = multi.model_copy(update={"subset": "NicheTrans"})
    generation = DataSpec(
        task="code-generation", source=str(FIXTURES / "xcodeeval"), languages=["ruby"], **budgets
    )
    passed = generation.model_copy(update={"exec_outcome_filter": True})
    for data, language in ((multi, "go"), (niche, "go"), (generation, "ruby"), (passed, "ruby")):
        StageEncoder(data, tokenizer, cache).features(language, "train")
    assert len(builds) == 4
    StageEncoder(multi, tokenizer, cache).features("go", "train")
    assert len(builds) == 4


def test_loss_on_shares_the_features_and_changes_only_the_labels(
    tmp_path, commits, tokenizer, builds
):
    cache = PreparedCache(tmp_path / "cache")
    StageEncoder(spec_for(commits), tokenizer, cache).features("ruby", "train")
    data = spec_for(commits, loss_on="target")
    rows = StageEncoder(data, tokenizer, cache).features("ruby", "train")
    assert len(builds) == 1
    assert list(rows) == uncached(tokenizer, data, "train")


# ---- identical features ----------------------------------------------------------------------


def _cached_rows(tmp_path, examples, tokenizer, num_proc=1, budgets=BUDGETS):
    folder = tmp_path / "entry"
    folder.mkdir()
    info = build_features(folder, examples, tokenizer, budgets, num_proc=num_proc)
    assert not (folder / prepared_module.EXAMPLES_FILE).exists()
    return list(load_features(folder, info, "all")), info


CUT = {"max_prompt_tokens": 30, "max_target_tokens": 200, "max_total_tokens": 260}


@pytest.mark.parametrize("budgets", [BUDGETS, CUT], ids=["drops", "cuts"])
@pytest.mark.parametrize(
    "task,source",
    [
        ("commit-message", FIXTURES / "commitpackft"),
        ("code-translation", FIXTURES / "codetransocean"),
        ("code-generation", FIXTURES / "xcodeeval"),
    ],
)
def test_cached_features_equal_the_per_example_encoder(tmp_path, tokenizer, task, source, budgets):
    examples = load_task(task, str(source), None, "all").examples
    reference = encode_examples(tokenizer, examples, **budgets)
    rows, info = _cached_rows(tmp_path, examples, tokenizer, budgets=budgets)
    assert rows == reference
    assert info["rows"] == len(examples)
    assert sum(info["dropped"].values()) == len(examples) - len(reference)
    assert info["truncated"] == sum(f["truncated"] for f in reference)
    # each budget exercises what it is named for: drops, or prompts cut by bisection
    assert info["dropped"] if budgets is BUDGETS else info["truncated"]


SHARED_SOURCES = [
    ("commit-message", "commit_messages", ["go", "python"]),
    ("code-generation", "code_generation/rosetta", None),
    ("code-translation", "code_translation", None),
]
SHARED_BUDGETS = {"max_prompt_tokens": 200, "max_target_tokens": 120, "max_total_tokens": 256}


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")
@pytest.mark.parametrize("task,folder,languages", SHARED_SOURCES)
def test_batched_encoder_equals_the_per_example_encoder_on_shared_samples(
    tokenizer, task, folder, languages
):
    examples = load_task(task, str(SHARED / folder), languages, "all").examples
    examples = [e for i, e in enumerate(examples) if i % 9 == 0][:120]  # spread over languages
    reference = encode_examples(tokenizer, examples, **SHARED_BUDGETS)
    features, reasons = encode_examples_batched(tokenizer, examples, **SHARED_BUDGETS)
    assert features == reference
    assert sum(1 for r in reasons if r) == len(examples) - len(reference)
    assert any(f["truncated"] for f in reference)


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")
def test_batched_prompt_fitting_equals_the_generation_encoder_on_real_xcodeeval(tokenizer):
    """The real xCodeEval rows are problems only: their prompts are what gets encoded."""
    folder = str(SHARED / "code_generation/xcodeeval")
    examples = load_task("code-generation", folder, ["ruby"], "all").examples[:40]
    reference = [encode_prompt_for_generation(tokenizer, e, max_prompt_tokens=90) for e in examples]
    fitted = fit_prompts(
        tokenizer,
        [e.prompt for e in examples],
        [e.meta.get("inner_span") for e in examples],
        [90] * len(examples),
        no_room_reason="prompt too long",
    )
    assert [(f["input_ids"], f["truncated"]) for f in reference] == fitted
    assert any(f["truncated"] for f in reference)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")
@pytest.mark.parametrize("task,folder,languages", SHARED_SOURCES)
def test_cached_features_equal_the_per_example_encoder_on_all_shared_samples(
    tmp_path, tokenizer, task, folder, languages
):
    examples = load_task(task, str(SHARED / folder), languages, "all").examples
    reference = encode_examples(tokenizer, examples, **SHARED_BUDGETS)
    rows, _ = _cached_rows(tmp_path, examples, tokenizer, num_proc=2, budgets=SHARED_BUDGETS)
    assert rows == reference


# ---- damage, concurrency, --no-cache ---------------------------------------------------------


def _features_entries(cache: PreparedCache) -> list[Path]:
    return sorted(cache.folder.glob("features-*"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest"])
def test_a_damaged_entry_is_rebuilt_with_a_one_line_warning(
    tmp_path, commits, tokenizer, builds, capsys, damage
):
    cache = PreparedCache(tmp_path / "cache")
    data = spec_for(commits)
    StageEncoder(data, tokenizer, cache).features("ruby", "train")
    (entry,) = _features_entries(cache)
    arrow = entry / prepared_module.FEATURES_FILE
    if damage == "truncate":
        arrow.write_bytes(arrow.read_bytes()[:-100])
    elif damage == "flip":
        raw = bytearray(arrow.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        arrow.write_bytes(bytes(raw))
    else:
        (entry / "manifest.json").write_text("{not json")
    capsys.readouterr()
    rows = StageEncoder(data, tokenizer, cache).features("ruby", "train")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: data cache entry ")
    assert str(entry) in err[0] and "rebuilding" in err[0]
    assert len(builds) == 2
    assert list(rows) == uncached(tokenizer, data, "train")
    capsys.readouterr()
    StageEncoder(data, tokenizer, cache).features("ruby", "train")  # sound again: no warning
    assert capsys.readouterr().err == "" and len(builds) == 2


CONCURRENT = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from advfusion_cli.data.cache import PreparedCache

    folder, log, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.01)

    def build(staging):
        with log.open("a") as handle:
            handle.write(f"build {os.getpid()}\\n")
        (staging / "part-1.txt").write_text("first half")
        time.sleep(1.0)  # a reader that looked now would see half an entry
        (staging / "part-2.txt").write_text("second half")
        return {"by": os.getpid()}

    def load(entry, info):
        return [(entry / n).read_text() for n in ("part-1.txt", "part-2.txt")], info["by"]

    print(json.dumps(PreparedCache(folder).load_or_build("features", {"k": 1}, build, load)))
    """
)


def test_two_processes_on_one_cache_build_once_and_read_whole_entries(tmp_path):
    script = tmp_path / "prepare.py"
    script.write_text(CONCURRENT)
    log, go = tmp_path / "builds.log", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(Path(advfusion_cli.__file__).parents[1])}
    args = [sys.executable, str(script), str(tmp_path / "cache"), str(log), str(go)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env) for _ in "ab"]
    go.touch()
    outputs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(log.read_text().splitlines()) == 1  # one built, the other waited and read it
    assert outputs[0] == outputs[1] == [["first half", "second half"], outputs[0][1]]
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".build")]
    assert leftovers == []


def test_no_cache_flag_writes_no_cache_and_the_default_does(cli, tmp_path, commits):
    base = ["train-adapters", "--dry-run", "--langs", "ruby", "--task", "commit-message"]
    base += ["--data", str(commits)]
    result = cli(*base, "--workdir", str(tmp_path / "a"), "--no-cache")
    assert result.exit_code == 0, result.stderr
    assert not (tmp_path / "a" / "data-cache").exists()
    result = cli(*base, "--workdir", str(tmp_path / "b"))
    assert result.exit_code == 0, result.stderr
    assert list((tmp_path / "b" / "data-cache").glob("examples-*/manifest.json"))
    elsewhere = tmp_path / "elsewhere"
    result = cli(*base, "--workdir", str(tmp_path / "c"), "--set", f"output.data_cache={elsewhere}")
    assert result.exit_code == 0, result.stderr
    assert list(elsewhere.glob("examples-*")) and not (tmp_path / "c" / "data-cache").exists()


def test_no_cache_encodes_in_memory_identically(commits, tokenizer, builds):
    data = spec_for(commits)
    stage = StageEncoder(data, tokenizer, None).stage(["ruby"], ["ruby"])
    assert builds == []
    assert list(stage.train) == uncached(tokenizer, data, "train")


# ---- the length warning ----------------------------------------------------------------------


def test_no_sequence_length_warning_when_the_encoder_cuts(tmp_path, capfd):
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("transformers")  # its own handler holds the stderr of import time
    logger.addHandler(handler)
    examples = load_task("commit-message", str(FIXTURES / "commitpackft"), None, "all").examples
    fresh = tiny_tokenizer()
    fresh.model_max_length = 8  # every prompt is "longer than the model's maximum"
    capfd.readouterr()
    try:
        encode_examples(fresh, examples, **BUDGETS)
        encode_examples_batched(fresh, examples, **BUDGETS)
        _cached_rows(tmp_path, examples, fresh)
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == []
    assert capfd.readouterr().err == ""


def test_an_unwritable_cache_folder_is_a_one_line_error(cli, tmp_path, commits):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli(
        *["train-adapters", "--dry-run", "--langs", "ruby", "--task", "commit-message"],
        *["--data", str(commits), "--workdir", str(tmp_path / "w")],
        *["--set", f"output.data_cache={blocker / 'cache'}"],
    )
    assert one_line_error(result, "output.data_cache", str(blocker))


def test_dry_run_says_what_each_evaluation_reads_and_the_key_that_caps_it(cli, tmp_path, commits):
    args = ["train-adapters", "--dry-run", "--langs", "ruby,java", "--task", "commit-message"]
    args += ["--data", str(commits), "--workdir", str(tmp_path / "w")]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    counts = count_examples(spec_for(commits), ["ruby", "java"])
    line = [x for x in result.stdout.splitlines() if x.startswith("Each evaluation reads")]
    assert line == [
        f"Each evaluation reads ruby {counts['ruby']['validation']}, java "
        f"{counts['java']['validation']} validation records (all of them; cap with --set "
        "data.max_eval_records=N)."
    ]
    result = cli(*args, "--set", "data.max_eval_records=1")
    assert (
        "Each evaluation reads ruby 1, java 1 validation records (capped at 1 per language "
        "by data.max_eval_records)." in result.stdout
    )


# ---- the examples entry: streamed, never a list of every record -------------------------------


def _entry_rows(data: DataSpec, language: str, cache: PreparedCache) -> dict[str, list]:
    from datasets import Dataset

    rows_file, indices = task_data.examples_entry(data, language, cache)
    table = Dataset.from_file(str(rows_file))
    return {
        split: [(table[i]["id"], table[i]["prompt"], table[i]["target"]) for i in rows]
        for split, rows in indices.items()
    }


def _listed(data: DataSpec, language: str) -> dict[str, list]:
    return {
        split: [(e.id, e.prompt, e.target) for e in load_examples(data, language, split)]
        for split in task_data.SPLITS
    }


@pytest.mark.parametrize("caps", [{}, {"max_train_records": 7, "max_eval_records": 2}])
def test_commit_examples_are_streamed_into_the_entry_in_the_loaders_order(
    tmp_path, commits, monkeypatch, caps
):
    data = spec_for(commits, **caps)
    cache = PreparedCache(tmp_path / "cache")

    def no_list(*args, **kwargs):
        raise AssertionError("the records were loaded as a list")

    with monkeypatch.context() as patch:
        patch.setattr(task_data, "load_examples", no_list)
        task_data.examples_entry(data, "ruby", cache)  # built by streaming
    task_data._load.cache_clear()
    assert _entry_rows(data, "ruby", cache) == _listed(data, "ruby")
    if caps:
        assert len(_listed(data, "ruby")["train"]) == 7


def test_tasks_without_a_stream_reader_write_their_loaded_examples(tmp_path, tokenizer):
    source = str(FIXTURES / "codetransocean")
    data = DataSpec(task="code-translation", source=source, languages=["go"])
    cache = PreparedCache(tmp_path / "cache")
    assert _entry_rows(data, "go", cache) == _listed(data, "go")


def test_a_warm_run_reads_features_without_the_examples_entry(
    tmp_path, commits, tokenizer, monkeypatch
):
    import shutil

    from advfusion_cli.data import loader

    cache = PreparedCache(tmp_path / "cache")
    data = spec_for(commits)
    first = list(StageEncoder(data, tokenizer, cache).features("ruby", "train"))
    for entry in cache.folder.glob("examples-*"):
        shutil.rmtree(entry)  # a user cleared only the examples entries
    monkeypatch.setattr(loader, "stream_task", lambda *a, **k: pytest.fail("records read again"))
    assert list(StageEncoder(data, tokenizer, cache).features("ruby", "train")) == first
