"""Properties of raster-to-vector on generated masks (hypothesis, derandomised).

Most checks use an EPSG:4326 grid whose pixel size (1/1024°) and origin are exact binary
fractions: lon/lat of every pixel corner is then exact at 10 decimals, so the output can be
compared with the mask bit for bit (rasterised back, relations between polygons) without
any tolerance. Areas are checked on a UTM grid, where they are planar and exact.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import rasterio.features
import shapely
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pyproj import Transformer
from shapely.geometry import shape

from geomlops.transformers.raster_to_vector import vectorize

NODATA = 255
CLASSES = [
    {"value": 0, "name": "background"},
    {"value": 1, "name": "water"},
    {"value": 2, "name": "cloud"},
]
EXACT_TRANSFORM = Affine(1 / 1024, 0.0, 10.0, 0.0, -1 / 1024, 50.0)
EXACT_PRECISION = 10
UTM = "EPSG:32632"
UTM_TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_500_000.0)

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def rectangles_mask(draw: st.DrawFn) -> np.ndarray:
    """Overlapping rectangles of classes and no-data: blobs with holes and islands."""
    height, width = draw(st.integers(2, 24)), draw(st.integers(2, 24))
    mask = np.full((height, width), draw(st.sampled_from([0, 1])), dtype=np.uint8)
    for _ in range(draw(st.integers(0, 12))):
        value = draw(st.sampled_from([0, 1, 2, NODATA]))
        row, col = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
        h, w = draw(st.integers(1, height)), draw(st.integers(1, width))
        mask[row : row + h, col : col + w] = value
    return mask


noise_mask = arrays(
    np.uint8,
    st.tuples(st.integers(1, 16), st.integers(1, 16)),
    elements=st.sampled_from([0, 1, 2, NODATA]),
)
masks = st.one_of(rectangles_mask(), noise_mask)


def _rasterize(geometry: shapely.Geometry, shape_: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre the lon/lat geometry covers, on the exact grid."""
    if geometry is None or geometry.is_empty:
        return np.zeros(shape_, dtype=bool)
    return rasterio.features.rasterize(
        [(geometry, 1)], out_shape=shape_, transform=EXACT_TRANSFORM, dtype=np.uint8
    ).astype(bool)


def _exact(mask: np.ndarray, **options: object) -> dict[int, shapely.Geometry]:
    result = vectorize(
        mask,
        EXACT_TRANSFORM,
        "EPSG:4326",
        classes=CLASSES,
        nodata=NODATA,
        options={"precision": EXACT_PRECISION, **options},
    )
    return {c.value: c.geometry for c in result}


@PROPERTY_SETTINGS
@given(mask=masks)
def test_unsimplified_polygons_cover_exactly_their_pixels(mask: np.ndarray) -> None:
    geometries = _exact(mask)
    for value in (0, 1, 2):
        covered = _rasterize(geometries.get(value), mask.shape)
        np.testing.assert_array_equal(covered, mask == value, err_msg=f"class {value}")
    assert NODATA not in geometries


@PROPERTY_SETTINGS
@given(mask=masks)
def test_unsimplified_area_equals_pixel_area(mask: np.ndarray) -> None:
    result = vectorize(mask, UTM_TRANSFORM, UTM, classes=CLASSES, nodata=NODATA)
    to_utm = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    for polygons in result:
        pixel_area = np.count_nonzero(mask == polygons.value) * 100.0
        assert polygons.area_m2 == pixel_area
        # The lon/lat geometry itself, projected back, has that area (6-decimal rounding
        # moves each vertex by at most ~6 cm).
        back = shapely.transform(
            polygons.geometry, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1]))
        )
        assert abs(back.area - pixel_area) <= 0.02 * pixel_area + 1.0


@PROPERTY_SETTINGS
@given(
    mask=masks,
    min_area_px=st.sampled_from([0, 1, 2, 3, 5, 8]),
    tolerance_px=st.sampled_from([0, 0.5, 1, 1.5, 3]),
    skip=st.sampled_from([(), (0,), (0, 2)]),
    method=st.sampled_from(["douglas-peucker", "coverage"]),
)
def test_cleaned_output_is_valid_disjoint_and_off_nodata(
    mask: np.ndarray, min_area_px: int, tolerance_px: float, skip: tuple[int, ...], method: str
) -> None:
    # 1/1024° is ~72 m east-west and ~109 m north-south at 50°N.
    geometries = _exact(
        mask,
        min_area_m2=min_area_px * 72 * 109,
        simplify_tolerance_m=tolerance_px * 109,
        skip_values=list(skip),
        simplify_method=method,
    )
    assert set(geometries) <= {0, 1, 2} - set(skip)
    for geometry in geometries.values():
        assert geometry.geom_type == "MultiPolygon"
        assert shapely.is_valid(geometry), shapely.is_valid_reason(geometry)
        assert not geometry.is_empty
    for (a, ga), (b, gb) in itertools.combinations(geometries.items(), 2):
        assert not shapely.relate_pattern(ga, gb, "T********"), f"classes {a} and {b} overlap"
    for value, geometry in geometries.items():
        covered = _rasterize(geometry, mask.shape)
        assert not (covered & (mask == NODATA)).any(), f"class {value} covers no-data"


@PROPERTY_SETTINGS
@given(mask=masks, min_area_px=st.sampled_from([2, 3, 5, 9]))
def test_min_area_leaves_no_small_island_or_hole(mask: np.ndarray, min_area_px: int) -> None:
    pixel_area = 1 / 1024**2  # in square degrees, the unit of the exact grid
    geometries = _exact(mask, min_area_m2=min_area_px * 72 * 109 * 1.01)
    for value, geometry in geometries.items():
        for part in shapely.get_parts(geometry):
            assert part.area >= min_area_px * pixel_area * 0.999, f"island in class {value}"
            for ring in part.interiors:
                hole = shapely.Polygon(ring)
                holds_nodata = (_rasterize(hole, mask.shape) & (mask == NODATA)).any()
                assert holds_nodata or hole.area >= min_area_px * pixel_area * 0.999


@PROPERTY_SETTINGS
@given(mask=masks, tolerance_px=st.sampled_from([1, 1.5, 3]))
def test_coverage_simplification_leaves_no_gap_between_classes(
    mask: np.ndarray, tolerance_px: float
) -> None:
    mask = np.where(mask == NODATA, 2, mask).astype(np.uint8)  # every pixel has a class
    geometries = _exact(mask, simplify_tolerance_m=tolerance_px * 109, simplify_method="coverage")
    union = shapely.union_all(list(geometries.values()))
    holes = [ring for part in shapely.get_parts(union) for ring in part.interiors]
    assert holes == [], "gap inside the simplified coverage"
    total = sum(shapely.area(g) for g in geometries.values())
    assert total == pytest.approx(union.area, rel=1e-9)  # and no overlap


def test_geojson_geometry_round_trips() -> None:
    mask = np.zeros((6, 6), dtype=np.uint8)
    mask[1:5, 1:5] = 1
    mask[2:4, 2:4] = 0
    (water,) = vectorize(mask, EXACT_TRANSFORM, "EPSG:4326", options={"skip_values": [0]})
    assert shape(shapely.geometry.mapping(water.geometry)).equals(water.geometry)
