"""Reading the ``processors`` collection: the versions of a generic processor.

Registration (which writes versions) and batch inference (which pins one for a run) find
them the same way: every item whose ``geomlops:processor`` is the name, ordered by version.
"""

from __future__ import annotations

from typing import Any

from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import PROCESSORS
from geomlops.errors import NotFoundError
from geomlops.model import properties as prop


def versions(catalog: CatalogClient, name: str) -> list[dict[str, Any]]:
    """Every version item of processor ``name``, oldest first."""
    found = catalog.iter_search(
        collections=[PROCESSORS],
        filter={"op": "=", "args": [{"property": prop.PROCESSOR}, name]},
    )
    return sorted(found, key=lambda item: int(item["properties"]["version"]))


def find(catalog: CatalogClient, name: str, version: int | None = None) -> dict[str, Any]:
    """Version ``version`` of processor ``name``, or its newest; NotFoundError if none."""
    found = versions(catalog, name)
    if version is not None:
        found = [i for i in found if int(i["properties"]["version"]) == version]
    if not found:
        which = f"{name} version {version}" if version is not None else name
        raise NotFoundError(
            f"no processor {which} in the catalog",
            hint="register it with `geomlops processor register FILE.py --name NAME`; "
            "`geomlops processor list` shows what there is",
        )
    return found[-1]


def parse_reference(text: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@VERSION`` (e.g. ``flood-area-by-country@2``) split in two."""
    name, sep, version = text.partition("@")
    if not sep:
        return name, None
    if not version.isdigit():
        from geomlops.errors import ValidationFailed

        raise ValidationFailed(f"processor {text!r}: the version after @ must be a number")
    return name, int(version)
