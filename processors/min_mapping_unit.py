"""Minimum mapping unit: drop polygons smaller than an area, write the rest as GeoJSON.

A generic processor (see README.md). Areas are measured in the UTM zone of the polygons'
centre (a conformal projection whose area error within a zone is under 0.1 %), not in
degrees. The filtered polygons are written to ``filtered.geojson`` in the output folder,
which the platform stores with the prediction; the result counts what was kept and dropped.
"""

import json
import os

import shapely
from pyproj import Transformer
from shapely.geometry import mapping, shape

PARAMETERS = {
    "min_area_m2": {
        "type": "number",
        "default": 1000.0,
        "description": "Polygons smaller than this (m², in the UTM zone) are dropped.",
    },
    "class_name": {
        "type": "string",
        "default": "",
        "description": "Filter only this class (others are kept as they are); empty: all.",
    },
}


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone holding (lon, lat)."""
    zone = min(60, int((lon + 180) // 6) + 1)
    return (32600 if lat >= 0 else 32700) + zone


def process(inputs: dict, params: dict) -> dict:
    """Keep polygons of at least ``min_area_m2``; counts, and ``filtered.geojson``.

    The run's GeoJSON holds one MultiPolygon per class and scene; each of its polygons is
    measured and kept or dropped on its own, and a feature left with none is dropped.
    """
    with open(inputs["vectors"], encoding="utf-8") as fh:
        collection = json.load(fh)
    features = [f for f in collection["features"] if f.get("geometry")]
    kept_features, counts = [], {"input": 0, "kept": 0, "dropped": 0}
    dropped_m2 = 0.0
    epsg = None
    if features:
        centre = shapely.union_all([shape(f["geometry"]).envelope for f in features]).centroid
        epsg = utm_epsg(centre.x, centre.y)
        to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    for feature in features:
        parts = shapely.get_parts(shape(feature["geometry"]))
        if params["class_name"] and feature["properties"].get("class_name") != params["class_name"]:
            kept_features.append(feature)
            continue
        areas = shapely.area(shapely.transform(parts, lambda xy: _project(to_utm, xy)))
        keep = areas >= params["min_area_m2"]
        counts["input"] += len(parts)
        counts["kept"] += int(keep.sum())
        counts["dropped"] += int((~keep).sum())
        dropped_m2 += float(areas[~keep].sum())
        if keep.any():
            properties = dict(feature["properties"], utm_area_m2=round(float(areas[keep].sum()), 2))
            geometry = mapping(shapely.MultiPolygon(list(parts[keep])))
            kept_features.append(
                {"type": "Feature", "geometry": geometry, "properties": properties}
            )
    out = os.path.join(inputs["output_dir"], "filtered.geojson")
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"type": "FeatureCollection", "features": kept_features}, fh)
    return {
        "min_area_m2": params["min_area_m2"],
        "crs": f"EPSG:{epsg}" if epsg else None,
        "polygons": counts,
        "dropped_area_m2": round(dropped_m2, 2),
        "file": "filtered.geojson",
    }


def _project(transformer: Transformer, xy):
    x, y = transformer.transform(xy[:, 0], xy[:, 1])
    xy = xy.copy()
    xy[:, 0], xy[:, 1] = x, y
    return xy
