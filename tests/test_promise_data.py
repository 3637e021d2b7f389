"""Data promises of docs/data.md that only slow tests (or none) guarded:

- parallel tokenizing: a language with >= 4,000 records (on two cores or more) is tokenized
  by several processes, and the cached features read back per split are, row for row, what
  one process encodes;
- own-task options: `cut_field`, one file's `split_fractions`, `language_field`, duplicate
  ids and `input_field` each do what the table in "Your own task" says.
"""

from __future__ import annotations

import json
import os
import random

import pytest
from conftest import one_line_error
from test_custom_task_data import OPTIONS, load, record, write

import advfusion_cli
from advfusion_cli.data import prepared
from advfusion_cli.data.cache import PreparedCache
from advfusion_cli.spec.schema import DataSpec
from advfusion_cli.workflows import task_data
from advfusion_cli.workflows.task_data import StageEncoder

TINY_CODE = os.path.join(os.path.dirname(advfusion_cli.__file__), "assets", "tiny-code")
RECORDS = 460  # train + validation ~410 of them: two processes at 200 records a process


def write_one_language(root, language: str = "ruby", count: int = RECORDS) -> None:
    """CommitPackFT's layout, one language; every record's message is its own number."""
    rnd = random.Random(1)
    folder = root / "data" / language
    folder.mkdir(parents=True)
    with open(folder / "data.jsonl", "w") as handle:
        for i in range(count):
            row = {
                "commit": f"c{i:05d}",
                "old_file": f"f{i}.rb",
                "new_file": f"f{i}.rb",
                "old_contents": f"x = {i}\n" * rnd.randint(1, 3),
                "new_contents": f"x = {i + 1}\n",
                "subject": f"Record {i}",
                "message": f"Record {i}\n",
                "lang": "Ruby",
                "license": "mit",
                "repos": f"org/repo{i % 900}",
            }
            handle.write(json.dumps(row) + "\n")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TINY_CODE)


def test_the_process_count_follows_the_records_and_the_cores(monkeypatch):
    from advfusion_cli.data.prepared import default_num_proc

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert [default_num_proc(n) for n in (10, 3_999, 4_000, 100_000)] == [1, 1, 2, 2]
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert [default_num_proc(n) for n in (3_999, 4_000, 9_000)] == [1, 2, 4]


def test_features_tokenized_in_parallel_are_read_back_per_split_in_order(
    tmp_path, tokenizer, monkeypatch
):
    """Past the rule's threshold (scaled down: 200 records a process instead of 2,000), the
    train and validation rows tokenized in two processes are, row for row, what one process
    encodes for each split."""
    write_one_language(tmp_path / "commits")
    data = DataSpec(
        task="commit-message",
        source=str(tmp_path / "commits"),
        languages=["ruby"],
        target="ruby",
        max_prompt_tokens=40,
        max_target_tokens=12,
        max_total_tokens=48,
    )
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # whatever this machine has
    monkeypatch.setattr(prepared, "RECORDS_PER_PROCESS", 200)
    task_data._load.cache_clear()
    cache = PreparedCache(tmp_path / "cache")
    cached = StageEncoder(data, tokenizer, cache)
    in_memory = StageEncoder(data, tokenizer, None)
    for split in ("train", "validation"):
        rows = cached.features("ruby", split)
        expected = in_memory.features("ruby", split)
        assert len(rows) == len(expected) > 20
        assert [rows[i] for i in range(len(rows))] == list(expected), split
    (manifest,) = (tmp_path / "cache").glob("features-*/manifest.json")
    info = json.loads(manifest.read_text())["info"]
    assert info["num_proc"] == 2 and len(info["files"]) == 2  # two processes, two parts


# ---- own-task options (docs/data.md, "Your own task") -----------------------------------------


