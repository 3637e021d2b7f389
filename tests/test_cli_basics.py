"""The CLI entry point: version, help, and how user errors are reported."""

import pytest

from advfusion_cli import __version__


def test_version_prints_package_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"advfusion {__version__}"


def test_help_lists_the_tool(cli):
    result = cli("--help")
    assert result.exit_code == 0
    assert "AdvFusion" in result.stdout


def test_unknown_command_is_a_usage_error(cli):
    result = cli("no-such-command")
    assert result.exit_code == 2
    assert "no-such-command" in result.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["no-such-command"], "No such command 'no-such-command'"),
        (["evaluate", "--dry-run"], "No such option: --dry-run"),
        (["evaluate", "--run", "base", "--limit", "abc"], "Invalid value for '--limit'"),
        (["data", "show", "-n", "-1"], "'--num'"),
        (["evaluate"], "Missing option '--run'"),
        (["generate", "--run"], "Option '--run' requires an argument"),
    ],
)
def test_usage_errors_are_one_line_naming_the_option(cli, args, named):
    """Click's usage errors get the same treatment as every other user error: one `error:`
    line naming the option and where to look, exit code 2, no boxed panel."""
    result = cli(*args)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: advfusion") and named in lines[0]
    assert lines[0].endswith("--help')")
    assert "Usage:" not in result.stderr and "Traceback" not in result.stderr


def test_no_arguments_print_the_help(cli):
    result = cli()
    assert result.exit_code == 0
    assert "train-adapters" in result.stdout and "adv-fuse" in result.stdout
