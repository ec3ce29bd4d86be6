"""Class mask → one clean (Multi)Polygon per class in lon/lat: the raster-to-vector transform.

This module validates the inputs and runs the steps of :mod:`.pixels` and :mod:`.georef`
in order. It is the one entry point both the Seldon output transformer and batch
inference use, so online and batch results are the same polygons.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import shapely
from affine import Affine
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from geomlops.errors import ValidationFailed
from geomlops.model.io import OutputClass, parse_classes
from geomlops.transformers.raster_to_vector import pixels
from geomlops.transformers.raster_to_vector.georef import Georeference, geodesic_area_m2
from geomlops.transformers.raster_to_vector.payload import DecodedMask

# Dtypes rasterio.features.shapes accepts; anything else integral is converted first.
_SHAPES_DTYPES = {np.dtype(t) for t in ("int8", "uint8", "int16", "uint16", "int32")}
_INT32 = np.iinfo(np.int32)


class VectorizeOptions(BaseModel):
    """How much to clean and simplify, in ground units (metres), not pixels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_area_m2: float = Field(
        default=0.0,
        ge=0,
        description="Islands (polygons) and holes smaller than this are removed; 0 keeps all.",
    )
    simplify_tolerance_m: float = Field(
        default=0.0,
        ge=0,
        description="Simplification tolerance; 0 keeps the pixel outlines exactly. With "
        "Douglas-Peucker no vertex moves further than this; with coverage simplification "
        "(Visvalingam-Whyatt) corners cutting off less than its square are removed.",
    )
    simplify_method: Literal["auto", "douglas-peucker", "coverage"] = Field(
        default="auto",
        description="`douglas-peucker`: per polygon, fast; a polygon whose simplified "
        "outline would overlap a neighbouring class or no-data keeps its pixel outline, so "
        "it suits one output class. `coverage`: shared edges simplified once for both "
        "sides, no gaps or overlaps; ~10x slower. `auto`: coverage when more than one "
        "class is vectorised, else Douglas-Peucker.",
    )
    skip_values: frozenset[int] = Field(
        default=frozenset(),
        description="Mask values not vectorised at all, e.g. {0} for background.",
    )
    precision: int = Field(
        default=6,
        ge=0,
        le=15,
        description="Decimal places of lon/lat (RFC 7946 §11.2: 6 places is about 10 cm).",
    )

    @classmethod
    def parse(cls, options: VectorizeOptions | Mapping[str, Any] | None) -> VectorizeOptions:
        """Options from an instance, a mapping (e.g. component parameters) or ``None``."""
        if options is None:
            return cls()
        if isinstance(options, VectorizeOptions):
            return options
        try:
            return cls.model_validate(dict(options))
        except ValidationError as error:
            raise ValidationFailed(
                "raster-to-vector options are not valid",
                problems=[
                    f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in error.errors()
                ],
            ) from None


@dataclass(frozen=True)
class ClassPolygons:
    """All polygons of one class, dissolved into one MultiPolygon in lon/lat (EPSG:4326)."""

    value: int
    name: str
    geometry: shapely.MultiPolygon
    area_m2: float
    mean_confidence: float | None


