"""How far a recomputed prediction agrees with the published one: pure comparison.

``geomlops reproduce PREDICTION`` re-runs a published prediction from its lineage (same
model version, imagery items, AOI and date range) and hands both outputs here:

- **pixels**: per scene, on the same grid, the fraction of all pixels that are identical
  and, per class (no data included), the fraction of the published class's pixels that the
  rerun put in the same class — so a class that shrank or moved shows, however small;
- **polygons**: per class, the IoU of the published and recomputed geometries, areas on
  the WGS84 ellipsoid (degrees are not equal-area);
- **software**: every package the published item records (``processing:software``)
  against what the rerun recorded. A difference in a package that computes the pixels
  (:data:`DECISIVE`) matters and fails the reproduction unless allowed; others are
  reported as warnings and the agreement figures decide;
- **inputs**: the model version (item and artifact), the scenes and the AOI must be the
  recorded ones, or the rerun reproduces something else.

Nothing here reads a server or a file: arrays, GeoJSON dicts and version dicts in, a
:class:`Reproduction` out, so each rule is tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from pyproj import Geod
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

DECISIVE = ("geomlops", "torch")
"""Packages whose version decides the pixels: the pipeline and the model's arithmetic."""

NODATA_CLASS = "no data"
"""How pixels without a prediction (mask value 255) are named in the per-class figures."""

_GEOD = Geod(ellps="WGS84")


@dataclass(frozen=True)
class Thresholds:
    """The agreement a reproduction needs (inclusive)."""

    min_pixel_agreement: float = 0.99
    """Fraction of identical pixels, per scene and per class of each scene."""
    min_polygon_iou: float = 0.99
    """IoU of each class's polygons."""
    allow_version_mismatch: bool = False
    """Pass even when a decisive package's version differs (the figures still decide)."""


@dataclass(frozen=True)
class PixelAgreement:
    """One scene's published mask against the recomputed one."""

    scene: str
    pixels: int
    identical: float
    """Fraction of all pixels that are identical."""
    per_class: dict[str, float]
    """Per class present in either mask: of the pixels either gives that class, the share both
    give it (the class's pixel IoU), so a class erased from or added to one mask scores 0."""
    problem: str | None = None
    """Why the masks could not be compared pixel for pixel (grids differ, one is missing)."""


@dataclass(frozen=True)
class VersionDifference:
    """A package whose recorded version is not the rerun's."""

    package: str
    recorded: str | None
    reproduced: str | None
    matters: bool


@dataclass
class Reproduction:
    """Everything the comparison found, and the verdict under :class:`Thresholds`."""

    prediction: str
    rerun: str
    thresholds: Thresholds
    pixels: list[PixelAgreement] = field(default_factory=list)
    polygon_iou: dict[str, float] = field(default_factory=dict)
    versions: list[VersionDifference] = field(default_factory=list)
    input_problems: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Every reason the reproduction fails; empty when it agrees."""
        found = list(self.input_problems)
        limit = self.thresholds.min_pixel_agreement
        for scene in self.pixels:
            if scene.problem:
                found.append(f"{scene.scene}: {scene.problem}")
                continue
            if scene.identical < limit:
                found.append(f"{scene.scene}: {scene.identical:.4%} identical pixels < {limit:.2%}")
            for name, share in scene.per_class.items():
                if share < limit:
                    found.append(f"{scene.scene}: class {name} {share:.4%} agree < {limit:.2%}")
        for name, iou in self.polygon_iou.items():
            if iou < self.thresholds.min_polygon_iou:
                found.append(
                    f"polygons of {name}: IoU {iou:.4f} < {self.thresholds.min_polygon_iou}"
                )
        if not self.thresholds.allow_version_mismatch:
            found += [
                f"{d.package} {d.recorded} was used, the rerun had {d.reproduced}"
                for d in self.versions
                if d.matters
            ]
        return found

    @property
    def warnings(self) -> list[str]:
        """Differences reported that do not fail the reproduction on their own."""
        return [
            f"{d.package} {d.recorded} was used, the rerun had {d.reproduced}"
            for d in self.versions
            if not d.matters or self.thresholds.allow_version_mismatch
        ]

    @property
    def agrees(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The report, as ``--json`` prints it."""
        return {
            "prediction": self.prediction,
            "rerun": self.rerun,
            "agrees": self.agrees,
            "thresholds": {
                "min_pixel_agreement": self.thresholds.min_pixel_agreement,
                "min_polygon_iou": self.thresholds.min_polygon_iou,
                "allow_version_mismatch": self.thresholds.allow_version_mismatch,
            },
            "pixels": [
                {
                    "scene": p.scene,
                    "pixels": p.pixels,
                    "identical": p.identical,
                    "per_class": p.per_class,
                    "problem": p.problem,
                }
                for p in self.pixels
            ],
            "polygon_iou": self.polygon_iou,
            "versions": [
                {
                    "package": d.package,
                    "recorded": d.recorded,
                    "reproduced": d.reproduced,
                    "matters": d.matters,
                }
                for d in self.versions
            ],
            "problems": self.problems,
            "warnings": self.warnings,
        }


