"""The comparison behind `geomlops reproduce PREDICTION`: pixels, polygons, versions, inputs."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import box, mapping

from geomlops.governance.reproduce import (
    NODATA_CLASS,
    Reproduction,
    Thresholds,
    compare_masks,
    compare_values,
    input_differences,
    polygon_iou,
    version_differences,
)

CLASSES = {0: "not_water", 1: "water"}


def _mask() -> np.ndarray:
    mask = np.zeros((100, 100), dtype="uint8")
    mask[20:60, 30:70] = 1  # 1600 water pixels
    mask[:, :5] = 255
    return mask


def _feature(name: str, geometry: object) -> dict:
    return {"type": "Feature", "geometry": mapping(geometry), "properties": {"class_name": name}}


def test_identical_masks_agree_on_every_class() -> None:
    agreement = compare_masks("s", _mask(), _mask().copy(), CLASSES)
    assert agreement.identical == 1.0 and agreement.problem is None
    assert agreement.per_class == {"not_water": 1.0, "water": 1.0, NODATA_CLASS: 1.0}


def test_a_small_class_that_moved_shows_in_its_own_figure() -> None:
    rerun = _mask()
    rerun[20:60, 30:38] = 0  # a fifth of the water lost: 2.7 % of all pixels
    agreement = compare_masks("s", _mask(), rerun, CLASSES)
    assert agreement.identical == pytest.approx(1 - 320 / 10_000)
    assert agreement.per_class["water"] == pytest.approx(0.8)
    # The lost water became not_water: 320 of the 8,220 pixels either mask calls not_water.
    assert agreement.per_class["not_water"] == pytest.approx(7_900 / 8_220)
    report = Reproduction("p", "r", Thresholds(min_pixel_agreement=0.95), pixels=[agreement])
    assert not report.agrees
    assert report.problems == ["s: class water 80.0000% agree < 95.00%"]


def test_a_class_erased_from_the_published_mask_scores_zero() -> None:
    published = _mask()
    published[published == 1] = 0  # the published mask lost all its water
    agreement = compare_masks("s", published, _mask(), CLASSES)
    assert agreement.per_class["water"] == 0.0
    assert (
        "s: class water 0.0000% agree < 99.00%"
        in Reproduction("p", "r", Thresholds(), pixels=[agreement]).problems
    )


def test_masks_on_different_grids_are_not_compared() -> None:
    agreement = compare_masks("s", _mask(), _mask()[:50], CLASSES)
    assert agreement.identical == 0.0 and "grids differ" in (agreement.problem or "")
    assert not Reproduction("p", "r", Thresholds(), pixels=[agreement]).agrees


def test_polygon_iou_per_class() -> None:
    published = [_feature("water", box(0, 0, 0.01, 0.01)), _feature("land", box(1, 1, 1.01, 1.01))]
    shifted = [
        _feature("water", box(0.005, 0, 0.015, 0.01)),
        _feature("land", box(1, 1, 1.01, 1.01)),
    ]
    iou = polygon_iou(published, shifted)
    assert iou["land"] == pytest.approx(1.0)
    assert iou["water"] == pytest.approx(1 / 3, rel=1e-3)  # half overlaps: 0.5 / 1.5
    assert polygon_iou(published, published[:1]) == {"land": 0.0, "water": 1.0}
    report = Reproduction("p", "r", Thresholds(min_polygon_iou=0.9), polygon_iou=iou)
    assert [p.split(":")[0] for p in report.problems] == ["polygons of water"]


def test_version_differences_of_decisive_packages_fail_unless_allowed() -> None:
    recorded = {"geomlops": "0.1.0", "torch": "2.13.0", "shapely": "2.1.0", "gdal": "3.10.3"}
    rerun = {"geomlops": "0.1.0", "torch": "2.14.0", "shapely": "2.2.0", "gdal": "3.10.3"}
    differences = version_differences(recorded, rerun)
    assert [(d.package, d.matters) for d in differences] == [("shapely", False), ("torch", True)]
    strict = Reproduction("p", "r", Thresholds(), versions=differences)
    assert strict.problems == ["torch 2.13.0 was used, the rerun had 2.14.0"]
    assert strict.warnings == ["shapely 2.1.0 was used, the rerun had 2.2.0"]
    allowed = Reproduction("p", "r", Thresholds(allow_version_mismatch=True), versions=differences)
    assert allowed.agrees and len(allowed.warnings) == 2
    assert version_differences(recorded, dict(recorded)) == []


def test_other_inputs_are_a_different_reproduction() -> None:
    recorded = {"model_item": "m-mv1", "scenes": ["a"], "aoi": "s3://x/aoi.geojson"}
    assert input_differences(recorded, dict(recorded)) == []
    problems = input_differences(recorded, {**recorded, "model_item": "m-mv2"})
    assert problems == ["model_item: 'm-mv1' recorded, 'm-mv2' in the rerun"]
    report = Reproduction("p", "r", Thresholds(), input_problems=problems)
    assert not report.agrees and report.as_dict()["problems"] == problems


def test_model_versions_and_predictions_are_told_apart() -> None:
    from geomlops.cli.reproduce import is_model_version
    from geomlops.governance.reproduce_training import parse_version_ref

    for ref in (
        "flood-water-s2-mv3",
        "flood-water-s2@3",
        "flood-water-s2/3",
        "models:/flood-water-s2/3",
    ):
        assert is_model_version(ref), ref
        # What the verb sends to retraining, retraining reads.
        assert parse_version_ref(ref) == ("flood-water-s2", "3"), ref
    for ref in ("geomlops-batch-inference-x7k2p", "geomlops-batch-inference-x7k2p-Spain_1"):
        assert not is_model_version(ref), ref


def test_float_predictions_agree_within_a_tolerance_over_values_and_no_data() -> None:
    published = np.linspace(0, 1, 10_000, dtype="float32").reshape(100, 100)
    published[:, :5] = np.nan
    rerun = published + np.float32(1e-7)  # float noise: still the same prediction
    rerun[0, 50:60] += 0.1  # ten pixels changed
    agreement = compare_values("s", published, rerun)
    assert agreement.identical == pytest.approx(1 - 10 / 10_000)
    assert agreement.per_class == {"value": pytest.approx(1 - 10 / 9_500), NODATA_CLASS: 1.0}
    rerun[:, 0] = 0.5  # a no-data column predicted on the rerun
    # 100 of the 500 no-data pixels now differ
    assert compare_values("s", published, rerun).per_class[NODATA_CLASS] == pytest.approx(0.8)
    assert compare_values("s", published, rerun[:50]).problem is not None
