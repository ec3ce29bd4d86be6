"""`geomlops catalog validate|add|search`: check, write and find STAC items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from geomlops.errors import ValidationFailed

app = typer.Typer(
    name="catalog",
    help="Validate, add and search STAC items (models, datasets, imagery, predictions).",
    no_args_is_help=True,
)
err = Console(stderr=True)
out = Console()

FILES = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="STAC item JSON.")
# Repeatable options have list defaults; defined once here (ruff B008).
TASK_OPTION = typer.Option([], "--task", help="mlm:tasks must contain it (repeatable).")
BAND_OPTION = typer.Option([], "--band", help="The model takes this input band (repeatable).")
COLLECTION_OPTION = typer.Option([], "--collection", "-c", help="Repeatable.")


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValidationFailed(f"{path}: not JSON ({exc})") from exc


def _items(paths: list[Path]) -> list[tuple[Path, Any]]:
    """Each file's items: a file may hold one item or a FeatureCollection."""
    loaded = []
    for path in paths:
        data = _load(path)
        if isinstance(data, dict) and data.get("type") == "FeatureCollection":
            loaded += [(path, feature) for feature in data.get("features", [])]
        else:
            loaded.append((path, data))
    return loaded


@app.command()
def validate(files: list[Path] = FILES) -> None:
    """Validate STAC items offline; exit 1 listing every problem by field.

    Every schema (STAC core, MLM, any extension) is read from GEOMLOPS_SCHEMA_MIRROR.

    Examples:
        geomlops catalog validate model_packages/unet/item.json
        geomlops catalog validate items/*.json
    """
    from geomlops.catalog.validation import stac_problems

    problems = []
    for path, item in _items(files):
        found = stac_problems(item)
        problems += [f"{path}: {p}" for p in found]
        if not found:
            err.print(f"[green]valid[/] {path}: {item.get('id')}")
    if problems:
        raise ValidationFailed(f"{len(problems)} problem(s)", problems=problems)


@app.command()
def add(
    files: list[Path] = FILES,
    collection: str | None = typer.Option(
        None, "--collection", "-c", help="Collection for items that name none (or to check)."
    ),
) -> None:
    """Validate items, then create or update them (re-adding an identical item changes nothing).

    All files are validated before the first write: one bad item means nothing is written.

    Examples:
        geomlops catalog add item.json --collection models
        GEOMLOPS_API_KEY=gml_... geomlops catalog add items/*.json
    """
    from geomlops.catalog.client import CatalogClient
    from geomlops.catalog.validation import validate_stac

    with CatalogClient.from_settings() as client:
        prepared = [client.prepare(item, collection) for _, item in _items(files)]
        validate_stac(prepared, client.schemas)
        for data in prepared:
            result = client.upsert_item(data)
            typer.echo(f"{result}\t{data['collection']}/{data['id']}")


@app.command()
def search(
    bbox: str | None = typer.Option(None, help="west,south,east,north in degrees."),
    datetime: str | None = typer.Option(
        None, "--datetime", help="An instant or a range: 2020-01-01T00:00:00Z/.. or a/b."
    ),
    task: list[str] = TASK_OPTION,
    framework: str | None = typer.Option(None, help="mlm:framework, e.g. pytorch."),
    band: list[str] = BAND_OPTION,
    accelerator: str | None = typer.Option(None, help="mlm:accelerator, e.g. cuda or amd64."),
    collection: list[str] = COLLECTION_OPTION,
    filter_json: str | None = typer.Option(
        None, "--filter", help="Extra CQL2-JSON filter, and-ed with the others."
    ),
    limit: int = typer.Option(100, min=1, help="Most items to return."),
    as_json: bool = typer.Option(False, "--json", help="Print a GeoJSON FeatureCollection."),
) -> None:
    """Search the catalog by place, time and model properties.

    Examples:
        geomlops catalog search --collection models --task semantic-segmentation
        geomlops catalog search --bbox -1,38,0,39 --datetime 2019-01-01T00:00:00Z/.. --json
        geomlops catalog search --framework pytorch --band B8A --band B12
    """
    from geomlops.catalog.client import CatalogClient
    from geomlops.catalog.filters import and_filters, mlm_filter

    box = _bbox(bbox)
    extra = None
    if filter_json:
        try:
            extra = json.loads(filter_json)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--filter") from exc
    cql2 = and_filters(
        mlm_filter(tasks=task, framework=framework, accelerator=accelerator, input_bands=band),
        extra,
    )
    with CatalogClient.from_settings() as client:
        features = list(
            client.iter_search(
                collections=collection or None,
                bbox=box,
                datetime=datetime,
                filter=cql2,
                limit=min(limit, 100),
                max_items=limit,
            )
        )
    if as_json:
        out.print_json(json.dumps({"type": "FeatureCollection", "features": features}))
        return
    table = Table(title=f"{len(features)} item(s)")
    for column in ("collection", "id", "datetime", "summary"):
        table.add_column(column)
    for f in features:
        props = f.get("properties", {})
        when = props.get("datetime") or f"{props.get('start_datetime')}/{props.get('end_datetime')}"
        summary = ", ".join(
            str(v)
            for v in (props.get("mlm:name"), props.get("mlm:framework"), props.get("mlm:tasks"))
            if v
        )
        table.add_row(f.get("collection", ""), f.get("id", ""), when, summary)
    out.print(table)


def _bbox(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or values[1] > values[3]:
        raise typer.BadParameter(
            "expected west,south,east,north with south <= north", param_hint="--bbox"
        )
    return values
