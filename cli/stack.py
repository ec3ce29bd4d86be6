"""`geomlops up|down|status|env`: the local stack."""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from geomlops.cli.options import JsonOption

if TYPE_CHECKING:
    from geomlops.stack.manager import ServiceStatus

err = Console(stderr=True)
out = Console()


def _table(statuses: list[ServiceStatus]) -> Table:
    table = Table(title="geomlops local stack")
    for column in ("service", "url", "health"):
        table.add_column(column)
    for s in statuses:
        health = "[green]healthy[/]" if s.healthy else f"[red]{s.detail}[/]"
        table.add_row(s.name, s.url or "-", health)
    return table


def up() -> None:
    """Start the local stack (PostgreSQL+PgSTAC, S3, MLflow, STAC API) on 127.0.0.1.

    Running it again is harmless: healthy services are left alone and dead ones are
    restarted on the same data.

    Examples:
        geomlops up
        GEOMLOPS_HOME=/srv/geomlops geomlops up
    """
    from geomlops.settings import get_settings
    from geomlops.stack.manager import LocalStack

    stack = LocalStack(get_settings())
    statuses = stack.up(progress=lambda msg: err.print(f"[dim]{msg}[/]"))
    out.print(_table(statuses))
    err.print(f"state directory: {stack.paths.home}   (point other tools here: geomlops env)")


def down() -> None:
    """Stop every service of the local stack; all data stays in the state directory.

    Examples:
        geomlops down
    """
    from geomlops.settings import get_settings
    from geomlops.stack.manager import LocalStack

    stopped = LocalStack(get_settings()).down(progress=lambda msg: err.print(f"[dim]{msg}[/]"))
    err.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def status(as_json: JsonOption = False) -> None:
    """Show each service's URL and health; exit 1 if any is unhealthy.

    Examples:
        geomlops status
        geomlops status --json | jq '.[] | select(.healthy | not)'
    """
    from geomlops.settings import get_settings
    from geomlops.stack.manager import LocalStack

    statuses = LocalStack(get_settings()).status()
    if as_json:
        typer.echo(json.dumps([s.as_dict() for s in statuses], indent=2))
    else:
        out.print(_table(statuses))
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)


def env() -> None:
    """Print shell exports that point mlflow, aws, dvc, GDAL/QGIS at the stack.

    Examples:
        eval "$(geomlops env)"
        mlflow experiments search
    """
    from geomlops.connections import get_connections

    for key, value in get_connections().env().items():
        typer.echo(f"export {key}={shlex.quote(value)}")


def demo() -> None:
    """Run the end-to-end demo on the local stack and leave the stack running.

    Examples:
        geomlops demo
        GEOMLOPS_HOME=/tmp/demo geomlops demo
    """
    from geomlops.cli.demo import run_demo
    from geomlops.settings import get_settings

    run_demo(get_settings())


def register(app: typer.Typer) -> None:
    """Add the stack verbs to the top-level command."""
    for verb in (up, down, status, env, demo):
        app.command()(verb)
