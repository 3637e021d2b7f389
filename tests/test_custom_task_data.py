"""The custom task's data: every record format, both layouts (split files, one file split by
group), the template rules, and each kind of bad input (one line naming file:line and field,
or dropped and counted in `data show`'s table)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import one_line_error

from advfusion_cli.data import load_task
from advfusion_cli.errors import UserError

TEMPLATE = "### {language}\n# {doc}\n{{body}}:\n"
OPTIONS = {"template": TEMPLATE, "target_field": "code", "tests_field": "tests"}
TESTS = [{"input": "1\n", "output": ["2"]}]


def record(i: int, language: str = "python", **changes) -> dict:
    row = {
        "id": f"r{i}",
        "problem": f"p{i // 2}",
        "language": language,
        "doc": f"add {i}",
        "code": f"print({i})",
        "tests": TESTS,
    }
    return {**row, **changes}


def rows(n: int = 6) -> list[dict]:
    return [record(i, ("python", "rb")[i % 2]) for i in range(n)]


def write(path: Path, records: list[dict]) -> Path:
    """`records` in the format `path`'s suffix names (tests JSON-encoded in CSV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif path.suffix == ".json":
        path.write_text(json.dumps(records))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            for r in records:
                writer.writerow(
                    {k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()}
                )
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    return path


def load(source: Path, split="all", **options):
    return load_task("custom", str(source), None, split, **{**OPTIONS, **options})


# ---- formats and layouts ---------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_every_format_gives_the_same_examples(tmp_path, suffix):
    folder = tmp_path / suffix[1:]
    for split, chunk in (("train", rows()[:4]), ("valid", rows()[4:5]), ("test", rows()[5:])):
        write(folder / f"{split}{suffix}", chunk)
    data = load(folder, id_field="id")
    by_id = {e.id: e for e in data.examples}
    assert sorted(by_id) == [f"r{i}" for i in range(6)]
    first = by_id["r1"]
    # the language is written by its display name whatever the record says; braces escaped
    assert first.prompt == "### Ruby\n# add 1\n{body}:\n"
    assert first.target == "print(1)" and first.language == "ruby" and first.split == "train"
    assert first.tests == (("1\n", ("2",)),)
    assert by_id["r4"].split == "validation" and by_id["r5"].split == "test"
    assert data.stats.split_method == {"python": "dataset", "ruby": "dataset"}
    # the cut span is the longest field's text: `add 1`
    start, end = first.meta["inner_span"]
    assert first.prompt[start:end] == "add 1"


def test_one_file_is_split_by_group_across_languages(tmp_path):
    records = [record(i, ("python", "ruby", "go")[i % 3], problem=f"p{i // 3}") for i in range(60)]
    path = write(tmp_path / "all.jsonl", records)
    data = load(path, group_field="problem", id_field="id")
    split_of = {}
    for example in data.examples:
        # every language's record of one problem is in the same split
        assert split_of.setdefault(example.meta["group"], example.split) == example.split
    assert set(split_of.values()) == {"train", "validation", "test"}
    assert data.stats.split_method["go"] == "group:problem"
    again = load(path, group_field="problem", id_field="id")
    assert [e.split for e in again.examples] == [e.split for e in data.examples]  # seeded
    reseeded = load(path, group_field="problem", id_field="id", seed=7)
    assert [e.split for e in reseeded.examples] != [e.split for e in data.examples]
    # asking for one language does not move records between splits
    only_go = load_task(
        "custom", str(path), ["go"], "all", group_field="problem", id_field="id", **OPTIONS
    )
    assert {e.id: e.split for e in only_go.examples} == {
        e.id: e.split for e in data.examples if e.language == "go"
    }


def test_a_folder_file_without_a_split_name_is_named(tmp_path):
    write(tmp_path / "train.jsonl", rows())
    write(tmp_path / "extra.jsonl", rows())
    with pytest.raises(UserError, match=r"extra.jsonl: the file name names no split"):
        load(tmp_path)