def test_cut_field_names_the_field_a_long_prompt_loses_the_end_of(tmp_path):
    from test_evaluate_support import make_tokenizer
    from transformers import AutoTokenizer

    from advfusion_cli.data.encoding import encode_prompt_for_generation

    template = "### {language}\n# {title}\n# {doc}\n{{body}}:\n"
    # doc is the longest field (the default cut); cut_field=title cuts the shorter one
    write(tmp_path / "test.jsonl", [record(0, doc="d" * 200, title="t" * 120)])
    make_tokenizer(tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")

    def encoded(**options):
        (example,) = load(tmp_path, split="test", template=template, **options).examples
        features = encode_prompt_for_generation(tokenizer, example, max_prompt_tokens=280)
        assert features["truncated"] and len(features["input_ids"]) <= 280
        return tokenizer.decode(features["input_ids"], skip_special_tokens=True)

    default = encoded()
    assert "# " + "t" * 120 + "\n" in default and "d" * 200 not in default
    chosen = encoded(cut_field="title")
    assert "# " + "d" * 200 + "\n" in chosen and "t" * 120 not in chosen
    assert chosen.startswith("### Python\n# ttt") and chosen.endswith("d\n{body}:\n")


def test_split_fractions_decide_one_files_split_sizes(tmp_path):
    path = write(tmp_path / "all.jsonl", [record(i, "ruby") for i in range(400)])
    sizes = {}
    for fractions in ((0.8, 0.1, 0.1), (0.5, 0.3, 0.2)):
        examples = load(path, id_field="id", split_fractions=fractions).examples
        counts = {s: sum(e.split == s for e in examples) for s in ("train", "validation", "test")}
        assert sum(counts.values()) == 400
        for count, fraction in zip(counts.values(), fractions, strict=True):
            assert abs(count - 400 * fraction) <= 12, (fractions, counts)
        sizes[fractions] = counts
    assert sizes[(0.5, 0.3, 0.2)] != sizes[(0.8, 0.1, 0.1)]


def test_language_field_names_the_field_that_gives_each_records_language(tmp_path):
    # "language" says python everywhere; "lang" is the field that counts
    records = [record(i, "python", lang=("rb", "golang")[i % 2]) for i in range(6)]
    write(tmp_path / "train.jsonl", records)
    data = load(tmp_path, template="### {lang}\n# {doc}\n", language_field="lang", id_field="id")
    by_id = {e.id: e for e in data.examples}
    assert {e.language for e in data.examples} == {"ruby", "go"}
    assert by_id["r0"].language == "ruby" and by_id["r0"].prompt == "### Ruby\n# add 0\n"
    assert by_id["r1"].language == "go" and by_id["r1"].prompt == "### Go\n# add 1\n"
    only_go = load_custom(tmp_path, ["go"], language_field="lang", template="### {lang}\n# {doc}\n")
    assert sorted(e.id for e in only_go.examples) == ["r1", "r3", "r5"]


def load_custom(source, languages, **options):
    from advfusion_cli.data import load_task

    return load_task(
        "custom", str(source), languages, "all", **{**OPTIONS, "id_field": "id", **options}
    )


def test_a_second_record_with_the_same_id_is_dropped_and_counted(tmp_path, cli):
    records = [record(i) for i in range(5)]
    records.append(record(1, doc="the copy"))  # the same id as the second record
    path = write(tmp_path / "train.jsonl", records)
    data = load(path, id_field="id")
    assert dict(data.stats.dropped) == {"duplicate id (field 'id')": 1}
    kept = {e.id: e for e in data.examples}
    assert len(data.examples) == 5 and kept["r1"].prompt.endswith("# add 1\n{body}:\n")
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"data:\n  source: {path}\n  custom:\n    template: {json.dumps(OPTIONS['template'])}\n"
        "    target_field: code\n    id_field: id\n"
    )
    shown = cli("data", "show", "--spec", str(spec), "-n", "1", "--plain")
    assert shown.exit_code == 0, shown.stderr
    assert "duplicate id (field 'id')" in shown.stdout
    strict = cli("data", "show", "--spec", str(spec), "--strict")
    line = one_line_error(strict, f"{path}:6", "duplicate id")
    assert "'r1'" in line


def test_input_field_is_the_field_generate_fills(tmp_path, cli):
    from advfusion_cli.generate.custom_prompt import custom_item
    from advfusion_cli.generate.inputs import InputText
    from advfusion_cli.spec.custom_task import CustomTaskSpec

    two_fields = "### {language}\n# {title}\n# {doc}\n"
    write(tmp_path / "train.jsonl", [record(0, title="T")])
    spec = tmp_path / "job.yaml"
    body = f"data:\n  source: {tmp_path}\n  custom:\n    template: {json.dumps(two_fields)}\n"
    spec.write_text(body + "    target_field: code\n")
    one_line_error(cli("validate", str(spec)), "data.custom.input_field", "title, doc")
    spec.write_text(body + "    target_field: code\n    input_field: doc\n")
    assert cli("validate", str(spec)).exit_code == 0
    spec.write_text(body + "    target_field: code\n    input_field: body\n")
    one_line_error(cli("validate", str(spec)), "data.custom.input_field", "'body'")

    # input_field wins over cut_field: the input fills doc, the language is the target's name
    custom = CustomTaskSpec(
        template="### {language}\n# {doc}\n",
        target_field="code",
        cut_field="language",
        input_field="doc",
    )
    item = custom_item(InputText("in.txt", "sum two numbers\n"), custom, "ruby")
    assert item.example.prompt == "### Ruby\n# sum two numbers\n"
