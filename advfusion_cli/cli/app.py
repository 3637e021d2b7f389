"""The Typer application and the `main` entry point that turns UserError into exit code 2."""

from __future__ import annotations

import logging
import sys

import typer

from advfusion_cli import __version__
from advfusion_cli.errors import UserError

app = typer.Typer(
    name="advfusion",
    help="Adapter-based multilingual fine-tuning of code LLMs: AdvFusion and its baselines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_DEBUG = {"on": False}

# bitsandbytes warns at import on AVX512-BF16 CPUs that an optional hub-hosted kernel could
# not be fetched; it falls back to its own CPU path, so the line is noise in every command.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"advfusion {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _DEBUG["on"] = debug


def _register_commands() -> None:
    """Subcommand modules register themselves on `app` when imported."""
    import importlib
    import pkgutil

    import advfusion_cli.cli as cli_pkg

    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"advfusion_cli.cli.{info.name}")


_register_commands()


def _click_class(name: str) -> type[Exception]:
    """A click exception class by name, found through typer's public BadParameter (typer may
    bundle its own copy of click, so `import click` would name different classes)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


_ClickException = _click_class("ClickException")
_UsageError = _click_class("UsageError")


def _usage_line(err) -> str:
    """A usage error as one line: the command, click's message, where to look."""
    command = err.ctx.command_path if err.ctx is not None else "advfusion"
    message = " ".join(err.format_message().split())
    return f"{command}: {message} (see '{command} --help')"


def _fail(message: str, code: int, debug: bool) -> None:
    """One red `error:` line and exit `code`; with --debug, re-raise for the traceback."""
    if debug:
        raise
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors, usage errors included, become one line on
    stderr and exit code 2; `--debug` shows the traceback instead."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        # standalone_mode=False: click raises its errors here instead of drawing a panel.
        code = app(args=args, prog_name="advfusion", standalone_mode=False)
    except UserError as err:
        _fail(str(err), err.exit_code, debug)
    except _UsageError as err:
        if type(err).__name__ == "NoArgsIsHelpError":
            # `advfusion` or `advfusion data` alone: the help is the useful answer.
            typer.echo(err.ctx.get_help())
            sys.exit(0)
        _fail(_usage_line(err), 2, debug)
    except _ClickException as err:  # e.g. a file option click could not open
        _fail(" ".join(err.format_message().split()), err.exit_code or 2, debug)
    except typer.Abort:  # Ctrl-C outside a training loop
        typer.echo("Aborted.", err=True)
        sys.exit(130)
    if isinstance(code, int) and code != 0:
        sys.exit(code)
