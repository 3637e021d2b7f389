"""Every way a spec can be wrong gives ONE line naming the key (and file:line when it came
from a file), the constraint or allowed values, and the value given."""

from __future__ import annotations

from pathlib import Path

import pytest

from advfusion_cli.errors import UserError
from advfusion_cli.spec import check_paths, resolve_spec

# (case id, spec file text or None, --set items, flags, expected start of the message)
CASES = [
    (
        "unknown-top-level-key",
        "trainin:\n  lr: 1\n",
        [],
        {},
        "{file}:1: trainin: unknown key in the spec's top level. Did you mean 'training'? "
        "Allowed: data, method, model, output, preset, training.",
    ),
    (
        "unknown-nested-key",
        "training:\n  lrr: 1.0e-4\n",
        [],
        {},
        "{file}:2: training.lrr: unknown key in training. Did you mean 'lr'? Allowed: batch_size,",
    ),
    (
        "key-of-another-method",
        "method:\n  name: lora\n  mask_mode: zero\n",
        [],
        {},
        "{file}:3: method.mask_mode: unknown key in method 'lora'. Allowed: alpha, dropout, name, "
        "r, target_modules.",
    ),
    (
        "wrong-type",
        "training:\n  batch_size: two\n",
        [],
        {},
        "{file}:2: training.batch_size: must be an integer (got 'two')",
    ),
    (
        "negative-lr",
        "training:\n  lr: -0.001\n",
        [],
        {},
        "{file}:2: training.lr: must be > 0 (got -0.001)",
    ),
    (
        "zero-batch",
        None,
        ["training.batch_size=0"],
        {},
        "training.batch_size: must be >= 1 (got 0) (from --set)",
    ),
    (
        "warmup-range",
        None,
        ["training.warmup_ratio=1"],
        {},
        "training.warmup_ratio: must be < 1 (got 1)",
    ),
    (
        "fractional-steps",
        None,
        ["training.max_steps=1.5"],
        {},
        "training.max_steps: must be a whole number (got 1.5)",
    ),
    (
        "bad-choice",
        "model:\n  quantization: nf4\n",
        [],
        {},
        "{file}:2: model.quantization: must be one of none, 8bit, 4bit (got 'nf4')",
    ),
    (
        "choice-did-you-mean",
        None,
        ["training.scheduler=cosin"],
        {},
        "training.scheduler: must be one of linear, cosine, constant (got 'cosin'). Did you mean 'cosine'?",
    ),
    (
        "unknown-method",
        "method:\n  name: advfuson\n",
        [],
        {},
        "{file}:2: method.name: unknown method 'advfuson'. Did you mean 'advfusion'? Available: lora, "
        "task-adapter, compacter, adapterfusion, advfusion, advfusion-compacter, adapterfusion-compacter.",
    ),
    (
        "unknown-method-set",
        None,
        ["method.name=lorra"],
        {},
        "method.name: unknown method 'lorra'. Did you mean 'lora'?",
    ),
    (
        "alias-contradiction",
        "method:\n  name: advfusion-compacter\n  adapter_kind: task-adapter\n",
        [],
        {},
        "{file}:3: method.adapter_kind: 'task-adapter' contradicts method name 'advfusion-compacter'",
    ),
    (
        "unknown-task",
        "data:\n  task: commit-mesage\n",
        [],
        {},
        "{file}:2: data.task: unknown task 'commit-mesage'. Did you mean 'commit-message'? Available: "
        "code-generation, code-translation, commit-message, custom.",
    ),
    (
        "unknown-language",
        "data:\n  languages:\n    - java\n    - rubyy\n",
        [],
        {},
        "{file}:4: data.languages[1]: unknown language 'rubyy'. Did you mean 'ruby'? Available:",
    ),
    (
        "duplicate-language",
        None,
        ["data.languages=ruby,rb"],
        {},
        "data.languages[1]: 'ruby' is listed twice (from --set)",
    ),
    ("empty-languages", None, ["data.languages=[]"], {}, "data.languages: must not be empty"),
    (
        "target-not-fused",
        None,
        [],
        {"data.target": "rust"},
        "data.target: 'rust' is not among data.languages (python, javascript, java, go, ruby); "
        "a fusion needs the target's adapter (from the command line)",
    ),
    (
        "unknown-subset",
        None,
        ["data.subset=Niche"],
        {},
        "data.subset: unknown translation subset 'Niche'.",
    ),
    ("hub-without-id", None, ["data.source=hub:"], {}, "data.source: 'hub:' needs a dataset id"),
    ("bad-run-name", None, ["output.run_name=my run"], {}, "output.run_name: 'my run' must start"),
    (
        "compacter-key-on-task-adapters",
        None,
        ["method.adapter.phm_dim=2"],
        {},
        "method.adapter.phm_dim: only applies when method.adapter_kind is 'compacter'",
    ),
    (
        "section-given-a-value",
        "training: 5\n",
        [],
        {},
        "{file}:1: training: must be a mapping of keys (got 5)",
    ),
    (
        "several-errors-counted",
        "training:\n  lr: -1\n  batch_size: 0\n  seed: x\n",
        [],
        {},
        "{file}:2: training.lr: must be > 0 (got -1) (and 2 more errors)",
    ),
    (
        "set-missing-key",
        None,
        ["data.langauges=java"],
        {},
        "--set data.langauges: unknown key 'langauges' in data. Did you mean 'languages'?",
    ),
    (
        "set-missing-section",
        None,
        ["trainig.lr=1"],
        {},
        "--set trainig.lr: unknown key 'trainig' in the spec's top level. Did you mean 'training'?",
    ),
    (
        "set-on-a-section",
        None,
        ["training=1"],
        {},
        "--set training: is a section; set one of its keys",
    ),
    (
        "set-below-a-value",
        None,
        ["training.lr.x=1"],
        {},
        "--set training.lr.x: 'training.lr' is a value",
    ),
    ("set-without-equals", None, ["training.lr"], {}, "--set 'training.lr': expected KEY=VALUE"),
    ("set-bad-yaml-list", None, ["data.languages=[java"], {}, "--set data.languages=[java:"),
    ("unknown-preset", None, [], {}, "--preset: unknown preset 'papr'. Did you mean 'paper'?"),
    ("unknown-preset-in-file", "preset: testbd\n", [], {}, "preset: unknown preset 'testbd'."),
    (
        "invalid-yaml",
        "training:\n  lr: [1\n",
        [],
        {},
        "{file}:3:1: invalid YAML: expected ',' or ']', but got '<stream end>'",
    ),
    (
        "duplicate-key",
        "training:\n  lr: 1.0e-4\n  lr: 2.0e-4\n",
        [],
        {},
        "{file}:3: duplicate key 'training.lr' (first on line 2)",
    ),
    ("not-a-mapping", "- a\n- b\n", [], {}, "{file}: a spec is a mapping of sections"),
]