# ---- the template ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("# {}", "'{}' names no field"),
        ("# {doc:>3}", "'{doc:>3}' is not a plain {field} placeholder"),
        ("# {doc!r}", "'{doc!r}' is not a plain {field} placeholder"),
        ("# {doc.x}", "'{doc.x}' is not a plain {field} placeholder"),
        ("# {doc} }", "Single '}' encountered"),
        ("# {doc", "expected '}' before end of string"),
        ("# no field", "has no {field} placeholder"),
        ("# {doc} {code}", "'code' is also in the template"),
    ],
)
def test_bad_templates_are_one_line_spec_errors(tmp_path, cli, template, message):
    write(tmp_path / "train.jsonl", rows())
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"data:\n  source: {tmp_path}\n  custom:\n    template: {json.dumps(template)}\n"
        "    target_field: code\n"
    )
    line = one_line_error(cli("validate", str(spec)), "data.custom")
    assert message in line


def test_cut_keeps_the_template_tail(tmp_path):
    from test_evaluate_support import make_tokenizer
    from transformers import AutoTokenizer

    from advfusion_cli.data.encoding import encode_prompt_for_generation

    write(tmp_path / "test.jsonl", [record(0, doc="x" * 300, title="T")])
    template = "### {language}\n# {title}\n# {doc}\n{{body}}:\n"
    (example,) = load(tmp_path, split="test", template=template).examples
    make_tokenizer(tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    features = encode_prompt_for_generation(tokenizer, example, max_prompt_tokens=60)
    text = tokenizer.decode(features["input_ids"], skip_special_tokens=True)
    assert features["truncated"] and text.startswith("### Python\n# T\n# xxx")  # longest cut
    assert text.endswith("x\n{body}:\n") and len(features["input_ids"]) <= 60


# ---- bad input ---------------------------------------------------------------------------------


def test_a_template_field_missing_from_the_first_record_names_file_line_and_field(tmp_path, cli):
    path = write(tmp_path / "train.jsonl", [record(i, docstring="d") for i in range(3)])
    for r in (path,):
        with pytest.raises(UserError) as info:
            load(r, template="# {docstring} {summary}")
        assert str(info.value).startswith(f"{path}:1: the template's field 'summary' is not")
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"data:\n  source: {path}\n  custom:\n    template: '# {{summary}}'\n"
        "    target_field: code\n"
    )
    line = one_line_error(cli("validate", str(spec)), f"{path}:1", "'summary'")
    assert "this record has: id, problem, language, doc, code, tests" in line


def test_bad_records_are_dropped_and_counted_or_named_under_strict(tmp_path, cli):
    records = rows(8)
    records[1] = record(1, language="klingon")
    records[2] = record(2, code="  ")
    records[3] = {k: v for k, v in record(3).items() if k != "doc"}
    records[4] = record(4, doc=["not", "text"])
    records[5] = record(5, tests=[{"stdin": "1"}])
    path = write(tmp_path / "train.jsonl", records)
    data = load(path)
    assert dict(data.stats.dropped) == {
        "unknown language in field 'language'": 1,
        "empty target (field 'code')": 1,
        "mixed shape: missing field 'doc'": 1,
        "mixed shape: field 'doc' is list": 1,
        "wrong type for field 'tests'": 1,
    }
    assert len(data) == 3
    with pytest.raises(
        UserError, match=rf"^{path}:2: malformed record: unknown language .*'klingon'"
    ):
        load(path, strict=True)
    records[1] = record(1)
    records[2] = record(2)
    records[3] = record(3)
    records[4] = record(4)
    write(path, records)
    with pytest.raises(UserError) as info:
        load(path, strict=True)
    assert str(info.value).startswith(f"{path}:6: malformed record: wrong type for field 'tests'")
    assert "pass@k needs" in str(info.value)

    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"data:\n  source: {path}\n  custom:\n    template: {json.dumps(TEMPLATE)}\n"
        "    target_field: code\n    tests_field: tests\n"
    )
    shown = cli("data", "show", "--spec", str(spec), "-n", "1", "--plain")
    assert shown.exit_code == 0, shown.stderr
    assert "wrong type for field 'tests'" in shown.stdout and "=== r" not in shown.stdout
    assert "### Python\n# add 0\n{body}:\n" in shown.stdout
    strict = cli("data", "show", "--spec", str(spec), "--strict")
    one_line_error(strict, f"{path}:6", "'tests'")


