"""Raster-to-vector on concrete cases: CRSs, RFC 7946 rules, classes, confidence, cleaning,
bad input, file helpers, and the real Sen1Floods11 hand label."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
from affine import Affine
from pyproj import Geod, Transformer
from shapely.geometry import shape

from geomlops.errors import GeomlopsError, NotFoundError, ValidationFailed
from geomlops.model.io import OutputClass, parse_classes
from geomlops.sample_data import fetch
from geomlops.transformers.raster_to_vector import (
    mask_to_geojson,
    read_mask,
    vectorize,
    write_geojson,
)

REPO = Path(__file__).resolve().parents[2]
LABEL_KEY = "imagery/sen1floods11/Spain_7370579_LabelHand.tif"
WATER_CLASSES = [{"value": 0, "name": "not_water"}, {"value": 1, "name": "water"}]
UTM_TRANSFORM = Affine(10.0, 0.0, 600_000.0, 0.0, -10.0, 4_300_000.0)
GEO_TRANSFORM = Affine(0.0001, 0.0, -0.78, 0.0, -0.0001, 38.13)
GEOD = Geod(ellps="WGS84")


def _square_mask() -> np.ndarray:
    """A 10x10 water square with a 2x2 hole, in a 20x20 background."""
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[5:15, 5:15] = 1
    mask[9:11, 9:11] = 0
    return mask


def _only(collection: dict) -> dict:
    (feature,) = collection["features"]
    return feature


# --- CRS handling -------------------------------------------------------------------


def test_utm_mask_lands_at_the_right_lonlat_with_planar_area() -> None:
    collection = mask_to_geojson(
        _square_mask(),
        UTM_TRANSFORM,
        "EPSG:32630",
        classes=WATER_CLASSES,
        options={"skip_values": [0]},
    )
    feature = _only(collection)
    assert feature["properties"]["area_m2"] == (100 - 4) * 100.0
    to_lonlat = Transformer.from_crs("EPSG:32630", "EPSG:4326", always_xy=True)
    west, north = to_lonlat.transform(600_000 + 50, 4_300_000 - 50)
    east, south = to_lonlat.transform(600_000 + 150, 4_300_000 - 150)
    minx, miny, maxx, maxy = shape(feature["geometry"]).bounds
    # lon first: the square lies near -1.85° E, 38.8° N, not at (38.8, -1.85).
    assert abs(minx - west) < 2e-5 and abs(maxx - east) < 2e-5
    assert abs(miny - south) < 2e-5 and abs(maxy - north) < 2e-5


def test_clip_cuts_every_class_to_the_area_and_scales_its_area() -> None:
    """Polygons of a request's AOI end at the AOI, with the area that is inside it."""
    west, north = GEO_TRANSFORM * (0, 0)
    middle, south = GEO_TRANSFORM * (10, 20)  # the left half: pixel columns 0..9
    clip = shapely.box(west, south, middle, north)

    def run(clip: shapely.Geometry | None) -> list:
        return vectorize(
            _square_mask(), GEO_TRANSFORM, "EPSG:4326", classes=WATER_CLASSES, clip=clip
        )

    classes, clipped = run(None), run(clip)
    assert [c.name for c in clipped] == ["not_water", "water"]
    for whole, part in zip(classes, clipped, strict=True):
        # nothing outside the clip but what rounding to 6 decimals (~0.1 m) moves
        assert part.geometry.within(clip.buffer(1e-6))
        assert part.geometry.is_valid and part.geometry.geom_type == "MultiPolygon"
        assert part.area_m2 < whole.area_m2
    # water: 5x10 of the square's 96 pixels, less 2 of the hole's
    assert clipped[1].area_m2 == pytest.approx(classes[1].area_m2 * 48 / 96, rel=1e-3)
    # A clip holding every polygon changes nothing; one missing a class drops it.
    assert run(shapely.box(west - 1, south - 1, middle + 1, north + 1)) == classes
    (only,) = run(shapely.box(west, north - 0.0002, west + 0.0002, north))
    assert only.name == "not_water"