@pytest.mark.parametrize(
    ("text", "sets", "flags", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_spec_gives_one_line_naming_the_key(tmp_path, text, sets, flags, expected):
    spec_file = None
    if text is not None:
        spec_file = tmp_path / "job.yaml"
        spec_file.write_text(text)
    preset = "papr" if expected.startswith("--preset") else None
    with pytest.raises(UserError) as info:
        resolve_spec(spec_file, preset, sets, flags)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(expected.format(file=spec_file)), message


def test_missing_spec_file(tmp_path):
    with pytest.raises(UserError, match=r"^spec file not found: .*nope.yaml$"):
        resolve_spec(tmp_path / "nope.yaml")


def test_spec_file_that_is_a_directory(tmp_path):
    with pytest.raises(UserError, match=r"^spec file is a directory: "):
        resolve_spec(tmp_path)


def test_spec_file_not_utf8(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_bytes(b"data:\n  target: \xff\n")
    with pytest.raises(UserError, match=r"job.yaml: not UTF-8 text"):
        resolve_spec(path)


def test_empty_spec_file_means_all_defaults(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("# nothing but a comment\n")
    assert resolve_spec(path) == resolve_spec()


@pytest.mark.parametrize(
    ("sets", "make", "expected"),
    [
        (
            ["model.name_or_path=./no-model"],
            None,
            "model.name_or_path: no such directory: no-model",
        ),
        (["model.name_or_path=a/b/c"], None, "model.name_or_path: no such directory: a/b/c"),
        (["model.name_or_path=bad id!"], None, "model.name_or_path: 'bad id!' is neither"),
        (["data.source=./no-data"], None, "data.source: no such file or directory: no-data"),
        (
            ["output.workdir={tmp}/file"],
            "file",
            "output.workdir: {tmp}/file exists and is not a directory",
        ),
        (["model.name_or_path={tmp}/file"], "file", "model.name_or_path: {tmp}/file is a file"),
    ],
)
def test_check_paths_names_the_key(tmp_path, monkeypatch, sets, make, expected):
    monkeypatch.chdir(tmp_path)
    if make:
        (tmp_path / make).write_text("x")
    spec = resolve_spec(sets=[item.format(tmp=tmp_path) for item in sets])
    with pytest.raises(UserError) as info:
        check_paths(spec)
    assert str(info.value).startswith(expected.format(tmp=tmp_path))


def test_check_paths_accepts_hub_ids_and_existing_paths_offline(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "data.jsonl").write_text("{}\n")
    for sets in (
        ["model.name_or_path=Qwen/Qwen2.5-Coder-1.5B", "data.source=hub:bigcode/commitpackft"],
        [f"model.name_or_path={tmp_path / 'model'}", f"data.source={tmp_path / 'data.jsonl'}"],
        [f"output.workdir={tmp_path / 'runs-not-yet-created'}"],
    ):
        check_paths(resolve_spec(sets=sets))
    assert not (tmp_path / "runs-not-yet-created").exists()


def test_error_names_the_command_line_when_the_bad_value_came_from_a_flag(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("training:\n  lr: 1.0e-4\n")
    with pytest.raises(
        UserError, match=r"^training.lr: must be > 0 \(got -1\) \(from the command line\)$"
    ):
        resolve_spec(path, flags={"training.lr": -1.0})
    assert Path(path).read_text() == "training:\n  lr: 1.0e-4\n"


def test_check_paths_refuses_a_workdir_that_cannot_be_written(tmp_path, monkeypatch):
    # Permissions are simulated: tests may run as root, who may write anywhere.
    locked = tmp_path / "locked"
    locked.mkdir()
    checked = []

    def access(path, mode):
        checked.append(Path(path))
        return Path(path) != locked

    monkeypatch.setattr("advfusion_cli.spec.paths.os.access", access)
    spec = resolve_spec(sets=[f"output.workdir={locked / 'runs' / 'a'}"])
    with pytest.raises(UserError, match=rf"^output.workdir: {locked} is not writable$"):
        check_paths(spec)
    assert checked == [locked]  # the nearest folder that exists is the one that must be writable
    check_paths(resolve_spec(sets=[f"output.workdir={tmp_path / 'open'}"]))
