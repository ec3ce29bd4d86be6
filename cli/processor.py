"""`geomlops processor register|list|show`: generic processors, catalogued with their sha256.

A processor is a Python script defining ``process(inputs, params) -> dict`` and a literal
``PARAMETERS`` dict (``processors/README.md``); ``geomlops infer --processor NAME`` runs it
on a run's published outputs. Logs on stderr, results on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from geomlops.cli.options import JsonOption

app = typer.Typer(
    name="processor",
    help="Generic processors: user Python scripts run after batch inference publishes.\n\n"
    "Examples:\n\n"
    "  geomlops processor register processors/flood_area_by_country.py "
    "--name flood-area-by-country --param countries=countries.geojson\n\n"
    "  geomlops processor list\n\n"
    "  geomlops processor show flood-area-by-country",
    no_args_is_help=True,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _print(row: dict[str, Any]) -> None:
    flag = " [yellow](deprecated)[/]" if row["deprecated"] else ""
    err.print(f"[bold]{row['name']}[/] v{row['version']}{flag}  sha256 {row['sha256'][:16]}…")
    if row["description"]:
        err.print(f"  {escape(row['description'].splitlines()[0])}")
    for key, spec in row["parameters"].items():
        value = row["defaults"].get(key, spec.get("default", "(required)"))
        err.print(f"  {key} ({spec['type']}) = {escape(str(value))}")


@app.command()
def register(
    script: Annotated[Path, typer.Argument(help="The processor's Python file.")],
    name: Annotated[str, typer.Option("--name", help="Processor name (lower case, dashes).")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="KEY=VALUE: a default for a declared parameter."),
    ] = None,
    description: Annotated[
        str | None, typer.Option(help="What it does; default: the script's docstring.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    r"""Check SCRIPT, store it in S3 and catalogue it as a new version of processor NAME.

    The same script with the same --param values again changes nothing; a changed one is a
    new version (the previous one is marked deprecated). Needs the writer role.

    Examples:
        geomlops processor register processors/min_mapping_unit.py --name mmu \
            --param min_area_m2=5000
    """
    from geomlops.errors import ValidationFailed
    from geomlops.processors import parse_assignments
    from geomlops.registration.processors import register_processor, summary
    from geomlops.settings import get_settings

    if not script.is_file():
        raise typer.BadParameter(f"{script} is not a file", param_hint="SCRIPT")
    try:
        given = parse_assignments(param or [], "--param")
    except ValidationFailed as error:
        raise typer.BadParameter(error.message, param_hint="--param") from None
    done = register_processor(script, name, given, get_settings(), description=description)
    row = summary(done.item)
    err.print(f"{done.outcome}: processors/{row['item']}")
    if as_json:
        typer.echo(json.dumps({**row, "outcome": done.outcome}, indent=2))
    else:
        typer.echo(row["item"])


@app.command("list")
def list_(
    all_versions: Annotated[
        bool, typer.Option("--all", help="Every version, not the newest.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The registered processors (their newest versions).

    Examples:
        geomlops processor list --json
    """
    from geomlops.registration.processors import list_processors
    from geomlops.settings import get_settings

    rows = list_processors(get_settings(), all_versions=all_versions)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        err.print("no processors: register one with `geomlops processor register FILE.py`")
    for row in rows:
        _print(row)


@app.command()
def show(
    processor: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    as_json: JsonOption = False,
) -> None:
    """One processor version: its script, sha256, parameters and defaults.

    Examples:
        geomlops processor show flood-area-by-country@1 --json
    """
    from geomlops.catalog.client import CatalogClient
    from geomlops.catalog.processors import find, parse_reference
    from geomlops.connections import get_connections
    from geomlops.registration.processors import summary

    name, version = parse_reference(processor)
    with CatalogClient(get_connections().stac_url) as catalog:
        row = summary(find(catalog, name, version))
    if as_json:
        typer.echo(json.dumps(row, indent=2))
    else:
        typer.echo(row["item"])
        _print(row)
        err.print(f"  script: {row['script']}")
