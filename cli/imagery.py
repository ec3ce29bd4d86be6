"""`geomlops imagery add`: GeoTIFF scenes into the imagery bucket and catalog."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from geomlops.catalog.sensors import PROFILES  # plain data, cheap: the --sensor help lists it

app = typer.Typer(name="imagery", help="Ingest source imagery as COGs.", no_args_is_help=True)


FILES = typer.Argument(..., exists=True, dir_okay=False, help="GeoTIFF files.")


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 date-time", param_hint="--datetime"
        ) from exc


@app.command()
def add(
    files: list[Path] = FILES,
    when: str | None = typer.Option(
        None, "--datetime", help="Acquisition time (ISO 8601), when the file does not say."
    ),
    sensor: str | None = typer.Option(
        None, help=f"Band profile: {', '.join(sorted(PROFILES))} (else recognised from the file)."
    ),
) -> None:
    """Convert each GeoTIFF to a COG, upload it to the imagery bucket and catalog it.

    Files without a CRS or georeference are refused before anything is written.

    Examples:
        geomlops imagery add Spain_7370579_S2Hand.tif --datetime 2019-09-18T10:50:00Z
        geomlops imagery add scene.tif --sensor sentinel-2-l1c --datetime 2021-06-01
    """
    from geomlops.catalog.client import CatalogClient
    from geomlops.catalog.ingest import ingest
    from geomlops.connections import get_connections
    from geomlops.settings import get_settings

    acquired = _when(when)
    settings = get_settings()
    with CatalogClient.from_settings(settings) as client:
        results = ingest(
            files,
            client=client,
            s3=get_connections(settings).s3_client(),
            bucket=settings.s3.bucket_imagery,
            when=acquired,
            sensor=sensor,
        )
    for r in results:
        typer.echo(f"{r.result}\timagery/{r.item_id}\t{r.href}")
