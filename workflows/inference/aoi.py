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
import math
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
from shapely.errors import GEOSException
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from geomlops.errors import ValidationFailed

_GEOD = Geod(ellps="WGS84")
_POLYGONAL = ("Polygon", "MultiPolygon")


def _ring_problems(ring: Any, where: str) -> list[str]:
    """A linear ring's positions: numbers, finite, lon/lat in range, no antimeridian jump."""
    if not isinstance(ring, list | tuple) or len(ring) < 4:
        return [f"{where}: a ring needs at least 4 positions (closed), got {ring!r:.80}"]
    previous: float | None = None
    for index, position in enumerate(ring):
        here = f"{where}[{index}]"
        if (
            not isinstance(position, list | tuple)
            or len(position) not in (2, 3)
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in position)
        ):
            return [f"{here}: {position!r:.80} is not a position [longitude, latitude]"]
        lon, lat = float(position[0]), float(position[1])
        if not (math.isfinite(lon) and math.isfinite(lat)):
            return [f"{here}: {list(position)} is not a finite number pair"]
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            return [
                f"{here}: {list(position)} is outside longitude [-180, 180] / latitude "
                "[-90, 90] (GeoJSON is EPSG:4326)"
            ]
        if previous is not None and abs(lon - previous) > 180:
            return [
                f"{here}: the edge from longitude {previous:g} to {lon:g} crosses the "
                "antimeridian; split the AOI there into a MultiPolygon (RFC 7946 section 3.1.9)"
            ]
        previous = lon
    if list(ring[0])[:2] != list(ring[-1])[:2]:
        return [f"{where}: the ring is not closed (first and last positions differ)"]
    return []


def _coordinate_problems(geometry: dict[str, Any], where: str) -> list[str]:
    coordinates = geometry.get("coordinates")
    polygons = [coordinates] if geometry["type"] == "Polygon" else coordinates
    if not isinstance(polygons, list | tuple) or not polygons:
        return [f"{where}.coordinates: must be a non-empty array"]
    problems: list[str] = []
    for p_index, rings in enumerate(polygons):
        at = f"{where}.coordinates" + (f"[{p_index}]" if geometry["type"] != "Polygon" else "")
        if not isinstance(rings, list | tuple) or not rings:
            problems.append(f"{at}: a polygon needs at least one ring")
            continue
        for r_index, ring in enumerate(rings):
            problems += _ring_problems(ring, f"{at}[{r_index}]")
    return problems


def _positions(geometry: Any) -> int:
    """How many positions a Polygon/MultiPolygon holds (0 for anything else)."""
    if not isinstance(geometry, dict) or not isinstance(geometry.get("coordinates"), list | tuple):
        return 0
    polygons = geometry["coordinates"]
    if geometry.get("type") == "Polygon":
        polygons = [polygons]
    return sum(
        len(ring)
        for rings in polygons
        if isinstance(rings, list | tuple)
        for ring in rings
        if isinstance(ring, list | tuple)
    )


def parse_aoi(document: Any, source: str, max_vertices: int | None = None) -> BaseGeometry:
    """One polygonal geometry (EPSG:4326) from a GeoJSON Feature(Collection) or geometry.

    The one check of an AOI, used by ``geomlops infer`` and the gateway before anything is
    submitted and by the plan step again: every position is a finite lon/lat pair in range,
    rings are closed, no edge jumps across the antimeridian (RFC 7946 wants such an area
    split into parts; read literally it would span the globe the other way round and select
    scenes in Spain for a box over Fiji), the polygons are valid (GEOS's reason is given)
    and there are at most ``max_vertices`` positions (``GEOMLOPS_INFER_MAX_AOI_VERTICES``).
    """
    if max_vertices is None:
        from geomlops.settings import get_settings

        max_vertices = get_settings().inference.max_aoi_vertices
    if not isinstance(document, dict) or "type" not in document:
        raise ValidationFailed(f"{source}: not a GeoJSON object")
    kind = document["type"]
    if kind == "FeatureCollection":
        features = document.get("features")
        if not isinstance(features, list):
            raise ValidationFailed(f"{source}: features: must be an array of Features")
        geometries = [f.get("geometry") if isinstance(f, dict) else f for f in features]
        prefix = "features[{}].geometry"
    elif kind == "Feature":
        geometries = [document.get("geometry")]
        prefix = "geometry"
    else:
        geometries = [document]
        prefix = "$"
    total = sum(_positions(g) for g in geometries)
    if total > max_vertices:  # before any per-position work: this is the expensive kind
        raise ValidationFailed(
            f"{source}: not a usable AOI",
            problems=[
                f"{total} vertices, more than the {max_vertices} accepted "
                "(GEOMLOPS_INFER_MAX_AOI_VERTICES): simplify the AOI"
            ],
        )
    problems: list[str] = []
    shapes = []
    for index, geometry in enumerate(geometries):
        where = prefix.format(index)
        if not isinstance(geometry, dict) or geometry.get("type") not in _POLYGONAL:
            found = geometry.get("type") if isinstance(geometry, dict) else geometry
            problems.append(f"{where}: {found!r:.80} is not a Polygon or MultiPolygon")
            continue
        found_here = _coordinate_problems(geometry, where)
        if found_here:
            problems += found_here
            continue
        try:
            geom = shape(geometry)
        except (ValueError, TypeError, AttributeError, IndexError, GEOSException) as error:
            problems.append(f"{where}: {error}")
            continue
        if not geom.is_valid:
            problems.append(
                f"{where}: invalid polygon ({shapely.is_valid_reason(geom)}); fix the "
                "self-intersection, e.g. with QGIS 'Fix geometries'"
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


def for_item(geometry: BaseGeometry, max_vertices: int) -> BaseGeometry:
    """``geometry`` simplified until it has at most ``max_vertices`` (for a catalog item).

    An item's geometry is read by every search that returns it; the exact AOI stays in S3
    (``geomlops:request_aoi``). The tolerance starts at a millionth of the extent and
    doubles, topology kept, so a simple area is stored as it is.
    """
    if shapely.get_num_coordinates(geometry) <= max_vertices:
        return geometry
    west, south, east, north = geometry.bounds
    tolerance = max(east - west, north - south) * 1e-6
    simplified = geometry
    while shapely.get_num_coordinates(simplified) > max_vertices:
        tolerance *= 2
        simplified = polygonal(shapely.simplify(geometry, tolerance, preserve_topology=True))
        if tolerance > max(east - west, north - south):
            return shapely.box(west, south, east, north)
    return simplified


def polygonal(geometry: BaseGeometry) -> BaseGeometry:
    """Only the areal parts of ``geometry`` (an intersection may add lines and points)."""
    if geometry.geom_type in ("Polygon", "MultiPolygon"):
        return geometry
    parts = [g for g in shapely.get_parts(geometry) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.MultiPolygon()
