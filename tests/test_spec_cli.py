"""`advfusion validate`: exit 0 with "ok" and a summary, exit 2 with one error line."""

from __future__ import annotations

from advfusion_cli.spec import parse_spec, resolve_spec


def test_validate_prints_ok_and_summary(cli, tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("data:\n  task: commit-message\nmethod:\n  name: lora\n")
    result = cli("validate", str(path))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"ok {path}"
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in lines[1:] if line.strip()}
    assert rows["task"] == "commit-message"
    assert rows["method"].startswith("lora (r 16, alpha 16")
    assert rows["model"] == "advfusion/tiny-code (shipped tiny model)"
    assert rows["languages"] == "python, javascript, java, go, ruby"
    assert rows["target"] == "ruby"
    assert rows["training"] == "150 steps, batch 8 x 1, lr 0.005"
    assert result.stderr == ""


def test_validate_applies_preset_and_sets(cli):
    result = cli(
        "validate", "--preset", "paper", "--set", "method.name=lora", "--set", "training.epochs=1"
    )
    assert result.exit_code == 0, result.stderr
    assert "paper" in result.stdout
    assert "1 epochs, batch 1 x 4, lr 0.0001" in result.stdout


def test_validate_print_spec_gives_the_resolved_yaml(cli):
    result = cli("validate", "--set", "data.languages=js,ruby", "--print-spec")
    assert result.exit_code == 0, result.stderr
    text = result.stdout[result.stdout.index("preset: testbed") :]
    assert parse_spec(text) == resolve_spec(sets=["data.languages=js,ruby"])


def test_validate_bad_value_exits_2_with_one_line(cli, tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("training:\n  lr: -0.001\n")
    result = cli("validate", str(path))
    assert result.exit_code == 2
    assert result.stderr == f"error: {path}:2: training.lr: must be > 0 (got -0.001)\n"
    assert result.stdout == ""


def test_validate_unknown_set_key_exits_2(cli):
    result = cli("validate", "--set", "training.lrr=1")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --set training.lrr: unknown key 'lrr' in training.")
    assert "Traceback" not in result.stderr


def test_validate_missing_file_exits_2(cli, tmp_path):
    result = cli("validate", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 2
    assert result.stderr == f"error: spec file not found: {tmp_path / 'missing.yaml'}\n"


def test_validate_missing_local_model_exits_2(cli, tmp_path):
    result = cli("validate", "--set", f"model.name_or_path={tmp_path / 'nope'}")
    assert result.exit_code == 2
    assert result.stderr == f"error: model.name_or_path: no such directory: {tmp_path / 'nope'}\n"


def test_validate_unknown_preset_exits_2(cli):
    result = cli("validate", "--preset", "papr")
    assert result.exit_code == 2
    assert "unknown preset 'papr'. Did you mean 'paper'?" in result.stderr