def test_feet_based_crs_areas_are_in_square_metres() -> None:
    transform = Affine(10.0, 0.0, 1_000_000.0, 0.0, -10.0, 200_000.0)  # 10 US survey feet
    (water,) = vectorize(_square_mask(), transform, "EPSG:2263", options={"skip_values": [0]})
    assert water.area_m2 == pytest.approx(96 * (10 * 0.3048006096) ** 2)


def test_geographic_mask_gets_geodesic_area_and_keeps_lon_lat_order() -> None:
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[1:3, 1:3] = 1
    (water,) = vectorize(mask, GEO_TRANSFORM, "EPSG:4326", options={"skip_values": [0]})
    lons = [-0.7799, -0.7799, -0.7797, -0.7797]
    lats = [38.1299, 38.1297, 38.1297, 38.1299]
    expected, _ = GEOD.polygon_area_perimeter(lons, lats)
    assert water.area_m2 == pytest.approx(abs(expected), rel=1e-6)
    assert water.geometry.bounds == pytest.approx((-0.7799, 38.1297, -0.7797, 38.1299))


def test_crs_given_as_wkt_or_epsg_code_gives_the_same_polygons() -> None:
    by_code = mask_to_geojson(_square_mask(), UTM_TRANSFORM, 32630)
    by_wkt = mask_to_geojson(
        _square_mask(), UTM_TRANSFORM, rasterio.crs.CRS.from_epsg(32630).to_wkt()
    )
    assert by_code == by_wkt


# --- RFC 7946 -----------------------------------------------------------------------


def test_right_hand_rule_exteriors_counter_clockwise_holes_clockwise() -> None:
    # A north-up raster in pixel space runs the other way round; the output must not.
    feature = _only(
        mask_to_geojson(_square_mask(), UTM_TRANSFORM, "EPSG:32630", options={"skip_values": [0]})
    )
    (polygon,) = shape(feature["geometry"]).geoms
    assert polygon.exterior.is_ccw
    assert len(polygon.interiors) == 1
    assert not polygon.interiors[0].is_ccw


@pytest.mark.parametrize("precision", [3, 6, 8])
def test_coordinates_have_at_most_the_requested_decimals(precision: int) -> None:
    collection = mask_to_geojson(
        _square_mask(),
        UTM_TRANSFORM,
        "EPSG:32630",
        options={"skip_values": [0], "precision": precision},
    )
    text = json.dumps(collection)
    coordinates = json.dumps(collection["features"][0]["geometry"]["coordinates"])
    decimals = [len(d) for d in re.findall(r"\.(\d+)", coordinates)]
    assert decimals and max(decimals) <= precision
    assert "e-" not in text.lower()


def test_output_is_a_feature_collection_of_multipolygons() -> None:
    collection = mask_to_geojson(_square_mask(), UTM_TRANSFORM, "EPSG:32630")
    assert collection["type"] == "FeatureCollection"
    assert [f["geometry"]["type"] for f in collection["features"]] == ["MultiPolygon"] * 2
    assert all(f["type"] == "Feature" for f in collection["features"])


# --- classes and confidence ---------------------------------------------------------


def test_features_carry_class_names_and_values_from_the_mlm_output() -> None:
    mlm = json.loads((REPO / "model_packages/flood-water-s2/mlm.json").read_text())
    (output,) = mlm["properties"]["mlm:output"]
    collection = mask_to_geojson(_square_mask(), UTM_TRANSFORM, "EPSG:32630", classes=output)
    names = {
        f["properties"]["class_value"]: f["properties"]["class_name"]
        for f in collection["features"]
    }
    assert names == {0: "not_water", 1: "water"}


def test_class_without_name_is_named_by_its_description_then_value() -> None:
    classes = parse_classes([{"value": 0, "description": "dry land"}, {"value": 1}])
    assert [c.label for c in classes] == ["dry land", "1"]
    assert parse_classes(None) == []


def test_class_flagged_nodata_is_never_vectorised() -> None:
    mask = _square_mask()
    mask[0:3, :] = 255
    classes = [*WATER_CLASSES, {"value": 255, "name": "no_data", "nodata": True}]
    result = vectorize(mask, UTM_TRANSFORM, "EPSG:32630", classes=classes)
    assert [c.value for c in result] == [0, 1]
    assert result[0].area_m2 == (400 - 96 - 60) * 100.0