def test_every_record_dropped_is_an_error_not_an_empty_run(tmp_path):
    path = write(tmp_path / "train.jsonl", [record(i, language="cobolx") for i in range(4)])
    with pytest.raises(UserError, match=r"No custom examples .*unknown language in field"):
        load(path)


def test_a_csv_with_a_broken_quote_names_file_line_and_column(tmp_path, cli):
    path = tmp_path / "train.csv"
    path.write_text('language,doc,code\npython,"ok",x\nruby,"never closed,y\npython,a,b\n')
    with pytest.raises(UserError) as info:
        load(path, tests_field=None)
    message = str(info.value)
    assert (
        message.startswith(f"{path}:3: broken CSV quoting in column 'doc'") and "\n" not in message
    )
    ragged = tmp_path / "ragged" / "train.csv"
    ragged.parent.mkdir()
    ragged.write_text("language,doc,code\npython,a,b\nruby,a,b,c\npython,c\n")
    data = load(ragged, tests_field=None)
    assert data.stats.dropped == {"mixed shape: CSV row with a different number of values": 2}


# ---- the spec block ----------------------------------------------------------------------------


def test_spec_block_rules(tmp_path):
    from advfusion_cli.inference.task_rules import executes_tests, task_stop_rule
    from advfusion_cli.spec import parse_spec

    write(tmp_path / "train.jsonl", rows())
    head = f"data:\n  source: {tmp_path}\n"
    block = "  custom:\n    template: '# {doc}'\n    target_field: code\n"
    spec = parse_spec(head + block + '    stop: ["\\n\\n"]\n')
    assert spec.data.task == "custom"  # implied by the block
    rule = task_stop_rule(spec.data)
    assert rule.apply("a = 1\n\nprint(a)") == "a = 1" and not executes_tests(spec.data)
    assert spec.data.custom.table_metrics(1) == [
        "bleu4_smooth_13a_corpus",
        "bleu4_smooth_13a_sentence_mean",
        "sacrebleu_corpus",
        "rougeL_f",
        "exact_match",
    ]
    for text, message in (
        (head + "  task: custom\n", "data.custom: data.task is custom: define the task"),
        (head + block + "    metrics: [bleu, pass@k]\n", "pass@k needs tests_field"),
        (head + block + "    metrics: [blue]\n", "data.custom.metrics.0"),
        (head.replace(str(tmp_path), "testbed") + block, "reads your records"),
        (head + "  task: code-translation\n" + block, "data.task is code-translation"),
    ):
        with pytest.raises(UserError, match=message):
            parse_spec(text)
    # the block may be a YAML file of its own; the resolved spec carries its content
    (tmp_path / "task.yaml").write_text("template: '# {doc}'\ntarget_field: code\n")
    from_file = parse_spec(head + f"  custom: {tmp_path / 'task.yaml'}\n")
    assert from_file.data.custom.template == "# {doc}"
    assert executes_tests(
        parse_spec(head + block + "    tests_field: tests\n    metrics: [pass@k]\n").data
    )


def test_two_custom_tasks_never_share_stored_adapters(tmp_path):
    from advfusion_cli.spec import parse_spec
    from advfusion_cli.workflows.plan import missing_adapters_error
    from advfusion_cli.workflows.runs import Workdir
    from advfusion_cli.workflows.stages import store_folder

    write(tmp_path / "train.jsonl", rows())
    head = f"data:\n  source: {tmp_path}\n  custom:\n    target_field: code\n"
    first = parse_spec(head + "    template: '# {doc}'\n")
    second = parse_spec(head + "    template: '## {doc}'\n")
    workdir = Workdir(tmp_path / "work")
    folders = {store_folder(workdir, s, "ruby", "task-adapter") for s in (first, second)}
    assert len(folders) == 2 and all("/custom-" in str(f) for f in folders)
    message = str(missing_adapters_error(first, "task-adapter", ["ruby"], workdir))
    assert "--task custom" in message and "--spec SPEC.yaml" in message


def test_data_show_custom_needs_a_spec(cli):
    one_line_error(cli("data", "show", "--task", "custom"), "--spec")
    one_line_error(cli("data", "show", "--set", "data.target=go"), "--set needs --spec")
