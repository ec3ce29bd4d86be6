"""Chip classification: one labelled footprint per chip (its class, the class's score).

A chip classifier answers one score per class for each chip (N x K); a chip's label is its
highest score's class. Footprints are the chips' bounds in their CRS, returned as lon/lat
polygons (edges densified, so they bend as they should in another CRS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer

from geomlops.errors import ValidationFailed

_EDGE_POINTS = 8


@dataclass(frozen=True)
class ChipLabel:
    """One chip: its footprint in lon/lat, class and score."""

    geometry: shapely.Polygon
    value: int
    name: str
    score: float


def _lonlat(bounds: tuple[float, float, float, float], transformer: Transformer | None) -> Any:
    west, south, east, north = bounds
    box = shapely.box(west, south, east, north)
    if transformer is None:
        return box
    box = shapely.segmentize(box, max(east - west, north - south) / _EDGE_POINTS)
    return shapely.transform(box, lambda xy: np.column_stack(transformer.transform(*xy.T)))


def label_chips(
    scores: np.ndarray,
    footprints: Sequence[tuple[float, float, float, float]],
    crs: Any,
    classes: Sequence[Mapping[str, Any]],
) -> list[ChipLabel]:
    """Label every chip with its highest-scoring class (``classes`` in score order)."""
    grid = np.asarray(scores, dtype=np.float64)
    if grid.ndim != 2 or grid.shape[1] != len(classes):
        raise ValidationFailed(
            f"scores: expected N x {len(classes)} (one score per class), got {grid.shape}"
        )
    if grid.shape[0] != len(footprints):
        raise ValidationFailed(
            f"footprints: {len(footprints)} for {grid.shape[0]} chip(s) of scores"
        )
    source = CRS.from_user_input(crs)
    wgs84 = CRS.from_epsg(4326)
    transformer = None if source == wgs84 else Transformer.from_crs(source, wgs84, always_xy=True)
    best = grid.argmax(axis=1)
    labels = []
    for index, chosen in enumerate(best):
        cls = classes[int(chosen)]
        labels.append(
            ChipLabel(
                geometry=_lonlat(footprints[index], transformer),
                value=int(cls.get("value", chosen)),
                name=str(cls.get("name") or cls.get("value", chosen)),
                score=float(grid[index, chosen]),
            )
        )
    return labels