@pytest.mark.parametrize(
    "classes", [[{"value": 1, "name": "a"}, {"value": 1, "name": "b"}], [{"name": "x"}], "water"]
)
def test_invalid_classes_are_refused_with_their_position(classes: object) -> None:
    with pytest.raises(ValidationFailed) as error:
        parse_classes(classes)
    assert "classes" in str(error.value)


def test_mask_values_outside_the_classes_are_named() -> None:
    mask = _square_mask()
    mask[0, 0] = 7
    with pytest.raises(ValidationFailed, match=r"values \[7\] are not among"):
        vectorize(mask, UTM_TRANSFORM, "EPSG:32630", classes=WATER_CLASSES)


def test_mean_confidence_from_a_confidence_band() -> None:
    mask = _square_mask()
    confidence = np.where(mask == 1, 0.9, 0.6).astype(np.float32)
    confidence[5, 5] = 0.5  # one water pixel less sure
    result = {
        c.name: c
        for c in vectorize(
            mask, UTM_TRANSFORM, "EPSG:32630", classes=WATER_CLASSES, probabilities=confidence
        )
    }
    assert result["water"].mean_confidence == pytest.approx((95 * 0.9 + 0.5) / 96, rel=1e-6)
    assert result["not_water"].mean_confidence == pytest.approx(0.6, rel=1e-6)


def test_mean_confidence_from_per_class_probabilities() -> None:
    mask = _square_mask()
    water_probability = np.where(mask == 1, 0.8, 0.3).astype(np.float32)
    probabilities = np.stack([1 - water_probability, water_probability])
    feature = _only(
        mask_to_geojson(
            mask,
            UTM_TRANSFORM,
            "EPSG:32630",
            classes=WATER_CLASSES,
            probabilities=probabilities,
            options={"skip_values": [0]},
        )
    )
    assert feature["properties"]["mean_confidence"] == pytest.approx(0.8, abs=1e-4)


def test_no_confidence_property_without_probabilities() -> None:
    feature = _only(
        mask_to_geojson(_square_mask(), UTM_TRANSFORM, "EPSG:32630", options={"skip_values": [0]})
    )
    assert set(feature["properties"]) == {"class_name", "class_value", "area_m2"}


# --- cleaning -----------------------------------------------------------------------


def _cleaning_mask() -> np.ndarray:
    """A large water body with a 2-pixel and a 6-pixel hole, and 3- and 5-pixel islands."""
    mask = np.zeros((30, 30), dtype=np.uint8)
    mask[2:20, 2:20] = 1
    mask[5, 5:7] = 0  # 2-pixel hole
    mask[10:12, 10:13] = 0  # 6-pixel hole
    mask[25, 2:5] = 1  # 3-pixel island
    mask[25, 10:15] = 1  # 5-pixel island
    return mask


def test_min_area_removes_small_islands_and_fills_small_holes() -> None:
    (water,) = vectorize(
        _cleaning_mask(),
        UTM_TRANSFORM,
        "EPSG:32630",
        options={"skip_values": [0], "min_area_m2": 400.0},  # 4 pixels of 100 m²
    )
    parts = shapely.get_parts(water.geometry)
    assert len(parts) == 2  # the body and the 5-pixel island
    body = max(parts, key=lambda p: p.area)
    assert len(body.interiors) == 1  # the 6-pixel hole stays
    assert water.area_m2 == (18 * 18 - 6 + 5) * 100.0


def test_small_hole_holding_nodata_is_kept() -> None:
    mask = _cleaning_mask()
    mask[5, 5] = 255  # the 2-pixel hole now holds a no-data pixel
    (water,) = vectorize(
        mask,
        UTM_TRANSFORM,
        "EPSG:32630",
        nodata=255,
        options={"skip_values": [0], "min_area_m2": 400.0},
    )
    body = max(shapely.get_parts(water.geometry), key=lambda p: p.area)
    assert len(body.interiors) == 2


