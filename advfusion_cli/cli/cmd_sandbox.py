"""`advfusion sandbox`: the sandbox's toolchains (install the ones programs need)."""

from __future__ import annotations

from typing import Annotated

import typer

from advfusion_cli.cli.app import app

sandbox_app = typer.Typer(
    help="The sandbox that executes generated programs: install language toolchains.",
    no_args_is_help=True,
)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("install")
def install_command(
    languages: Annotated[
        list[str],
        typer.Argument(help="MultiPL-E extensions or language names: lua rkt ml r pl php ..."),
    ],
) -> None:
    """Install the toolchains (and test libraries) these languages' programs need: apt-get as root, otherwise one line with the command to run."""
    from advfusion_cli.sandbox.install import install

    if not install(languages, lambda line: typer.echo(line)):
        raise typer.Exit(1)
