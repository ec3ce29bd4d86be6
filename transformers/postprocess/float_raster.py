"""Probability and continuous outputs: zonal statistics, a threshold mask and its polygons.

The raster is one float per pixel with NaN for no data. Zonal statistics are over the valid
pixels (the AOI's, once the caller has set the rest to NaN); percentiles are NumPy's linear
interpolation. The area above threshold counts pixels ``>= threshold`` times the pixel area
(the same rule the threshold mask and its polygons follow).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geomlops.errors import ValidationFailed
from geomlops.ml.raster import MASK_NODATA

PERCENTILES = (10, 50, 90)


def _valid(values: np.ndarray) -> np.ndarray:
    grid = np.asarray(values)
    if grid.ndim != 2 or not np.issubdtype(grid.dtype, np.floating):
        raise ValidationFailed(
            f"values: expected a 2-D float raster, got {grid.dtype} of shape {grid.shape}"
        )
    return grid[np.isfinite(grid)]


def zonal_statistics(
    values: np.ndarray, pixel_area_m2: float, threshold: float | None = None
) -> dict[str, Any]:
    """Mean, min, max, p10/p50/p90 and the valid pixel count; above-threshold figures too.

    A raster without a valid pixel gives ``valid_pixels: 0`` and None for every statistic.
    """
    valid = _valid(values).astype(np.float64)
    stats: dict[str, Any] = {"valid_pixels": int(valid.size)}
    if valid.size:
        p10, p50, p90 = np.percentile(valid, PERCENTILES)
        stats.update(
            mean=round(float(valid.mean()), 6),
            min=round(float(valid.min()), 6),
            max=round(float(valid.max()), 6),
            p10=round(float(p10), 6),
            p50=round(float(p50), 6),
            p90=round(float(p90), 6),
        )
    else:
        stats.update(mean=None, min=None, max=None, p10=None, p50=None, p90=None)
    if threshold is not None:
        above = int(np.count_nonzero(valid >= threshold))
        stats.update(
            threshold=threshold,
            above_threshold_pixels=above,
            above_threshold_area_m2=round(above * pixel_area_m2, 2),
            above_threshold_area_km2=round(above * pixel_area_m2 / 1e6, 6),
            above_threshold_fraction=round(above / valid.size, 6) if valid.size else None,
        )
    return stats


def threshold_mask(values: np.ndarray, threshold: float, class_value: int = 1) -> np.ndarray:
    """``uint8`` mask: ``class_value`` where value >= threshold, 0 below, 255 no data."""
    grid = np.asarray(values)
    if grid.ndim != 2:
        raise ValidationFailed(f"values: expected a 2-D raster, got shape {grid.shape}")
    if not 0 <= class_value < MASK_NODATA:
        raise ValidationFailed(f"class value {class_value} does not fit a uint8 mask")
    mask = np.zeros(grid.shape, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        mask[grid >= threshold] = class_value
    mask[~np.isfinite(grid)] = MASK_NODATA
    return mask


def band_statistics(values: np.ndarray) -> dict[str, Any]:
    """STAC ``raster:bands`` statistics of a float raster (what a colour ramp is scaled by)."""
    grid = np.asarray(values)
    valid = _valid(grid).astype(np.float64)
    if not valid.size:
        return {"valid_percent": 0.0}
    return {
        "minimum": round(float(valid.min()), 6),
        "maximum": round(float(valid.max()), 6),
        "mean": round(float(valid.mean()), 6),
        "stddev": round(float(valid.std()), 6),
        "valid_percent": round(100.0 * valid.size / grid.size, 4),
    }
