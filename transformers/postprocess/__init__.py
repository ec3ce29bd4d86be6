"""Post-processors per output kind, and the one dispatcher that chooses them (DESIGN.md §11).

A model's answer is turned into what the platform publishes by what the model's output *is*
(:class:`geomlops.model.kinds.OutputKind`, read from its ``mlm:output``):

- ``class-mask`` → class polygons (:mod:`geomlops.transformers.raster_to_vector`) and
  per-class areas (:mod:`.class_mask`);
- ``probability`` / ``continuous`` → zonal statistics, and with a declared
  ``geomlops:threshold`` a threshold mask, its polygons and the area above it
  (:mod:`.float_raster`);
- ``chip-class`` → one labelled footprint per chip (:mod:`.chip_class`).

:func:`to_raster` turns the model's per-pixel scores into the raster a kind publishes, and
:func:`postprocess` runs the kind's processor: the Seldon output transformer and batch
inference call both, so an online answer and a batch one cannot differ. Pure: arrays in,
features and statistics out.
"""

from __future__ import annotations

from geomlops.transformers.postprocess.chip_class import ChipLabel, label_chips
from geomlops.transformers.postprocess.dispatch import (
    ChipPrediction,
    Processed,
    RasterPrediction,
    postprocess,
)
from geomlops.transformers.postprocess.float_raster import (
    band_statistics,
    threshold_mask,
    zonal_statistics,
)
from geomlops.transformers.postprocess.rasters import (
    FLOAT_NODATA,
    raster_dtype,
    raster_nodata,
    to_raster,
)

__all__ = [
    "FLOAT_NODATA",
    "ChipLabel",
    "ChipPrediction",
    "Processed",
    "RasterPrediction",
    "band_statistics",
    "label_chips",
    "postprocess",
    "raster_dtype",
    "raster_nodata",
    "threshold_mask",
    "to_raster",
    "zonal_statistics",
]
