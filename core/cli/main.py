"""Entry point of the `geomlops` command line."""

import typer

app = typer.Typer(no_args_is_help=True)
