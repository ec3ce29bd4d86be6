"""The request's area of interest: how far beyond the model's region, which pixels it covers.

A model is only known to work where it was trained and evaluated: its MLM item's geometry.
The share of the AOI's area outside that footprint is measured on the ellipsoid (degrees
are not equal-area), so the same AOI gets the same answer at any latitude.

The AOI also bounds every output: a pixel belongs to it when its centre lies inside the
AOI (GDAL's rasterisation rule), so the masks, the statistics counted from them and the
polygons (clipped to the AOI itself) all describe the area asked for and nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import Geod
from rasterio.crs import CRS
from rasterio.features import geometry_mask
from rasterio.transform import array_bounds
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape
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


def in_crs(aoi: BaseGeometry, crs: str | CRS) -> BaseGeometry:
    """The lon/lat AOI in a scene's CRS (densified by GDAL, so edges bend as they should)."""
    target = crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
    return shape(transform_geom("EPSG:4326", target, as_geojson(aoi), precision=-1))


def inside_mask(
    native_aoi: BaseGeometry, transform: Affine, shape_: tuple[int, int]
) -> np.ndarray | None:
    """True where a pixel's centre lies inside the AOI (in the grid's CRS).

    None when every pixel of the grid does: the AOI contains the whole window, the common
    case away from its edge, which then costs nothing.
    """
    height, width = shape_
    west, south, east, north = array_bounds(height, width, transform)
    if native_aoi.contains(box(west, south, east, north)):
        return None
    return geometry_mask([native_aoi], out_shape=shape_, transform=transform, invert=True)


def polygonal(geometry: BaseGeometry) -> BaseGeometry:
    """Only the areal parts of ``geometry`` (an intersection may add lines and points)."""
    if geometry.geom_type in ("Polygon", "MultiPolygon"):
        return geometry
    parts = [g for g in shapely.get_parts(geometry) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.MultiPolygon()
