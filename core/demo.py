"""The end-to-end demo behind `make demo`.

Each capability that works end to end adds a step here, so the demo always shows the
whole platform as it stands. Steps run in order against the local stack, which is left
running at the end so a person can explore what the demo made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console

from geomlops.connections import get_connections
from geomlops.settings import Settings
from geomlops.stack.manager import LocalStack

console = Console(stderr=True)


@dataclass(frozen=True)
class DemoStep:
    """One stage of the demo: a title and the function that performs it."""

    title: str
    run: Callable[[Settings], None]


def _start_stack(settings: Settings) -> None:
    statuses = LocalStack(settings).up(progress=lambda msg: console.print(f"  [dim]{msg}[/]"))
    unhealthy = [s.name for s in statuses if not s.healthy]
    if unhealthy:
        raise RuntimeError(f"unhealthy after up: {unhealthy}")


DEMO_PACKAGES = ("flood-water-s2", "flood-water-s1")


def _register_packages(settings: Settings) -> None:
    """Validate and register the example packages (a second run reports them unchanged)."""
    from geomlops.registration.register import register_package
    from geomlops.registration.validate import validate_or_raise

    folder = settings.training.local_packages
    if folder is None:
        raise RuntimeError("no model_packages/ folder: set GEOMLOPS_TRAIN_LOCAL_PACKAGES")
    for name in DEMO_PACKAGES:
        validate_or_raise(folder / name, settings)
        console.print(f"  [green]valid[/] {name}")
        result = register_package(folder / name, settings=settings)
        for line in result.summary():
            console.print(f"  {line}")
        for note in result.notes:
            console.print(f"  [dim]note: {note}[/]")


STEPS: list[DemoStep] = [
    DemoStep("Start the local stack", _start_stack),
    DemoStep("Register the model packages", _register_packages),
]


def run_demo(settings: Settings) -> None:
    """Run every step, then say where to look."""
    LocalStack(settings).paths.outputs_dir.mkdir(parents=True, exist_ok=True)
    for number, step in enumerate(STEPS, start=1):
        console.rule(f"[bold]{number}/{len(STEPS)} {step.title}")
        step.run(settings)
    summarise(settings)


def summarise(settings: Settings) -> None:
    """Print the URLs of the running stack and where the outputs are."""
    stack = LocalStack(settings)
    conn = get_connections(settings)
    console.rule("[bold]The stack is running")
    for status in stack.status():
        console.print(f"  {status.name:9} {status.url}  ({status.detail})")
    console.print(f"  STAC API      {conn.stac_url}  (browse: {conn.stac_url}/api.html)")
    console.print(f"  MLflow UI     {conn.mlflow_tracking_uri}")
    console.print(f'  S3 endpoint   {conn.s3_endpoint_url}  (keys: eval "$(geomlops env)")')
    console.print(f"  outputs       {stack.paths.outputs_dir}")
    console.print(f"  logs          {stack.paths.logs_dir}")
    console.print("  stop with     geomlops down   (data is kept for the next `geomlops up`)")
