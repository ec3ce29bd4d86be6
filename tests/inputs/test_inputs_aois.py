"""Hostile AOIs, through the three doors that take one: the plan step's parser, the gateway's
request check and ``geomlops infer``. Every one is refused before anything is submitted
(the CLI and the gateway check before they ask the catalog anything)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from corpus import expect_refusal, run_cli

from geomlops.workflows.inference.aoi import parse_aoi
from geomlops.workflows.inference.request import prepare

SQUARE = [[-0.78, 38.08], [-0.73, 38.08], [-0.73, 38.12], [-0.78, 38.12], [-0.78, 38.08]]


def polygon(ring: Any) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [ring]}


def with_point(index: int, value: Any) -> dict[str, Any]:
    ring = [list(p) for p in SQUARE]
    ring[index] = value
    return polygon(ring)


def circle(vertices: int) -> dict[str, Any]:
    ring = [
        [-0.75 + 0.02 * math.cos(2 * math.pi * i / vertices),
         38.1 + 0.02 * math.sin(2 * math.pi * i / vertices)]
        for i in range(vertices)
    ]  # fmt: skip
    return polygon([*ring, ring[0]])


def feature(geometry: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": {}, "geometry": geometry}


CASES: dict[str, tuple[Any, list[str]]] = {
    "nan-longitude": (with_point(1, [float("nan"), 38.08]), ["[1]", "finite"]),
    "nan-latitude": (with_point(2, [-0.73, float("nan")]), ["[2]", "finite"]),
    "infinity": (with_point(1, [float("inf"), 38.08]), ["finite"]),
    "string-coordinate": (with_point(1, ["-0.73", 38.08]), ["not a position"]),
    "bool-coordinate": (with_point(1, [True, 38.08]), ["not a position"]),
    "one-number-position": (with_point(1, [-0.73]), ["not a position"]),
    "latitude-200": (with_point(2, [-0.73, 200]), ["[2]", "latitude [-90, 90]"]),
    "latitude-minus-95": (with_point(1, [-0.73, -95]), ["latitude [-90, 90]"]),
    "longitude-400": (with_point(1, [400, 38.08]), ["longitude [-180, 180]"]),
    "projected-metres": (
        polygon([[0, 0], [500000, 0], [500000, 400000], [0, 0]]),
        ["longitude [-180, 180]"],
    ),
    "antimeridian-box": (
        polygon([[170, -10], [-170, -10], [-170, 10], [170, 10], [170, -10]]),
        ["antimeridian", "RFC 7946"],
    ),
    "antimeridian-feature": (
        feature(polygon([[179, 60], [-179, 60], [-179, 61], [179, 61], [179, 60]])),
        ["geometry.coordinates", "antimeridian"],
    ),
    "unclosed-ring": (
        polygon([[-0.78, 38.08], [-0.73, 38.08], [-0.73, 38.12], [-0.78, 38.12]]),
        ["not closed"],
    ),
    "too-few-positions": (polygon([[-0.78, 38.08], [-0.73, 38.08], [-0.78, 38.08]]), ["4"]),
    "bow-tie": (
        polygon([[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]),
        ["invalid polygon", "Self-intersection"],
    ),
    "200000-vertices": (circle(200_000), ["vertices", "GEOMLOPS_INFER_MAX_AOI_VERTICES"]),
    "20000-vertices": (circle(20_000), ["vertices"]),
    "zero-area": (polygon([[0, 0], [1, 0], [2, 0], [1, 0], [0, 0]]), []),
    "point": ({"type": "Point", "coordinates": [0, 0]}, ["not a Polygon"]),
    "linestring": ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, ["not a Polygon"]),
    "geometry-collection": (
        {"type": "GeometryCollection", "geometries": [polygon(SQUARE)]},
        ["not a Polygon"],
    ),
    "null-geometry": (feature(None), ["not a Polygon"]),
    "string-geometry": (feature("POLYGON((0 0,1 0,1 1,0 0))"), ["not a Polygon"]),
    "empty-collection": ({"type": "FeatureCollection", "features": []}, ["no geometry"]),
    "features-not-array": ({"type": "FeatureCollection", "features": {"a": 1}}, ["features"]),
    "empty-coordinates": ({"type": "Polygon", "coordinates": []}, ["at least one ring"]),
    "empty-ring-list": ({"type": "MultiPolygon", "coordinates": [[]]}, ["at least one ring"]),
    "coordinates-string": ({"type": "Polygon", "coordinates": "0 0 1 1"}, ["coordinates"]),
    "list-document": ([polygon(SQUARE)], ["not a GeoJSON object"]),
    "no-type": ({"coordinates": [SQUARE]}, ["not a GeoJSON object"]),
    "multipolygon-one-bad-part": (
        {"type": "MultiPolygon", "coordinates": [[SQUARE], [[[0, 0], [1, 0], [1, 95], [0, 0]]]]},
        ["coordinates[1][0][2]", "latitude"],
    ),
    "huge-number": (with_point(1, [1e308, 38.08]), ["longitude"]),
}
NAMES = sorted(CASES)


@pytest.mark.parametrize("case", NAMES)
def test_plan_step_refuses_aoi(case: str, request: pytest.FixtureRequest) -> None:
    document, fragments = CASES[case]
    expect_refusal(request, lambda: parse_aoi(document, f"aoi-{case}"), [f"aoi-{case}", *fragments])


@pytest.mark.parametrize("case", NAMES)
def test_gateway_refuses_aoi(case: str, request: pytest.FixtureRequest) -> None:
    """The check the gateway's job runner makes before it submits (no service is asked)."""
    document, fragments = CASES[case]

    def submit() -> Any:
        from geomlops.settings import Settings

        return prepare(
            model="flood-water-s2",
            version=None,
            aoi=document,
            datetime="2019-09-01/2019-09-30",
            allow_outside_region=False,
            settings=Settings(),
        )

    expect_refusal(request, submit, ["aoi", *fragments])


@pytest.mark.parametrize("case", NAMES)
def test_cli_infer_refuses_aoi(case: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    document, fragments = CASES[case]
    path = tmp_path / f"{case}.geojson"
    path.write_text(json.dumps(document))  # NaN and Infinity as JavaScript writes them
    args = ["infer", "flood-water-s2", "--aoi", str(path), "--datetime", "2019-09-01/2019-09-30"]
    expect_refusal(request, lambda: run_cli(args), [f"{case}.geojson", *fragments])


def test_valid_aoi_split_at_the_antimeridian_is_accepted() -> None:
    """RFC 7946's way: the same area as two parts that meet at 180 degrees."""
    east = [[170, -10], [180, -10], [180, 10], [170, 10], [170, -10]]
    west = [[-180, -10], [-170, -10], [-170, 10], [-180, 10], [-180, -10]]
    geometry = parse_aoi({"type": "MultiPolygon", "coordinates": [[east], [west]]}, "x")
    assert geometry.bounds == (-180, -10, 180, 10)
    assert not geometry.intersects(parse_aoi(polygon(SQUARE), "spain"))
