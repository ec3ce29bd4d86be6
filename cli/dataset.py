"""`geomlops dataset add|list|show|materialise`: versioned training data (git + DVC)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from geomlops.cli.options import JsonOption
from geomlops.errors import ValidationFailed

if TYPE_CHECKING:
    from geomlops.datasets.refs import DatasetRef

app = typer.Typer(
    name="dataset",
    help="Version training datasets with DVC (S3 remote) and describe them in the catalog.",
    no_args_is_help=True,
)
err = Console(stderr=True, highlight=False)
RefArg = Annotated[str, typer.Argument(help="NAME (latest) or NAME@vN.")]


def _when(text: str | None, option: str) -> tuple[datetime | None, datetime | None]:
    if not text:
        return None, None
    parts = text.split("/")
    try:
        values = [datetime.fromisoformat(p) for p in parts]
    except ValueError:
        raise typer.BadParameter("give an ISO date or START/END", param_hint=option) from None
    values = [v if v.tzinfo else v.replace(tzinfo=UTC) for v in values]
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2 or values[0] > values[1]:
        raise typer.BadParameter("give START/END with START <= END", param_hint=option)
    return values[0], values[1]


@app.command()
def add(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="Folders or files to add.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Dataset name, e.g. sen1floods11.")],
    description: Annotated[str, typer.Option(help="What the data is and where from.")] = "",
    base: Annotated[
        Path | None,
        typer.Option(
            help="Keep the PATHS' locations relative to this folder (default: the one PATH is "
            "the dataset root)."
        ),
    ] = None,
    time_range: Annotated[
        str | None,
        typer.Option(
            "--datetime",
            help="Acquisition time, ISO date or START/END, when the files do not carry it.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    r"""Add the next version of a dataset: DVC push to the `dvc` bucket, git tag, STAC item.

    Adding data identical to the latest version adds nothing and prints that version.

    Examples:
        geomlops dataset add ./chips --name floods --description "Hand-labelled chips"
        geomlops dataset add ../shared/data/imagery/sen1floods11 --base ../shared/data \
            --name sen1floods11 --datetime 2019-09-17
    """
    from geomlops.datasets.registry import DatasetRegistry, staged

    start, end = _when(time_range, "--datetime")
    registry = DatasetRegistry()
    if base is None:
        if len(paths) != 1 or not paths[0].is_dir():
            raise typer.BadParameter("give one folder, or --base with several", param_hint="PATHS")
        version, new = registry.add(paths[0], name, description=description, start=start, end=end)
    else:
        with staged(paths, base) as root:
            version, new = registry.add(root, name, description=description, start=start, end=end)
    err.print(
        f"{'added' if new else 'unchanged, already'} {version.tag} "
        f"({version.file_count} files, {version.size} bytes, {version.md5})"
    )
    typer.echo(json.dumps(version.to_json(), indent=2) if as_json else version.tag)


@app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List datasets and their versions.

    Examples:
        geomlops dataset list
        geomlops dataset list --json
    """
    from geomlops.datasets.registry import DatasetRegistry

    registry = DatasetRegistry()
    versions = [v for name in registry.names() for v in registry.versions(name)]
    if as_json:
        typer.echo(json.dumps([v.to_json() for v in versions], indent=2))
        return
    table = Table("dataset", "version", "files", "bytes", "checksum", "created", "description")
    for v in versions:
        table.add_row(
            v.name, v.version, str(v.file_count), str(v.size), v.md5, v.created, v.description
        )
    Console().print(table)


@app.command()
def show(ref: RefArg, as_json: JsonOption = False) -> None:
    """Show one version and its catalog item.

    Examples:
        geomlops dataset show sen1floods11
        geomlops dataset show sen1floods11@v1 --json
    """
    from geomlops.datasets.registry import DatasetRegistry

    registry = DatasetRegistry()
    version = registry.resolve(_ref(ref))
    data = {**version.to_json(), "item": registry.item(version)}
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for key, value in version.to_json().items():
        typer.echo(f"{key:12} {value}")
    item = data["item"]
    typer.echo(f"{'bbox':12} {item.get('bbox')}")
    props = item["properties"]
    when = props.get("datetime") or f"{props.get('start_datetime')}/{props.get('end_datetime')}"
    typer.echo(f"{'datetime':12} {when}")


@app.command("materialise")
def materialise_command(
    ref: RefArg,
    dest: Annotated[Path, typer.Argument(help="New folder to write the files into.")],
) -> None:
    """Fetch a version from the DVC remote into DEST, verifying its checksum.

    Examples:
        geomlops dataset materialise sen1floods11@v1 ./data
    """
    from geomlops.datasets.materialise import materialise

    version = materialise(_ref(ref), dest)
    err.print(f"{version.tag}: {version.file_count} files verified ({version.md5})")
    typer.echo(str(dest))


def _ref(text: str) -> DatasetRef:
    from geomlops.datasets.refs import DatasetRef

    try:
        return DatasetRef.parse(text)
    except ValidationFailed as exc:
        raise typer.BadParameter(exc.message, param_hint="REF") from None
