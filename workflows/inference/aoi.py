"""The request's area of interest, and how far it reaches beyond the model's region.

A model is only known to work where it was trained and evaluated: its MLM item's geometry.
The share of the AOI's area outside that footprint is measured on the ellipsoid (degrees
are not equal-area), so the same AOI gets the same answer at any latitude.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import shapely
from pyproj import Geod
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from geomlops.errors import ValidationFailed

_GEOD = Geod(ellps="WGS84")
_POLYGONAL = ("Polygon", "MultiPolygon")


def parse_aoi(document: Any, source: str) -> BaseGeometry:
    """One polygonal geometry (EPSG:4326) from a GeoJSON Feature(Collection) or geometry."""
    if not isinstance(document, dict) or "type" not in document:
        raise ValidationFailed(f"{source}: not a GeoJSON object")
    kind = document["type"]
    if kind == "FeatureCollection":
        geometries = [f.get("geometry") for f in document.get("features") or []]
    elif kind == "Feature":
        geometries = [document.get("geometry")]
    else:
        geometries = [document]
    problems = []
    shapes = []
    for index, geometry in enumerate(geometries):
        if not isinstance(geometry, dict) or geometry.get("type") not in _POLYGONAL:
            found = geometry.get("type") if isinstance(geometry, dict) else geometry
            problems.append(f"geometry {index}: {found!r} is not a Polygon or MultiPolygon")
            continue
        try:
            geom = shape(geometry)
        except (ValueError, TypeError, AttributeError, IndexError) as error:
            problems.append(f"geometry {index}: {error}")
            continue
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        west, south, east, north = geom.bounds
        if west < -180 or east > 180 or south < -90 or north > 90:
            problems.append(
                f"geometry {index}: bounds {geom.bounds} are not longitude/latitude "
                "(GeoJSON is EPSG:4326)"
            )
            continue
        shapes.append(geom)
    if not shapes and not problems:
        problems.append("no geometry in it")
    if problems:
        raise ValidationFailed(f"{source}: not a usable AOI", problems=problems)
    union = shapely.union_all(shapes)
    if union.is_empty or area_m2(union) == 0:
        raise ValidationFailed(f"{source}: the AOI has no area")
    return union


def read_aoi(path: Path) -> BaseGeometry:
    """The AOI in a GeoJSON file; errors name the file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationFailed(f"AOI file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValidationFailed(f"{path}: not JSON ({error})") from None
    return parse_aoi(document, str(path))


def area_m2(geometry: BaseGeometry) -> float:
    """Geodesic area of a lon/lat geometry, square metres."""
    area, _ = _GEOD.geometry_area_perimeter(geometry)
    return abs(area)


def outside_fraction(aoi: BaseGeometry, footprint: dict[str, Any] | None) -> float:
    """Share (0..1) of the AOI's area outside ``footprint``; 1 when there is no footprint."""
    if not footprint:
        return 1.0
    region = shape(footprint)
    if not region.is_valid:
        region = shapely.make_valid(region)
    outside = shapely.difference(aoi, region)
    return min(1.0, area_m2(outside) / area_m2(aoi)) if not outside.is_empty else 0.0


def as_geojson(geometry: BaseGeometry) -> dict[str, Any]:
    """A geometry as a GeoJSON dict."""
    return dict(mapping(geometry))
