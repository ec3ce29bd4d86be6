"""Raster-to-vector: a model's class mask as clean, RFC 7946 GeoJSON polygons per class.

Used by the Seldon output transformer (online inference) and by batch inference, so both
produce the same polygons. Pure library: no I/O beyond :func:`read_mask` and
:func:`write_geojson`.

Example::

    from geomlops.transformers.raster_to_vector import mask_to_geojson, read_mask

    raster = read_mask("water_mask.tif")
    collection = mask_to_geojson(
        raster.mask, raster.transform, raster.crs, nodata=raster.nodata,
        classes=[{"value": 0, "name": "not_water"}, {"value": 1, "name": "water"}],
        options={"min_area_m2": 500, "simplify_tolerance_m": 10, "skip_values": [0]},
    )
"""

from __future__ import annotations

from geomlops.transformers.raster_to_vector.geojson import (
    feature,
    feature_collection,
    mask_to_geojson,
    unparsed_geometry,
    write_geojson,
)
from geomlops.transformers.raster_to_vector.io import MaskRaster, read_mask
from geomlops.transformers.raster_to_vector.vectorize import (
    ClassPolygons,
    VectorizeOptions,
    vectorize,
    vectorize_payload,
)

__all__ = [
    "ClassPolygons",
    "MaskRaster",
    "VectorizeOptions",
    "feature",
    "feature_collection",
    "mask_to_geojson",
    "read_mask",
    "unparsed_geometry",
    "vectorize",
    "vectorize_payload",
    "write_geojson",
]
