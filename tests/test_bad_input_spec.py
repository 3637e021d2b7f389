"""Bad input caught at validation: malformed spec YAML, out-of-range seeds, non-finite or
boolean numbers, fusions with nothing to fuse, and bad options of compare/evaluate/demo/data.

Every row runs the real entry point and must end in exactly one stderr line `error: ...`
naming the key, option, file or value, exit code 2, no traceback and no file changed. The
commands are `validate`, `--dry-run` or refused before any work, so nothing is trained.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

Args = Callable[[Path], list[str]]


def spec(text: str, *command: str) -> Args:
    """Write `text` to spec.yaml; the command gets its path where `{spec}` stands."""

    def make(tmp: Path) -> list[str]:
        path = tmp / "spec.yaml"
        path.write_text(text, encoding="utf-8")
        return [str(path) if part == "{spec}" else part for part in command]

    return make


def args(*command: str) -> Args:
    """A command; `{tmp}` stands for the test's own folder, `{work}` for a workdir in it."""

    def make(tmp: Path) -> list[str]:
        return [
            part.replace("{tmp}", str(tmp)).replace("{work}", str(tmp / "work")) for part in command
        ]

    return make


DEEP = "training: " + "[" * 5000 + "]" * 5000 + "\n"
LIST_KEY = "training:\n  lr: 1e-3\n  ? [a, b]\n  : 1\n"
COMPARE = ("compare", "--methods", "lora", "--target", "ruby", "--dry-run", "--workdir", "{work}")
DRY = ("--dry-run", "--workdir", "{work}")
DEMO = ("demo", "--workdir", "{work}")

