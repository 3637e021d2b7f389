"""The CLI entry point: version, help, and how user errors are reported."""

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