def vectorize(
    mask: np.ndarray,
    transform: Affine | Sequence[float],
    crs: Any,
    *,
    classes: Iterable[Any] | Mapping[str, Any] | None = None,
    probabilities: np.ndarray | None = None,
    nodata: float | None = None,
    options: VectorizeOptions | Mapping[str, Any] | None = None,
    clip: shapely.Geometry | None = None,
) -> list[ClassPolygons]:
    """Turn a class mask into one MultiPolygon per class, in lon/lat, sorted by value.

    ``mask`` holds integer class values; ``transform`` and ``crs`` georeference it.
    ``classes`` are the model's MLM output classes (``{name, value}`` objects; a class
    with ``nodata: true`` marks no-data). ``probabilities`` is either a per-pixel
    confidence (HxW) or per-class probabilities (CxHxW, bands in the order of
    ``classes``); each class then gets the mean over its pixels. Pixels equal to
    ``nodata`` never become polygons. ``clip`` (a lon/lat polygon, e.g. a request's AOI)
    cuts every class to it, areas scaled with it; a class left empty is dropped. An empty
    result is an empty list, not an error.
    """
    opts = VectorizeOptions.parse(options)
    grid = _as_mask(mask)
    output_classes = parse_classes(classes)
    georef = Georeference.of(transform, crs, grid.shape)
    nodata_values = _nodata_values(nodata, output_classes)
    confidence = _as_probabilities(probabilities, grid.shape, output_classes)

    valid = _valid_pixels(grid, nodata_values)
    include = _included_pixels(grid, valid, opts.skip_values)
    polygons = pixels.polygonize(_shapes_dtype(grid), include)
    _check_known_values(polygons.values, output_classes)

    # No-data outlines are only needed to keep cleaning and simplification off no-data.
    nodata_polygons = np.empty(0, dtype=object)
    if valid is not None and (opts.min_area_m2 > 0 or opts.simplify_tolerance_m > 0):
        invalid = ~valid
        nodata_polygons = pixels.polygonize(invalid.view(np.uint8), invalid).to_polygons()
    polygons = pixels.remove_small(
        polygons, georef.area_to_pixels(opts.min_area_m2), nodata_polygons
    )
    if polygons.polygon_count == 0:
        return []
    parts, values = _simplified(
        polygons.to_polygons(), polygons.values, nodata_polygons, georef, opts
    )
    order = np.argsort(values, kind="stable")
    class_values, group = np.unique(values[order], return_inverse=True)
    # shapely types these array functions for scalars too; here they are always arrays
    pixel_geoms = np.asarray(shapely.multipolygons(parts[order], indices=group))
    lonlat = np.asarray(
        shapely.orient_polygons(
            shapely.transform(pixel_geoms, georef.pixel_to_lonlat(opts.precision))
        )
    )
    lonlat = _repair(lonlat)
    areas = georef.areas_m2(pixel_geoms, lonlat)
    if clip is not None:
        lonlat, areas = _clipped(lonlat, areas, clip, opts.precision)
        kept = ~shapely.is_empty(lonlat)
        class_values, lonlat, areas = class_values[kept], lonlat[kept], areas[kept]
    names = {c.value: c.label for c in output_classes}
    band_of = {c.value: band for band, c in enumerate(output_classes)}
    return [
        ClassPolygons(
            value=int(value),
            name=names.get(int(value), str(int(value))),
            geometry=geometry,
            area_m2=float(area),
            mean_confidence=_mean_confidence(grid, int(value), confidence, band_of),
        )
        for value, geometry, area in zip(class_values, lonlat, areas, strict=True)
    ]


def _simplified(
    parts: np.ndarray,
    values: np.ndarray,
    nodata_polygons: np.ndarray,
    georef: Georeference,
    opts: VectorizeOptions,
) -> tuple[np.ndarray, np.ndarray]:
    """The pixel-space polygons simplified as ``opts`` says, with their class values."""
    if opts.simplify_tolerance_m <= 0:
        return parts, values
    tolerance_px = georef.metres_to_pixels(opts.simplify_tolerance_m)
    method = opts.simplify_method
    if method == "auto":
        method = "coverage" if len(np.unique(values)) > 1 else "douglas-peucker"
    if method == "coverage":
        simplified = pixels.simplify_coverage(parts, tolerance_px, nodata_polygons)
    else:
        simplified = pixels.simplify(parts, tolerance_px)
    simplified = pixels.resolve_conflicts(simplified, parts, values)
    return pixels.clip_to_data(simplified, values, nodata_polygons)


def _as_mask(mask: np.ndarray) -> np.ndarray:
    grid = np.asarray(mask)
    if grid.ndim == 3 and grid.shape[0] == 1:
        grid = grid[0]
    if grid.ndim != 2 or grid.size == 0:
        raise ValidationFailed(
            f"mask: expected a 2-D array of class values, got shape {grid.shape}"
        )
    if grid.dtype == bool:
        return grid.view(np.uint8)
    if not np.issubdtype(grid.dtype, np.integer):
        raise ValidationFailed(
            f"mask: dtype {grid.dtype} holds no class values; expected an integer dtype",
            hint="pass the argmax of the model output, not probabilities",
        )
    return grid


def _shapes_dtype(grid: np.ndarray) -> np.ndarray:
    """The mask in a dtype GDAL polygonises (values beyond int32 are not class values)."""
    if grid.dtype in _SHAPES_DTYPES:
        return grid
    low, high = int(grid.min()), int(grid.max())
    if low < _INT32.min or high > _INT32.max:
        raise ValidationFailed(f"mask: values from {low} to {high} do not fit int32 class values")
    return grid.astype(np.int32)


def _nodata_values(nodata: float | None, classes: list[OutputClass]) -> list[float]:
    values: list[float] = [c.value for c in classes if c.nodata]
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        values.append(nodata)
    return values


def _valid_pixels(grid: np.ndarray, nodata_values: list[float]) -> np.ndarray | None:
    """Where the mask has a prediction; ``None`` when every pixel does."""
    # A fractional no-data value cannot occur in an integer mask.
    values = [int(v) for v in nodata_values if float(v) == int(v)]
    if not values:
        return None
    valid = _not_in(grid, values)
    return None if valid.all() else valid


