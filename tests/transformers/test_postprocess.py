"""Post-processors per output kind and their dispatcher, on arrays the tests make.

Figures are checked against hand computations: a 20 x 20 grid of 10 m pixels (UTM 30N)
whose probability is 0.8 in a 5 x 10 block, 0.5 in another 5 x 10 block, 0.1 elsewhere, and
no data in one corner pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import shape

from geomlops.errors import ValidationFailed
from geomlops.model.kinds import OutputKind, OutputSpec
from geomlops.transformers.postprocess import (
    ChipPrediction,
    RasterPrediction,
    postprocess,
    threshold_mask,
    to_raster,
    zonal_statistics,
)
from geomlops.transformers.raster_to_vector import feature_collection, payload, vectorize

TRANSFORM = (10.0, 0.0, 500000.0, 0.0, -10.0, 4400000.0)
CRS = "EPSG:32630"
CLOUD = OutputSpec(
    OutputKind.PROBABILITY, name="cloud-probability", classes=({"value": 1, "name": "cloud"},),
    threshold=0.4,
)  # fmt: skip


def _probability() -> np.ndarray:
    values = np.full((20, 20), 0.1, dtype="float32")
    values[0:5, 0:10] = 0.8
    values[10:15, 10:20] = 0.5
    values[19, 19] = np.nan
    return values


def test_a_probability_with_a_threshold_gives_polygons_and_zonal_statistics() -> None:
    processed = postprocess(CLOUD, RasterPrediction(_probability(), TRANSFORM, CRS))
    stats = processed.stats
    # 399 valid pixels: 299 x 0.1, 50 x 0.5, 50 x 0.8 (float32 values, rounded to 6 places)
    assert stats["valid_pixels"] == 399
    assert stats["mean"] == pytest.approx((299 * 0.1 + 50 * 0.5 + 50 * 0.8) / 399, abs=1e-6)
    assert (stats["min"], stats["max"]) == (pytest.approx(0.1), pytest.approx(0.8))
    # linear percentiles over the sorted 399 values: ranks 39.8, 199 and 358.2
    assert (stats["p10"], stats["p50"], stats["p90"]) == (
        pytest.approx(0.1), pytest.approx(0.1), pytest.approx(0.8)
    )  # fmt: skip
    assert stats["threshold"] == 0.4 and stats["above_threshold_pixels"] == 100
    assert stats["above_threshold_area_m2"] == 100 * 100.0
    assert stats["above_threshold_area_km2"] == 0.01
    assert stats["above_threshold_fraction"] == pytest.approx(100 / 399, abs=1e-6)
    (polygon,) = processed.polygons
    assert (polygon.value, polygon.name) == (1, "cloud")
    assert polygon.mean_confidence == pytest.approx((50 * 0.8 + 50 * 0.5) / 100, abs=1e-6)
    assert polygon.area_m2 == pytest.approx(10_000, rel=2e-3)  # geodesic vs UTM's scale
    assert len(polygon.geometry.geoms) == 2  # the two blocks
    to_utm = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    utm = shapely.transform(polygon.geometry, lambda xy: np.column_stack(to_utm.transform(*xy.T)))
    # block 1: rows 0-4, cols 0-9; block 2: rows 10-14, cols 10-19 (lon/lat rounded to 6 places)
    assert utm.bounds == pytest.approx((500000, 4399850, 500200, 4400000), abs=0.2)
    collection = processed.feature_collection()
    assert collection["features"][0]["properties"]["class_name"] == "cloud"
    assert collection["geomlops:stats"] == stats


def test_a_continuous_value_without_threshold_gives_statistics_only() -> None:
    spec = OutputSpec(OutputKind.CONTINUOUS, name="biomass", unit="Mg/ha")
    values = np.arange(16, dtype="float32").reshape(4, 4) * 10  # 0, 10, ..., 150
    processed = postprocess(spec, RasterPrediction(values, TRANSFORM, CRS))
    assert processed.polygons == []
    assert processed.stats == {
        "valid_pixels": 16, "mean": 75.0, "min": 0.0, "max": 150.0,
        "p10": 15.0, "p50": 75.0, "p90": 135.0, "unit": "Mg/ha",
    }  # fmt: skip
    thresholded = postprocess(
        OutputSpec(OutputKind.CONTINUOUS, threshold=100.0),
        RasterPrediction(values, TRANSFORM, CRS),
    )
    (above,) = thresholded.polygons
    assert above.name == "above-threshold" and above.mean_confidence is None
    assert thresholded.stats["above_threshold_pixels"] == 6  # 100 .. 150


def test_threshold_mask_and_statistics_of_an_empty_raster() -> None:
    mask = threshold_mask(_probability(), 0.5, 3)
    assert (mask == 3).sum() == 100 and mask[19, 19] == 255 and (mask == 0).sum() == 299
    empty = zonal_statistics(np.full((3, 3), np.nan, dtype="float32"), 100.0, 0.5)
    assert empty["valid_pixels"] == 0 and empty["mean"] is None
    assert empty["above_threshold_pixels"] == 0 and empty["above_threshold_fraction"] is None


def test_the_class_mask_path_is_raster_to_vector_unchanged() -> None:
    mask = np.zeros((20, 20), dtype="uint8")
    mask[2:8, 3:9] = 1
    mask[15:, 15:] = 255
    classes = ({"value": 0, "name": "not_water"}, {"value": 1, "name": "water"})
    options = {"skip_values": [0], "min_area_m2": 0}
    spec = OutputSpec(OutputKind.CLASS_MASK, classes=classes)
    processed = postprocess(
        spec, RasterPrediction(mask, TRANSFORM, CRS, nodata=255), options=options
    )
    direct = vectorize(mask, TRANSFORM, CRS, classes=list(classes), nodata=255, options=options)
    assert processed.feature_collection() == feature_collection(direct)
    assert "geomlops:stats" not in processed.feature_collection()
    assert processed.stats == {
        "water_area_m2": round(direct[0].area_m2, 2),
        "water_area_km2": round(direct[0].area_m2 / 1e6, 6),
    }


def test_chips_become_labelled_footprints() -> None:
    names = ("forest", "crop", "urban")
    spec = OutputSpec(
        OutputKind.CHIP_CLASS, classes=tuple({"value": v, "name": n} for v, n in enumerate(names))
    )
    scores = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], dtype="float32")
    footprints = [(500000, 4399360, 500640, 4400000), (500640, 4399360, 501280, 4400000)]
    processed = postprocess(spec, ChipPrediction(scores, footprints, CRS))
    features = processed.features()
    assert [f["properties"] for f in features] == [
        {"class_name": "crop", "class_value": 1, "score": 0.7},
        {"class_name": "forest", "class_value": 0, "score": 0.6},
    ]
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    for feature, (west, south, east, north) in zip(features, footprints, strict=True):
        footprint = shape(feature["geometry"])
        for x, y in ((west, south), (east, north), (west, north), (east, south)):
            lon, lat = to_lonlat.transform(x, y)
            assert footprint.exterior.distance(shapely.Point(lon, lat)) < 1e-9
    assert processed.stats == {"forest_chips": 1, "crop_chips": 1, "urban_chips": 0, "chips": 2}
    with pytest.raises(ValidationFailed, match="one score per class"):
        postprocess(spec, ChipPrediction(scores[:, :2], footprints, CRS))
    with pytest.raises(ValidationFailed, match="from a raster"):
        postprocess(CLOUD, ChipPrediction(scores, footprints, CRS))


def test_model_scores_become_the_raster_of_the_kind() -> None:
    scores = np.stack([np.zeros((4, 4)), np.eye(4)]).astype("float32")
    mask = to_raster(OutputKind.CLASS_MASK, scores)
    assert mask.dtype == np.uint8 and (mask == np.eye(4)).all()
    probability = to_raster(OutputKind.PROBABILITY, scores[1:])
    assert probability.dtype == np.float32 and (probability == np.eye(4)).all()
    with pytest.raises(ValidationFailed, match="one channel, the model gave 2"):
        to_raster(OutputKind.PROBABILITY, scores)


def test_a_probability_payload_carries_values_and_its_output() -> None:
    values = _probability()
    encoded = payload.encode(values, TRANSFORM, CRS, classes=list(CLOUD.classes), output=CLOUD)
    assert "mask" not in encoded and encoded["output"]["kind"] == "probability"
    decoded = payload.decode(encoded)
    assert decoded.spec == CLOUD.__class__(
        OutputKind.PROBABILITY, classes=CLOUD.classes, threshold=0.4
    )
    assert np.array_equal(decoded.mask, values, equal_nan=True)
    mask_payload = payload.encode(np.zeros((4, 4), "uint8"), TRANSFORM, CRS)
    assert set(mask_payload) == {"mask", "transform", "crs", "nodata", "classes"}
    assert payload.decode(mask_payload).spec.kind is OutputKind.CLASS_MASK
    sent_as_mask = dict(encoded, mask=encoded["values"])
    with pytest.raises(ValidationFailed, match="sends its raster as 'values'"):
        payload.decode(sent_as_mask)