def compare_masks(
    scene: str,
    published: np.ndarray,
    reproduced: np.ndarray,
    classes: Mapping[int, str],
    nodata: int = 255,
) -> PixelAgreement:
    """Pixel agreement of two class masks on the same grid (``classes``: value -> name)."""
    if published.shape != reproduced.shape:
        return PixelAgreement(
            scene,
            int(published.size),
            0.0,
            {},
            problem=f"the masks' grids differ: {published.shape} published, "
            f"{reproduced.shape} recomputed",
        )
    same = published == reproduced
    per_class: dict[str, float] = {}
    names = {**classes, nodata: NODATA_CLASS}
    for value in np.union1d(np.unique(published), np.unique(reproduced)).tolist():
        where = (published == value) | (reproduced == value)
        per_class[names.get(int(value), str(value))] = float(same[where].mean())
    return PixelAgreement(scene, int(published.size), float(same.mean()), per_class)


VALUE_TOLERANCE = 1e-6
"""Two float predictions (probability, continuous) agree on a pixel within this."""


def compare_values(scene: str, published: np.ndarray, reproduced: np.ndarray) -> PixelAgreement:
    """Pixel agreement of two float rasters on the same grid (NaN = no data on both sides).

    A float raster has no classes to count per value: its pixels agree within
    :data:`VALUE_TOLERANCE`, reported over the valid pixels and over the no-data ones.
    """
    if published.shape != reproduced.shape:
        return PixelAgreement(
            scene,
            int(published.size),
            0.0,
            {},
            problem=f"the rasters' grids differ: {published.shape} published, "
            f"{reproduced.shape} recomputed",
        )
    same = np.isclose(published, reproduced, rtol=0.0, atol=VALUE_TOLERANCE, equal_nan=True)
    missing = np.isnan(published) | np.isnan(reproduced)
    per_class = {
        name: float(same[where].mean())
        for name, where in (("value", ~missing), (NODATA_CLASS, missing))
        if where.any()
    }
    return PixelAgreement(scene, int(published.size), float(same.mean()), per_class)


def _class_geometries(features: Iterable[Mapping[str, Any]]) -> dict[str, BaseGeometry]:
    parts: dict[str, list[BaseGeometry]] = {}
    for feature in features:
        name = str((feature.get("properties") or {}).get("class_name"))
        parts.setdefault(name, []).append(shape(feature["geometry"]))
    return {name: shapely.union_all(geoms) for name, geoms in parts.items()}


def _area(geometry: BaseGeometry) -> float:
    if geometry.is_empty:
        return 0.0
    return abs(_GEOD.geometry_area_perimeter(shapely.orient_polygons(geometry))[0])


def polygon_iou(
    published: Iterable[Mapping[str, Any]], reproduced: Iterable[Mapping[str, Any]]
) -> dict[str, float]:
    """IoU per class of two sets of GeoJSON features (``class_name`` in their properties).

    A class only one side has scores 0; a class both have empty scores 1.
    """
    ours, theirs = _class_geometries(published), _class_geometries(reproduced)
    result = {}
    for name in sorted(set(ours) | set(theirs)):
        a = ours.get(name, shapely.Polygon())
        b = theirs.get(name, shapely.Polygon())
        union = _area(shapely.union(a, b))
        result[name] = _area(shapely.intersection(a, b)) / union if union > 0 else 1.0
    return result


def version_differences(
    recorded: Mapping[str, str], reproduced: Mapping[str, str]
) -> list[VersionDifference]:
    """Every package of the published record whose version the rerun did not have."""
    return [
        VersionDifference(name, recorded.get(name), reproduced.get(name), name in DECISIVE)
        for name in sorted(set(recorded) | set(reproduced))
        if recorded.get(name) != reproduced.get(name)
    ]


def input_differences(recorded: Mapping[str, Any], reproduced: Mapping[str, Any]) -> list[str]:
    """The inputs (model item, artifact, scenes, AOI, dates) the rerun did not share."""
    return [
        f"{name}: {recorded.get(name)!r} recorded, {reproduced.get(name)!r} in the rerun"
        for name in sorted(set(recorded) | set(reproduced))
        if recorded.get(name) != reproduced.get(name)
    ]
