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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="advfusion")
    except UserError as err:
        if "--debug" in args:
            raise
        typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
        sys.exit(err.exit_code)
