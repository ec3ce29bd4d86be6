"""The model's per-pixel scores → the raster its output kind publishes.

A class mask is the argmax of one score per class (``uint8``, :data:`MASK_NODATA` where no
data); a probability or continuous value is its one channel as ``float32`` with NaN where no
data. Serving and batch inference both make their rasters here, so both write the same one.
"""

from __future__ import annotations

import numpy as np

from geomlops.errors import ValidationFailed
from geomlops.ml.raster import MASK_NODATA
from geomlops.model.kinds import OutputKind

FLOAT_NODATA = float("nan")
"""No data in a probability or continuous raster."""


def raster_dtype(kind: OutputKind) -> str:
    """The dtype of the raster a rasterised kind publishes."""
    if kind is OutputKind.CLASS_MASK:
        return "uint8"
    if kind.float_raster:
        return "float32"
    raise ValidationFailed(f"output kind {kind.value!r} has no per-pixel raster")


def raster_nodata(kind: OutputKind) -> float:
    """The no-data value of that raster (255 for a mask, NaN for a float raster)."""
    return float(MASK_NODATA) if raster_dtype(kind) == "uint8" else FLOAT_NODATA


def to_raster(kind: OutputKind, scores: np.ndarray) -> np.ndarray:
    """The raster of ``scores`` (K x H x W, the model's output blended over a tile).

    No data is not applied here: the caller knows which pixels lack data, and sets them to
    :func:`raster_nodata` (a copy is returned, so doing it in place is safe).
    """
    if scores.ndim != 3:
        raise ValidationFailed(f"scores: expected K x H x W, got shape {scores.shape}")
    if kind is OutputKind.CLASS_MASK:
        if scores.shape[0] == 1:  # an integer mask, blended as floats
            return np.rint(scores[0]).clip(0, MASK_NODATA - 1).astype("uint8")
        return scores.argmax(axis=0).astype("uint8")
    if kind.float_raster:
        if scores.shape[0] != 1:
            raise ValidationFailed(
                f"scores: a {kind.value} output has one channel, the model gave {scores.shape[0]}"
            )
        return scores[0].astype("float32", copy=True)
    raise ValidationFailed(f"output kind {kind.value!r} has no per-pixel raster")