CASES: list[tuple[str, Args, list[str]]] = [
    # 1: recursive aliases and deep nesting: one line naming the file, no RecursionError
    ("recursive-alias", spec("a: &x [*x]\n", "validate", "{spec}"), ["spec.yaml:1", "recursive"]),
    ("deep-nesting", spec(DEEP, "validate", "{spec}"), ["spec.yaml", "nested"]),
    ("compare-recursive", spec("a: &x [*x]\n", *COMPARE, "--spec", "{spec}"), ["spec.yaml:1"]),
    ("compare-deep", spec(DEEP, *COMPARE, "--spec", "{spec}"), ["spec.yaml", "nested"]),
    # 2: a list as a mapping key
    ("list-key", spec(LIST_KEY, "validate", "{spec}"), ["spec.yaml:3", "training", "key"]),
    ("list-key-top", spec("? [a]\n: 1\n", "validate", "{spec}"), ["spec.yaml:1", "key"]),
    # 3: seeds must fit numpy's 0 .. 2**32 - 1
    ("seed-flag-negative", args("train-adapters", "--seed", "-1", *DRY), ["training.seed", "-1"]),
    (
        "seed-flag-huge",
        args("train-adapters", "--seed", "99999999999999", *DRY),
        ["training.seed", "99999999999999"],
    ),
    ("seed-set-negative", args("validate", "--set", "training.seed=-1"), ["training.seed", "-1"]),
    (
        "seed-set-2**32",
        args("validate", "--set", "training.seed=4294967296"),
        ["training.seed", "4294967296"],
    ),
    ("seed-file", spec("training: {seed: -1}\n", "validate", "{spec}"), ["training.seed"]),
    ("split-seed", args("validate", "--set", "data.split_seed=-1"), ["data.split_seed"]),
    ("compare-seeds", args(*COMPARE, "--seeds", "-1"), ["--seeds", "-1"]),
    ("compare-seeds-huge", args(*COMPARE, "--seeds", "0,4294967296"), ["--seeds", "4294967296"]),
    ("demo-seeds", args(*DEMO, "--seeds", "-1"), ["--seeds", "-1"]),
    # 4: numbers must be finite
    ("lr-inf", args("validate", "--set", "training.lr=.inf"), ["training.lr", "inf"]),
    ("lr-inf-file", spec("training: {lr: .inf}\n", "validate", "{spec}"), ["training.lr"]),
    (
        "weight-decay-inf",
        args("validate", "--set", "training.weight_decay=.inf"),
        ["training.weight_decay"],
    ),
    ("fusion-lr-inf", args("validate", "--set", "training.fusion_lr=.inf"), ["training.fusion_lr"]),
    ("epochs-inf", args("validate", "--set", "training.epochs=.inf"), ["training.epochs"]),
    (
        "grad-norm-inf",
        args("validate", "--set", "training.max_grad_norm=.inf"),
        ["training.max_grad_norm"],
    ),
    (
        "regularization-inf",
        args("validate", "--set", "method.regularization_weight=.inf"),
        ["method.regularization_weight"],
    ),
    (
        "lora-alpha-inf",
        args("validate", "--set", "method.name=lora", "--set", "method.alpha=.inf"),
        ["method.alpha"],
    ),
    # 5: true/false is not a number
    (
        "max-steps-true-file",
        spec("training: {max_steps: true}\n", "validate", "{spec}"),
        ["spec.yaml:1", "training.max_steps", "true"],
    ),
    ("max-steps-true-set", args("validate", "--set", "training.max_steps=true"), ["max_steps"]),
    ("lr-true", args("validate", "--set", "training.lr=true"), ["training.lr", "true"]),
    ("batch-true", spec("training: {batch_size: yes}\n", "validate", "{spec}"), ["batch_size"]),
    (
        "phm-dim-true",
        args("validate", "--set", "method.name=compacter", "--set", "method.phm_dim=true"),
        ["method.phm_dim"],
    ),
    # 6: a fusion needs a language besides the target
    (
        "adv-fuse-only-target",
        args("adv-fuse", "--target", "ruby", "--langs", "ruby", *DRY),
        ["data.languages", "--langs", "ruby"],
    ),
    ("fuse-only-target", args("fuse", "--langs", "ruby", *DRY), ["data.languages", "ruby"]),
    (
        "fusion-compacter-only-target",
        args(
            "validate", "--set", "method.name=advfusion-compacter", "--set", "data.languages=ruby"
        ),
        ["data.languages", "ruby"],
    ),
    (
        "adapterfusion-only-target-file",
        spec("method: adapterfusion\ndata: {languages: [go], target: go}\n", "validate", "{spec}"),
        ["data.languages", "go"],
    ),
    (
        "compare-fusion-only-target",
        args(*COMPARE[:2], "advfusion", *COMPARE[3:], "--langs", "ruby"),
        ["data.languages", "ruby"],
    ),
    # 7: --vary training.seed would be overridden by --seeds
    (
        "vary-seed-with-seeds",
        args(*COMPARE, "--vary", "training.seed=1,2", "--seeds", "0,1"),
        ["--vary", "training.seed", "--seeds"],
    ),
    ("vary-seed", args(*COMPARE, "--vary", "training.seed=1,2"), ["--vary", "--seeds"]),
    # 8: --workers >= 1
    ("evaluate-workers-0", args("evaluate", "--run", "base", "--workers", "0"), ["--workers"]),
    ("compare-workers-neg", args(*COMPARE, "--workers", "-3"), ["--workers", "-3"]),
    # 9: data show's token budgets as strict as the spec's
    (
        "data-show-budgets",
        args(
            "data",
            "show",
            "--tokenizer",
            "{tmp}",
            "--max-prompt-tokens",
            "-5",
            "--max-total-tokens",
            "-3",
        ),
        ["--max-prompt-tokens", "-5"],
    ),
    ("data-show-total", args("data", "show", "--max-total-tokens", "1"), ["--max-total-tokens"]),
    # 10: --spec pointing at a folder
    ("compare-spec-dir", args(*COMPARE, "--spec", "{tmp}"), ["directory", "{tmp}"]),
    # 11: demo's own options, checked first, the error alone on stderr
    ("demo-steps", args(*DEMO, "--steps", "0"), ["--steps", "0"]),
    ("demo-limit", args(*DEMO, "--limit", "-1"), ["--limit", "-1"]),
    ("demo-batch", args(*DEMO, "--batch-size", "0"), ["--batch-size", "0"]),
    ("demo-new-tokens", args(*DEMO, "--max-new-tokens", "0"), ["--max-new-tokens"]),
    ("demo-target", args(*DEMO, "--target", "rubyy"), ["--target", "rubyy", "ruby"]),
    ("demo-target-not-testbed", args(*DEMO, "--target", "rust"), ["--target", "rust"]),
    ("demo-set", args(*DEMO, "--set", "training.lr=-1"), ["training.lr", "--set"]),
    # 12: a bare `hub:` is not a dataset id
    ("data-show-bare-hub", args("data", "show", "--source", "hub:"), ["--source", "hub:"]),
]


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("make", "named"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_naming_it(cli, tmp_path, make, named):
    argv = make(tmp_path)
    before = files_under(tmp_path)
    result = cli(*argv)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    for text in named:
        assert text.replace("{tmp}", str(tmp_path)) in lines[0], lines[0]
    assert files_under(tmp_path) == before
    assert not (tmp_path / "work").exists()  # refused before any work


def test_booleans_refused_but_set_numbers_still_coerce(cli):
    refused = cli("validate", "--set", "training.max_steps=true")
    assert refused.exit_code == 2 and "training.max_steps" in refused.stderr
    accepted = cli(
        "validate",
        "--set",
        "training.max_steps=4",
        "--set",
        "training.seed=4294967295",
        "--set",
        "training.lr=1e308",
        "--set",
        "method.temperature=true",
        "--print-spec",
    )
    assert accepted.exit_code == 0, accepted.stderr
    assert "max_steps: 4\n" in accepted.stdout and "seed: 4294967295\n" in accepted.stdout


def test_only_target_fusion_refused_but_adapters_of_a_fusion_spec_still_train(cli, tmp_path):
    """train-adapters reads a fusion spec for its adapters' settings: one language is fine
    there; and a run recorded before the check (job.yaml) still loads."""
    from advfusion_cli.spec import load_spec

    path = tmp_path / "advfusion.yaml"
    path.write_text("method: advfusion\n", encoding="utf-8")
    refused = cli("adv-fuse", "--spec", str(path), "--langs", "ruby", "--dry-run")
    assert refused.exit_code == 2 and "data.languages" in refused.stderr
    work = tmp_path / "work"
    plan = cli(
        "train-adapters",
        "--spec",
        str(path),
        "--langs",
        "ruby",
        "--dry-run",
        "--workdir",
        str(work),
    )
    assert plan.exit_code == 0, plan.stderr
    record = tmp_path / "job.yaml"
    record.write_text("method: advfusion\ndata: {languages: [ruby], target: ruby}\n")
    assert load_spec(record).data.languages == ["ruby"]
