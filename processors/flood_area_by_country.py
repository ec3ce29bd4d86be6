"""Flooded area per country: a run's water polygons intersected with country outlines.

A generic processor (see README.md): ``geomlops infer … --processor flood-area-by-country``
runs it on the run's published GeoJSON. Areas are geodesic (on the WGS84 ellipsoid, with
pyproj's Geod), so they hold at any latitude and need no projection per country.
"""

import json
import sys

import shapely
from pyproj import Geod
from shapely.geometry import shape

PARAMETERS = {
    "countries": {
        "type": "string",
        "description": "Path of a GeoJSON FeatureCollection of country outlines with a `name` "
        "property (e.g. the shared data's vector/countries.geojson), readable where the "
        "processor runs.",
    },
    "class_name": {
        "type": "string",
        "default": "water",
        "description": "The class whose polygons are counted.",
    },
}

GEOD = Geod(ellps="WGS84")


def _area_km2(geometry) -> float:
    area, _ = GEOD.geometry_area_perimeter(geometry)
    return abs(area) / 1e6


def process(inputs: dict, params: dict) -> dict:
    """Area of ``class_name`` polygons in each country they touch, in km², largest first."""
    with open(inputs["vectors"], encoding="utf-8") as fh:
        features = json.load(fh)["features"]
    polygons = [
        shape(f["geometry"])
        for f in features
        if f["properties"].get("class_name") == params["class_name"] and f.get("geometry")
    ]
    water = shapely.union_all(polygons) if polygons else shapely.Polygon()
    with open(params["countries"], encoding="utf-8") as fh:
        countries = json.load(fh)["features"]
    print(
        f"{len(polygons)} {params['class_name']} polygon(s), {len(countries)} countries",
        file=sys.stderr,
    )
    rows = []
    if not water.is_empty:
        outlines = [shape(c["geometry"]) for c in countries]
        tree = shapely.STRtree(outlines)
        for index in tree.query(water, predicate="intersects"):
            part = shapely.intersection(water, shapely.make_valid(outlines[index]))
            area = _area_km2(part)
            if area > 0:
                props = countries[index]["properties"]
                rows.append(
                    {
                        "country": props.get("name"),
                        "iso_a3": props.get("ISO3166-1-Alpha-3"),
                        "area_km2": round(area, 6),
                    }
                )
    rows.sort(key=lambda row: -row["area_km2"])
    total = _area_km2(water) if not water.is_empty else 0.0
    counted = sum(row["area_km2"] for row in rows)
    return {
        "class_name": params["class_name"],
        "countries": rows,
        "total_area_km2": round(total, 6),
        "outside_countries_km2": round(max(0.0, total - counted), 6),
        "polygons": len(polygons),
    }