def _included_pixels(
    grid: np.ndarray, valid: np.ndarray | None, skip_values: frozenset[int]
) -> np.ndarray | None:
    if not skip_values:
        return valid
    keep = _not_in(grid, sorted(skip_values))
    return keep if valid is None else keep & valid


def _not_in(grid: np.ndarray, values: list[int]) -> np.ndarray:
    """Where ``grid`` equals none of ``values`` (one array, combined in place)."""
    keep = grid != values[0]
    for value in values[1:]:
        keep &= grid != value
    return keep


def _check_known_values(values: np.ndarray, classes: list[OutputClass]) -> None:
    if not classes:
        return
    known = {c.value for c in classes}
    unknown = sorted(set(np.unique(values).tolist()) - known)
    if unknown:
        raise ValidationFailed(
            f"mask: values {unknown} are not among the model's classes {sorted(known)}",
            hint="pass them as nodata or skip_values, or give the classes they stand for",
        )


def _as_probabilities(
    probabilities: np.ndarray | None, shape: tuple[int, ...], classes: list[OutputClass]
) -> np.ndarray | None:
    if probabilities is None:
        return None
    probs = np.asarray(probabilities)
    if not np.issubdtype(probs.dtype, np.floating):
        raise ValidationFailed(
            f"probabilities: dtype {probs.dtype}; expected floats between 0 and 1"
        )
    if probs.shape == shape:
        return probs
    if probs.ndim == 3 and probs.shape[1:] == shape and probs.shape[0] == len(classes):
        return probs
    expected = f"{shape} or ({len(classes)}, *{shape}) with one band per class"
    raise ValidationFailed(
        f"probabilities: shape {probs.shape} does not match the mask; expected {expected}"
    )


def _mean_confidence(
    grid: np.ndarray, value: int, confidence: np.ndarray | None, band_of: dict[int, int]
) -> float | None:
    """Mean model confidence over the class's pixels in the mask (before cleaning)."""
    if confidence is None:
        return None
    band = confidence if confidence.ndim == 2 else confidence[band_of[value]]
    where = grid == value
    count = np.count_nonzero(where)
    if count == 0:
        return None
    return float(np.sum(band, where=where, dtype=np.float64) / count)


def _clipped(
    geoms: np.ndarray, areas: np.ndarray, clip: shapely.Geometry, precision: int
) -> tuple[np.ndarray, np.ndarray]:
    """``geoms`` (lon/lat MultiPolygons) cut to ``clip``, and their areas scaled to match.

    An area keeps the measure :meth:`Georeference.areas_m2` chose for the mask's CRS: it is
    multiplied by the share of the geodesic area the clip left, so a class wholly inside
    ``clip`` keeps its area to the last digit.
    """
    shapely.prepare(clip)
    inside = shapely.contains(clip, geoms)
    if inside.all():
        return geoms, areas
    geoms, areas = geoms.copy(), areas.astype(float)
    for index in np.flatnonzero(~inside):
        cut = shapely.intersection(geoms[index], clip)
        cut = shapely.transform(cut, lambda xy: np.round(xy, precision))
        cut = _repair(np.array([_as_multipolygon(cut)]))[0]
        before = geodesic_area_m2(geoms[index])
        after = geodesic_area_m2(cut) if not cut.is_empty else 0.0
        geoms[index] = shapely.orient_polygons(cut)
        areas[index] = areas[index] * (after / before) if before > 0 else 0.0
    return geoms, areas


def _repair(geoms: np.ndarray) -> np.ndarray:
    """Make valid the rare geometry that rounding to ``precision`` made invalid."""
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        fixed = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
        geoms = geoms.copy()
        geoms[invalid] = shapely.orient_polygons([_as_multipolygon(g) for g in fixed])
    return geoms


def _as_multipolygon(geom: shapely.Geometry) -> shapely.MultiPolygon:
    parts = shapely.get_parts(geom)
    polygons = parts[shapely.get_type_id(parts) == shapely.GeometryType.POLYGON]
    return shapely.multipolygons(polygons)


def vectorize_payload(
    decoded: DecodedMask, options: VectorizeOptions | Mapping[str, Any] | None = None
) -> list[ClassPolygons]:
    """:func:`vectorize` of a decoded model-component payload (the transformer's input)."""
    return vectorize(
        decoded.mask,
        decoded.transform,
        decoded.crs,
        classes=decoded.classes,
        probabilities=decoded.probabilities,
        nodata=decoded.nodata,
        options=options,
    )
