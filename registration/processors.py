"""Registering generic processors: the script in S3, one catalog item per version.

``geomlops processor register FILE.py --name N --param k=v`` checks the script
(:mod:`.processor_script`), stores it under its version's own key in the predictions
bucket (:func:`geomlops.processors.script_uri`) and catalogues it in ``processors`` with
its sha256, declared parameters and registered defaults. The same script with the same
defaults registered again changes nothing; anything else is a new version, the previous
one marked deprecated with version links (the version extension), so a prediction that
names ``NAME-v1`` can always find the exact script it ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from geomlops import objects
from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import PROCESSORS
from geomlops.catalog.extensions import FILE_SCHEMA, VERSION_SCHEMA
from geomlops.catalog.processors import versions
from geomlops.connections import get_connections
from geomlops.model import properties as prop
from geomlops.processors import check_given, check_name, item_id, script_uri, sha256_file
from geomlops.registration.processor_script import check_script
from geomlops.settings import Settings

WORLD = {
    "type": "Polygon",
    "coordinates": [[[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]],
}
"""A processor applies anywhere: its item's geometry is the world (PgSTAC needs one)."""


@dataclass(frozen=True)
class Registered:
    """The outcome of a registration: the version's item and whether it is new."""

    item: dict[str, Any]
    outcome: str  # "created" or "unchanged"


def _item(
    name: str,
    version: int,
    uri: str,
    script: Path,
    sha256: str,
    parameters: dict[str, dict[str, Any]],
    defaults: dict[str, Any],
    description: str,
    stac_url: str,
    predecessor: str | None,
) -> dict[str, Any]:
    links = []
    if predecessor:
        links.append(
            {
                "rel": "predecessor-version",
                "href": f"{stac_url}/collections/{PROCESSORS}/items/{quote(predecessor)}",
                "type": "application/geo+json",
            }
        )
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [VERSION_SCHEMA, FILE_SCHEMA],
        "id": item_id(name, version),
        "collection": PROCESSORS,
        "geometry": WORLD,
        "bbox": [-180.0, -90.0, 180.0, 90.0],
        "properties": {
            "datetime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "title": f"Processor {name} v{version}",
            "description": description or f"Generic processor {name}",
            "version": str(version),
            "deprecated": False,
            prop.PROCESSOR: name,
            prop.PROCESSOR_SHA256: sha256,
            prop.PROCESSOR_PARAMETERS: parameters,
            prop.PROCESSOR_DEFAULTS: defaults,
        },
        "links": links,
        "assets": {
            "script": {
                "href": uri,
                "type": "text/x-python",
                "roles": ["code"],
                "title": script.name,
                "file:size": script.stat().st_size,
                "file:checksum": "1220" + sha256,
            }
        },
    }


def register_processor(
    script: Path,
    name: str,
    params: dict[str, str],
    settings: Settings,
    *,
    description: str | None = None,
) -> Registered:
    """Check, store and catalogue ``script`` as processor ``name`` (see the module)."""
    check_name(name)
    spec = check_script(script)
    # Registered values must be declared and of their type; a parameter left out keeps the
    # script's default, or (without one) must be given by each run.
    defaults = check_given(spec.parameters, params, "--param")
    sha256 = sha256_file(script)
    conn = get_connections(settings)
    with CatalogClient.from_settings(settings) as catalog:
        existing = versions(catalog, name)
        newest = existing[-1] if existing else None
        if newest is not None:
            props = newest["properties"]
            same = (props[prop.PROCESSOR_SHA256], props[prop.PROCESSOR_DEFAULTS])
            if same == (sha256, defaults):
                return Registered(newest, "unchanged")
        version = int(newest["properties"]["version"]) + 1 if newest else 1
        uri = script_uri(settings.s3.bucket_predictions, name, version, script.name)
        bucket, key = objects.split(uri)
        try:
            conn.s3_client().upload_file(str(script), bucket, key)
        except (BotoCoreError, ClientError) as exc:
            raise objects.ObjectStoreError(
                f"could not store {script} at {uri}: {exc}",
                hint="check that the object store is up (`geomlops status`)",
            ) from exc
        item = _item(
            name,
            version,
            uri,
            script,
            sha256,
            spec.parameters,
            defaults,
            description if description is not None else spec.description,
            conn.stac_url,
            newest["id"] if newest else None,
        )
        try:
            catalog.create_item(item, PROCESSORS)
        except Exception:
            # Nothing half-written: a script no item names is removed again.
            conn.s3_client().delete_object(Bucket=bucket, Key=key)
            raise
        if newest is not None:
            catalog.deprecate(PROCESSORS, newest["id"], latest=item["id"])
        return Registered(catalog.get_item_dict(PROCESSORS, item["id"]), "created")


def summary(item: dict[str, Any]) -> dict[str, Any]:
    """What `processor list` and `show` print about one version."""
    props = item["properties"]
    return {
        "name": props[prop.PROCESSOR],
        "version": int(props["version"]),
        "item": item["id"],
        "deprecated": bool(props.get("deprecated")),
        "sha256": props[prop.PROCESSOR_SHA256],
        "script": item["assets"]["script"]["href"],
        "parameters": props[prop.PROCESSOR_PARAMETERS],
        "defaults": props[prop.PROCESSOR_DEFAULTS],
        "description": props.get("description", ""),
        "registered": props.get("datetime"),
    }


def list_processors(settings: Settings, *, all_versions: bool = False) -> list[dict[str, Any]]:
    """Every processor's newest version (or every version), by name."""
    with CatalogClient.from_settings(settings) as catalog:
        items = list(catalog.iter_search(collections=[PROCESSORS]))
    rows = sorted((summary(i) for i in items), key=lambda row: (row["name"], row["version"]))
    if all_versions:
        return rows
    newest: dict[str, dict[str, Any]] = {}
    for row in rows:
        newest[row["name"]] = row
    return list(newest.values())
