"""The dispatcher: a model's prediction and its output's kind → features and statistics.

Serving's output transformer and batch inference's publish step both call
:func:`postprocess` with the model version's :class:`~geomlops.model.kinds.OutputSpec`, so
the kind alone chooses what is published, wherever the prediction was made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import shapely
from affine import Affine

from geomlops.errors import ValidationFailed
from geomlops.model import properties as prop
from geomlops.model.kinds import OutputKind, OutputSpec
from geomlops.transformers.postprocess.chip_class import ChipLabel, label_chips
from geomlops.transformers.postprocess.float_raster import threshold_mask, zonal_statistics
from geomlops.transformers.raster_to_vector import ClassPolygons, VectorizeOptions, vectorize
from geomlops.transformers.raster_to_vector.geojson import feature, parsed_geometry
from geomlops.transformers.raster_to_vector.georef import Georeference

GeometryWriter = Callable[[shapely.Geometry], Any]


@dataclass(frozen=True)
class RasterPrediction:
    """A per-pixel prediction: the raster :func:`~.rasters.to_raster` made, georeferenced.

    ``values`` is a class mask (``nodata`` marks no data) or a float raster (NaN marks it).
    ``confidence`` is a class mask's per-pixel confidence (H x W) or per-class probabilities.
    """

    values: np.ndarray
    transform: Affine | Sequence[float]
    crs: Any
    nodata: float | None = None
    confidence: np.ndarray | None = None


@dataclass(frozen=True)
class ChipPrediction:
    """A chip classifier's answer: scores (N x K) and each chip's bounds in ``crs``."""

    scores: np.ndarray
    footprints: Sequence[tuple[float, float, float, float]]
    crs: Any


@dataclass(frozen=True)
class Processed:
    """What post-processing publishes: polygons or labelled chips, and statistics."""

    kind: OutputKind
    polygons: list[ClassPolygons] = field(default_factory=list)
    chips: list[ChipLabel] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    """Per-class areas (class mask), zonal statistics (probability, continuous) or per-class
    chip counts (chip class)."""

    def features(self, geometry: GeometryWriter = parsed_geometry) -> list[dict[str, Any]]:
        """GeoJSON Features: one per class (polygons) or one per chip (footprints)."""
        if self.kind is OutputKind.CHIP_CLASS:
            return [
                {
                    "type": "Feature",
                    "geometry": geometry(chip.geometry),
                    "properties": {
                        "class_name": chip.name,
                        "class_value": chip.value,
                        "score": round(chip.score, 4),
                    },
                }
                for chip in self.chips
            ]
        return [feature(p, geometry) for p in self.polygons]

    def feature_collection(self, geometry: GeometryWriter = parsed_geometry) -> dict[str, Any]:
        """A FeatureCollection of :meth:`features`; a float kind's zonal statistics ride along.

        A class mask's collection is what raster-to-vector has always answered (its
        per-class areas are the features' ``area_m2``); the others carry their statistics
        as the foreign member ``geomlops:stats`` (RFC 7946 §6.1).
        """
        collection: dict[str, Any] = {
            "type": "FeatureCollection",
            "features": self.features(geometry),
        }
        if self.kind is not OutputKind.CLASS_MASK:
            collection[prop.STATS] = self.stats
        return collection


def _class_mask(
    spec: OutputSpec,
    prediction: RasterPrediction,
    options: VectorizeOptions | Mapping[str, Any] | None,
    clip: shapely.Geometry | None,
) -> Processed:
    polygons = vectorize(
        prediction.values,
        prediction.transform,
        prediction.crs,
        classes=list(spec.classes),
        probabilities=prediction.confidence,
        nodata=prediction.nodata,
        options=options,
        clip=clip,
    )
    stats: dict[str, Any] = {}
    for polygon in polygons:
        stats[f"{polygon.name}_area_m2"] = round(polygon.area_m2, 2)
        stats[f"{polygon.name}_area_km2"] = round(polygon.area_m2 / 1e6, 6)
    return Processed(OutputKind.CLASS_MASK, polygons=polygons, stats=stats)


def _float_raster(
    spec: OutputSpec,
    prediction: RasterPrediction,
    options: VectorizeOptions | Mapping[str, Any] | None,
    clip: shapely.Geometry | None,
) -> Processed:
    values = np.asarray(prediction.values)
    if values.ndim == 3 and values.shape[0] == 1:
        values = values[0]
    if not np.issubdtype(values.dtype, np.floating):
        raise ValidationFailed(
            f"values: a {spec.kind.value} output is a float raster, got {values.dtype}"
        )
    georef = Georeference.of(prediction.transform, prediction.crs, values.shape[-2:])
    stats = zonal_statistics(values, georef.pixel_area_m2, spec.threshold)
    if spec.unit:
        stats["unit"] = spec.unit
    polygons: list[ClassPolygons] = []
    if spec.threshold is not None:
        value, name = spec.threshold_class
        # Vectorised as 1 (0 is "below", skipped), then given the class's own value.
        mask = threshold_mask(values, spec.threshold, 1)
        confidence = (
            np.nan_to_num(values, nan=0.0).clip(0.0, 1.0)
            if spec.kind is OutputKind.PROBABILITY
            else None
        )
        polygons = vectorize(
            mask,
            prediction.transform,
            prediction.crs,
            classes=[{"value": 1, "name": name}],
            probabilities=confidence,
            nodata=255,
            options=VectorizeOptions.parse(options).model_copy(update={"skip_values": {0}}),
            clip=clip,
        )
        polygons = [replace(p, value=value) for p in polygons]
        if polygons and clip is not None:
            # The polygons' area is the clipped one: say so beside the pixel count.
            stats["above_threshold_polygon_area_m2"] = round(polygons[0].area_m2, 2)
    return Processed(spec.kind, polygons=polygons, stats=stats)


def _chip_class(spec: OutputSpec, prediction: ChipPrediction) -> Processed:
    chips = label_chips(prediction.scores, prediction.footprints, prediction.crs, spec.classes)
    counts: dict[str, Any] = {f"{name}_chips": 0 for name in spec.class_names}
    for chip in chips:
        counts[f"{chip.name}_chips"] = counts.get(f"{chip.name}_chips", 0) + 1
    counts["chips"] = len(chips)
    return Processed(OutputKind.CHIP_CLASS, chips=chips, stats=counts)


def postprocess(
    spec: OutputSpec,
    prediction: RasterPrediction | ChipPrediction,
    *,
    options: VectorizeOptions | Mapping[str, Any] | None = None,
    clip: shapely.Geometry | None = None,
) -> Processed:
    """Run the post-processor of ``spec.kind`` on ``prediction``.

    ``options`` (raster-to-vector's: minimum area, simplification, skipped values) apply to
    every polygon made; ``clip`` (a lon/lat polygon, e.g. a request's AOI) cuts them.
    """
    if spec.kind is OutputKind.CHIP_CLASS:
        if not isinstance(prediction, ChipPrediction):
            raise ValidationFailed("a chip-class output is post-processed from chip scores")
        return _chip_class(spec, prediction)
    if not isinstance(prediction, RasterPrediction):
        raise ValidationFailed(f"a {spec.kind.value} output is post-processed from a raster")
    if spec.kind is OutputKind.CLASS_MASK:
        return _class_mask(spec, prediction, options, clip)
    return _float_raster(spec, prediction, options, clip)
