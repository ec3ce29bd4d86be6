"""Click group behaviours shared by the verb groups."""

from __future__ import annotations

from typing import TYPE_CHECKING

from typer.core import TyperGroup

if TYPE_CHECKING:  # typer vendors click; its own copy is the one it types against
    from typer import _click as click


class DefaultRunGroup(TyperGroup):
    """A group whose first argument, if not a subcommand, goes to its hidden ``run``.

    So ``geomlops serve MODEL`` sits beside ``geomlops serve manifest MODEL``, and
    ``geomlops infer MODEL`` beside ``geomlops infer status RUN``. ``run`` also takes the
    options in :attr:`run_options` first (``geomlops infer --pipeline SPEC …``: a pipeline
    names its models, so no MODEL comes before it).
    """

    run_options: tuple[str, ...] = ("--pipeline",)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # The group parses its own options before it resolves a command, so an option of
        # ``run`` given first must be routed here, not in resolve_command.
        if args and args[0].split("=", 1)[0] in self.run_options:
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)
