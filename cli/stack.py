"""`geomlops up|down|status|env`: the local stack."""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from geomlops.cli.options import JsonOption
from geomlops.errors import StackError

if TYPE_CHECKING:
    from geomlops.settings import Settings
    from geomlops.stack.manager import ServiceStatus

err = Console(stderr=True)
out = Console()


def _table(statuses: list[ServiceStatus]) -> Table:
    table = Table(title="geomlops local stack")
    for column in ("service", "url", "health"):
        table.add_column(column)
    for s in statuses:
        if s.healthy:
            health = "[green]healthy[/]"
        else:
            health = f"[yellow]{s.detail}[/]" if s.degraded else f"[red]{s.detail}[/]"
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


def _running_workflows(settings: Settings) -> list[dict[str, Any]]:
    """Local workflow runs that are working now (not finished, not waiting for a person)."""
    from geomlops.workflows.executor import LocalExecutor, RunPhase

    if not settings.workflows_state_dir.exists():
        return []
    return [
        run
        for run in LocalExecutor(settings).list()
        if run["phase"] not in RunPhase.FINISHED and not run["suspended"]
    ]


def down(
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Stop running workflows first (they end Failed, their message saying they "
            "were stopped by `geomlops down`); without it, `down` refuses while any runs.",
        ),
    ] = False,
) -> None:
    """Stop every service of the local stack; all data stays in the state directory.

    Workflow runs waiting at their approval step are kept (they wait for the next `up`);
    runs at work would lose their services, so `down` lists them and refuses, unless
    `--force` stops them cleanly first.

    Examples:
        geomlops down
        geomlops down --force
    """
    from geomlops.settings import get_settings
    from geomlops.stack.manager import LocalStack

    settings = get_settings()
    active = _running_workflows(settings)
    if active and not force:
        raise StackError(
            f"{len(active)} workflow run(s) are running and need the stack: "
            + ", ".join(f"{r['name']} ({r['phase']})" for r in active),
            hint="wait for them (`geomlops workflows list`), stop them "
            "(`geomlops workflows stop RUN`), or `geomlops down --force` to stop them and the "
            "stack",
        )
    if active:
        from geomlops.workflows.executor import LocalExecutor

        executor = LocalExecutor(settings)
        for run in active:
            err.print(f"[dim]{run['name']}: stopping[/]")
            executor.stop(run["name"], reason="stopped by `geomlops down --force`", wait=True)
            err.print(f"{run['name']}: stopped")
    stopped = LocalStack(settings).down(progress=lambda msg: err.print(f"[dim]{msg}[/]"))
    err.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def status(as_json: JsonOption = False) -> None:
    """Show each service's URL and health; exit 1 if any is unhealthy.

    Examples:
        geomlops status
        geomlops status --json | jq '.[] | select(.healthy | not)'
    """
    from geomlops.settings import get_settings
    from geomlops.stack.manager import LocalStack

    stack = LocalStack(get_settings())
    statuses = stack.status()
    if as_json:
        typer.echo(json.dumps([s.as_dict() for s in statuses], indent=2))
    else:
        out.print(_table(statuses))
        if stack.paths.home.exists():
            from geomlops.stack import supervisor

            watching = supervisor.running(stack.ctx)
            err.print(
                "watchdog: "
                + ("restarting dead services" if watching else "not running")
                + f" (log: {stack.paths.log_file(supervisor.NAME)})"
            )
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