def test_simplification_reduces_vertices_and_stays_within_tolerance() -> None:
    rows, cols = np.mgrid[0:200, 0:200]
    mask = ((rows - 100) ** 2 + (cols - 100) ** 2 < 80**2).astype(np.uint8)  # pixel disc
    raw, simple = (
        vectorize(
            mask,
            UTM_TRANSFORM,
            "EPSG:32630",
            options={"skip_values": [0], "simplify_tolerance_m": tolerance},
        )[0]
        for tolerance in (0.0, 15.0)
    )
    assert (
        shapely.get_num_coordinates(simple.geometry) < shapely.get_num_coordinates(raw.geometry) / 3
    )
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32630", always_xy=True)

    def project(g: shapely.Geometry) -> shapely.Geometry:
        return shapely.transform(
            g, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1]))
        )

    assert shapely.hausdorff_distance(project(raw.geometry), project(simple.geometry)) <= 15.5
    assert simple.area_m2 == pytest.approx(raw.area_m2, rel=0.01)


def _voronoi_classes(size: int, seeds: int, seed: int) -> np.ndarray:
    """Three classes in Voronoi cells: long staircase edges and many triple junctions."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, size, (seeds, 2))
    rows, cols = np.mgrid[0:size, 0:size]
    distance = (rows[..., None] - centres[:, 0]) ** 2 + (cols[..., None] - centres[:, 1]) ** 2
    return (np.argmin(distance, axis=-1) % 3).astype(np.uint8)


@pytest.mark.parametrize("method", ["auto", "coverage", "douglas-peucker"])
def test_multiclass_simplification_never_overlaps_and_coverage_leaves_no_gaps(
    method: str,
) -> None:
    mask = _voronoi_classes(160, 40, seed=3)
    exact = Affine(1 / 1024, 0.0, 10.0, 0.0, -1 / 1024, 50.0)  # exact lon/lat at 10 places
    result = vectorize(
        mask, exact, "EPSG:4326",
        options={"simplify_tolerance_m": 250.0, "simplify_method": method, "precision": 10},
    )  # fmt: skip
    geometries = [c.geometry for c in result]
    assert all(g.is_valid for g in geometries)
    union = shapely.union_all(geometries)
    assert sum(g.area for g in geometries) == pytest.approx(union.area, rel=1e-12)
    if method == "douglas-peucker":
        return  # every polygon here borders another class, so all keep their outline
    raw = vectorize(mask, exact, "EPSG:4326", options={"precision": 10})
    assert (
        sum(shapely.get_num_coordinates(g) for g in geometries)
        < sum(shapely.get_num_coordinates(c.geometry) for c in raw) / 2
    )
    assert [ring for part in shapely.get_parts(union) for ring in part.interiors] == []


# --- empty and bad input ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fill", "options"), [(255, {}), (0, {"skip_values": [0]})], ids=["all-nodata", "all-skipped"]
)
def test_empty_result_is_an_empty_feature_collection(fill: int, options: dict) -> None:
    mask = np.full((8, 8), fill, dtype=np.uint8)
    collection = mask_to_geojson(mask, UTM_TRANSFORM, "EPSG:32630", nodata=255, options=options)
    assert collection == {"type": "FeatureCollection", "features": []}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask": np.zeros((4, 4), dtype=np.float32)}, "mask: dtype float32"),
        ({"mask": np.zeros((2, 4, 4), dtype=np.uint8)}, r"mask: expected a 2-D array"),
        ({"crs": None}, "crs: the mask has no coordinate reference system"),
        ({"crs": "EPSG:999999"}, "crs: 'EPSG:999999' is not"),
        ({"transform": (10, 0, 0, 0, 0, 0)}, "not an invertible affine"),
        ({"transform": (10, 0, 0)}, "6 numbers"),
        ({"probabilities": np.zeros((3, 3), dtype=np.float32)}, "probabilities: shape"),
        ({"probabilities": np.zeros((4, 4), dtype=np.uint8)}, "probabilities: dtype uint8"),
        ({"options": {"min_area_m2": -1}}, "min_area_m2"),
        ({"options": {"tolerance": 5}}, "tolerance"),
    ],
)
def test_bad_input_is_refused_naming_what_is_wrong(kwargs: dict, message: str) -> None:
    arguments = {
        "mask": np.zeros((4, 4), dtype=np.uint8),
        "transform": UTM_TRANSFORM,
        "crs": "EPSG:32630",
        **kwargs,
    }
    with pytest.raises(ValidationFailed) as error:
        vectorize(
            arguments.pop("mask"), arguments.pop("transform"), arguments.pop("crs"), **arguments
        )
    assert re.search(message, str(error.value))


def test_wide_integer_and_boolean_masks_are_accepted() -> None:
    as_int64 = vectorize(_square_mask().astype(np.int64), UTM_TRANSFORM, "EPSG:32630")
    as_bool = vectorize(_square_mask().astype(bool), UTM_TRANSFORM, "EPSG:32630")
    assert [c.area_m2 for c in as_int64] == [c.area_m2 for c in as_bool] == [30400.0, 9600.0]


# --- file helpers -------------------------------------------------------------------


def test_write_geojson_replaces_the_file_atomically(tmp_path: Path) -> None:
    collection = mask_to_geojson(_square_mask(), UTM_TRANSFORM, "EPSG:32630")
    target = write_geojson(collection, tmp_path / "water.geojson")
    assert json.loads(target.read_text()) == collection
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_geojson({"type": "FeatureCollection", "bad": object()}, target)
    assert json.loads(target.read_text()) == collection  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["water.geojson"]  # no temporary left
    # NaN is not JSON: it is written as null, never as the token NaN.
    write_geojson({"type": "FeatureCollection", "features": [], "x": float("nan")}, target)
    assert json.loads(target.read_text())["x"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["water.geojson"]  # no temporary left


def test_write_geojson_into_a_missing_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(GeomlopsError, match="does not exist"):
        write_geojson({"type": "FeatureCollection", "features": []}, tmp_path / "no" / "x.json")


def test_read_mask_refuses_non_rasters_and_rasters_without_crs(tmp_path: Path) -> None:
    text = tmp_path / "mask.tif"
    text.write_text("not a tiff")
    with pytest.raises(ValidationFailed, match="not a readable raster"):
        read_mask(text)
    with pytest.raises(NotFoundError):
        read_mask(tmp_path / "missing.tif")
    plain = tmp_path / "plain.tif"
    profile = {"driver": "GTiff", "width": 4, "height": 4, "count": 1, "dtype": "uint8"}
    with rasterio.open(plain, "w", transform=UTM_TRANSFORM, **profile) as dst:
        dst.write(np.zeros((1, 4, 4), dtype=np.uint8))
    with pytest.raises(ValidationFailed, match="has no CRS"):
        read_mask(plain)


# --- the real hand label ------------------------------------------------------------


@pytest.fixture(scope="module")
def hand_label() -> tuple[np.ndarray, Affine, rasterio.crs.CRS]:
    raster = read_mask(fetch(LABEL_KEY), nodata=-1)
    assert raster.crs == rasterio.crs.CRS.from_epsg(4326)
    return raster.mask, raster.transform, raster.crs


def test_hand_label_water_polygons_match_the_labelled_pixels(hand_label) -> None:
    mask, transform, crs = hand_label
    feature = _only(
        mask_to_geojson(
            mask,
            transform,
            crs,
            classes=WATER_CLASSES,
            nodata=-1,
            options={"skip_values": [0], "precision": 9},
        )
    )
    assert feature["properties"]["class_name"] == "water"
    geometry = shape(feature["geometry"])
    assert geometry.is_valid
    covered = rasterio.features.rasterize(
        [(geometry, 1)], out_shape=mask.shape, transform=transform, dtype=np.uint8
    )
    np.testing.assert_array_equal(covered == 1, mask == 1)
    # ~10 m pixels at 38° N: area within 0.5 % of the geodesic area of the centre pixel.
    centre_pixel = abs(
        GEOD.polygon_area_perimeter(
            [transform.c, transform.c + transform.a, transform.c + transform.a, transform.c],
            [38.1058, 38.1058, 38.1058 + transform.e, 38.1058 + transform.e],
        )[0]
    )
    water_pixels = np.count_nonzero(mask == 1)
    assert feature["properties"]["area_m2"] == pytest.approx(water_pixels * centre_pixel, rel=5e-3)


def test_hand_label_cleaned_and_simplified_stays_valid_and_off_nodata(hand_label) -> None:
    mask, transform, crs = hand_label
    raw, cleaned = (
        _only(
            mask_to_geojson(
                mask,
                transform,
                crs,
                classes=WATER_CLASSES,
                nodata=-1,
                options={"skip_values": [0], **options},
            )
        )
        for options in ({}, {"min_area_m2": 1000.0, "simplify_tolerance_m": 10.0})
    )
    geometry = shape(cleaned["geometry"])
    assert geometry.is_valid
    assert (
        shapely.get_num_coordinates(geometry)
        < shapely.get_num_coordinates(shape(raw["geometry"])) / 2
    )
    assert cleaned["properties"]["area_m2"] == pytest.approx(raw["properties"]["area_m2"], rel=0.03)
    west, south, east, north = -0.7819, 38.0828, -0.7359, 38.1288
    minx, miny, maxx, maxy = geometry.bounds
    assert (
        west - 1e-4 <= minx
        and maxx <= east + 1e-4
        and south - 1e-4 <= miny
        and maxy <= north + 1e-4
    )
    covered = rasterio.features.rasterize(
        [(geometry, 1)], out_shape=mask.shape, transform=transform, dtype=np.uint8
    )
    assert not (covered.astype(bool) & (mask == -1)).any()
    assert isinstance(parse_classes(WATER_CLASSES)[1], OutputClass)


def test_polygonize_of_an_included_window_keeps_whole_mask_coordinates() -> None:
    """Only the included pixels' bounding box goes to GDAL; coordinates come back shifted."""
    import gc

    from geomlops.transformers.raster_to_vector import pixels

    rng = np.random.default_rng(3)
    grid = (rng.random((300, 400)) < 0.3).astype(np.uint8)
    include = np.zeros(grid.shape, dtype=bool)
    include[120:250, 37:301] = True
    include &= grid == 1
    polygons = pixels.polygonize(grid, include).to_polygons()
    expected = [
        shape(geom) for geom, _ in rasterio.features.shapes(grid, mask=include, connectivity=4)
    ]
    assert len(polygons) == len(expected) > 10
    assert shapely.equals(shapely.union_all(polygons), shapely.union_all(expected))
    assert gc.isenabled()  # collection paused while GDAL's features are built, then back on
    assert pixels.polygonize(grid, np.zeros(grid.shape, dtype=bool)).polygon_count == 0


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_negative_and_byte_nodata_values_are_never_vectorised(dtype: str) -> None:
    grid = np.zeros((40, 40), dtype=dtype)
    grid[5:15, 5:15] = 1
    nodata = -1 if dtype != "uint8" else 255
    grid[20:30, 20:30] = nodata
    result = vectorize(grid, UTM_TRANSFORM, "EPSG:32630", classes=WATER_CLASSES, nodata=nodata)
    areas = {c.name: c.area_m2 for c in result}
    assert areas["water"] == pytest.approx(100 * 100)
    assert areas["not_water"] == pytest.approx((1600 - 200) * 100)


def test_polygonize_in_chunks_equals_polygonize_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from geomlops.transformers.raster_to_vector import pixels

    rng = np.random.default_rng(5)
    grid = (rng.random((200, 200)) < 0.4).astype(np.uint8)
    include = grid == 1
    include[:, :20] = False
    whole = pixels.polygonize(grid, include)
    monkeypatch.setattr(pixels, "_CHUNK_FEATURES", 7)
    chunked = pixels.polygonize(grid, include)
    assert whole.polygon_count > 50
    for name in ("coords", "ring_offsets", "polygon_offsets", "values"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))


def test_unparsed_geometries_are_written_as_the_parsed_ones(tmp_path: Path) -> None:
    from geomlops.transformers.raster_to_vector import (
        feature_collection,
        unparsed_geometry,
    )

    classes = vectorize(_square_mask(), UTM_TRANSFORM, "EPSG:32630", classes=WATER_CLASSES)
    unparsed = write_geojson(
        feature_collection(classes, geometry=unparsed_geometry), tmp_path / "a.geojson"
    )
    assert json.loads(unparsed.read_text()) == feature_collection(classes)
