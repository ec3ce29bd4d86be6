"""Entry point of the `geomlops` command line.

Verb groups live one module each; this module only assembles them and maps the
platform's errors to exit codes (0 success, 1 runtime error, 2 usage error).

Start-up time is part of the interface (`bench/cli_startup.py`): every verb module imports
heavy code only inside the commands that use it, and a verb group's commands are built
only when a command line names the group, so `geomlops status` never inspects the
signatures of fifty commands it does not run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from typer.core import TyperGroup
from typer.main import get_group_from_info, solve_typer_info_defaults
from typer.models import TyperInfo

from geomlops.cli import governance as governance_cli
from geomlops.cli import reproduce, stack
from geomlops.errors import GeomlopsError

if TYPE_CHECKING:  # typer vendors click; its own copy is the one it types against
    from typer import _click as click

VERB_GROUPS: dict[str, str] = {
    "catalog": "geomlops.cli.catalog:app",
    "keys": "geomlops.cli.keys:app",
    "imagery": "geomlops.cli.imagery:app",
    "dataset": "geomlops.cli.dataset:app",
    "workflows": "geomlops.cli.workflows:app",
    "train-step": "geomlops.cli.train_step:app",
    "package": "geomlops.cli.package:app",
    "serve": "geomlops.cli.serve:app",
    "infer": "geomlops.cli.infer:app",
    "infer-step": "geomlops.cli.infer:step_app",
    "processor": "geomlops.cli.processor:app",
}
"""Component verb groups (one line per group): command name -> ``module:Typer``, in the
order `geomlops --help` lists them after the top-level verbs."""


def _verb_group(name: str) -> typer.Typer:
    module, _, attribute = VERB_GROUPS[name].partition(":")
    verbs: typer.Typer = getattr(importlib.import_module(module), attribute)
    return verbs


class GeomlopsGroup(TyperGroup):
    """The top-level command: builds verb groups on demand, and reports platform errors.

    A :class:`GeomlopsError` is printed as a message and a hint on stderr, then the command
    exits with the error's code (1). Catching here rather than around ``app()`` means the
    test runner sees exactly what a person sees.
    """

    _listing = False
    """True while `--help` lists the commands: verb groups then need only their help line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in VERB_GROUPS:  # listed, completed and suggested like any other command
            self.commands.setdefault(name, _Unbuilt(name=name))

    def get_command(self, ctx: click.Context, cmd_name: str) -> Any:
        if isinstance(self.commands.get(cmd_name), _Unbuilt):
            if self._listing:
                return _listing_entry(cmd_name)
            self.commands[cmd_name] = get_group_from_info(
                TyperInfo(_verb_group(cmd_name), name=cmd_name),
                pretty_exceptions_short=app.pretty_exceptions_short,
                rich_markup_mode=app.rich_markup_mode,
                suggest_commands=app.suggest_commands,
            )
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: click.Context, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

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


class _Unbuilt(TyperGroup):
    """Holds a verb group's place among the commands until a command line names it."""


def _listing_entry(name: str) -> TyperGroup:
    """A verb group as `--help` lists it (name, help, panel), without building its commands.

    The same fields :func:`typer.main.get_group_from_info` gives the built group, so the
    listing cannot differ from what the group says of itself.
    """
    info = solve_typer_info_defaults(TyperInfo(_verb_group(name), name=name))
    return TyperGroup(
        name=name,
        help=info.help,
        short_help=info.short_help,
        hidden=info.hidden,
        deprecated=info.deprecated,
        rich_help_panel=info.rich_help_panel,
    )


app = typer.Typer(
    name="geomlops",
    cls=GeomlopsGroup,
    no_args_is_help=True,
    help="MLOps for geospatial machine learning: catalog, training, approval, inference.",
    pretty_exceptions_enable=False,
)

stack.register(app)
governance_cli.register(app)
reproduce.register(app)
# The component verb groups are added on demand by GeomlopsGroup, from VERB_GROUPS.
