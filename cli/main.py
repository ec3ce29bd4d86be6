"""Entry point of the `geomlops` command line.

Verb groups live one module each; this module only assembles them and maps the
platform's errors to exit codes (0 success, 1 runtime error, 2 usage error).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from geomlops.cli import catalog as catalog_cli
from geomlops.cli import dataset as dataset_cli
from geomlops.cli import governance as governance_cli
from geomlops.cli import imagery as imagery_cli
from geomlops.cli import infer as infer_cli
from geomlops.cli import keys as keys_cli
from geomlops.cli import package as registration_cli
from geomlops.cli import serve as serving_cli
from geomlops.cli import stack
from geomlops.cli import train_step as train_step_cli
from geomlops.cli import workflows as workflows_cli
from geomlops.errors import GeomlopsError

if TYPE_CHECKING:
    import click


class GeomlopsGroup(TyperGroup):
    """Prints a platform error as a message and a hint on stderr, then exits 1.

    Catching here rather than around ``app()`` means the test runner sees exactly what a
    person sees.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GeomlopsError as exc:
            console = Console(stderr=True, highlight=False, soft_wrap=True)
            console.print(f"[red]error:[/] {exc.message}")
            for problem in getattr(exc, "problems", []):
                console.print(f"  - {problem}", markup=False)
            if exc.hint:
                console.print(f"[yellow]hint:[/] {exc.hint}")
            ctx.exit(exc.exit_code)


app = typer.Typer(
    name="geomlops",
    cls=GeomlopsGroup,
    no_args_is_help=True,
    help="MLOps for geospatial machine learning: catalog, training, approval, inference.",
    pretty_exceptions_enable=False,
)

stack.register(app)
governance_cli.register(app)

# --- component verb groups (one add_typer line per group) -------------------------------
app.add_typer(catalog_cli.app, name="catalog")
app.add_typer(keys_cli.app, name="keys")
app.add_typer(imagery_cli.app, name="imagery")
app.add_typer(dataset_cli.app, name="dataset")
app.add_typer(workflows_cli.app, name="workflows")
app.add_typer(train_step_cli.app, name="train-step")
app.add_typer(registration_cli.app, name="package")
app.add_typer(serving_cli.app, name="serve")
app.add_typer(infer_cli.app, name="infer")
app.add_typer(infer_cli.step_app, name="infer-step")
