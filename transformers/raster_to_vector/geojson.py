"""RFC 7946 GeoJSON from vectorised classes, and an atomic file writer.

RFC 7946 wants lon/lat in WGS84 (done by :mod:`.georef`), exteriors counter-clockwise and
holes clockwise (done by ``shapely.orient_polygons`` in :mod:`.vectorize`) and no more
coordinate precision than the data has (rounded there too). Coordinates are serialised by
GEOS and parsed back as floats, so JSON writers print the rounded numbers.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely
from affine import Affine

from geomlops.errors import GeomlopsError
from geomlops.transformers.raster_to_vector.vectorize import (
    ClassPolygons,
    VectorizeOptions,
    vectorize,
)

GeometryWriter = Callable[[shapely.Geometry], Any]
"""How a feature's geometry is put in the output: a dict by default, or anything a JSON
writer embeds as it is (the Seldon transformer hands orjson GEOS's text unparsed)."""


def parsed_geometry(geometry: shapely.Geometry) -> dict[str, Any]:
    """The geometry as a GeoJSON dict: GEOS's text parsed back into (rounded) floats."""
    return json.loads(shapely.to_geojson(geometry))


def unparsed_geometry(geometry: shapely.Geometry) -> orjson.Fragment:
    """GEOS's GeoJSON text, which orjson writers embed as it is.

    The Seldon app's writer and :func:`write_geojson` are such writers. Parsing the text
    into floats only to print them again cost ~6 ms of a 512 x 512 chip's answer, and held
    ~75 bytes a vertex as Python objects where the text takes ~25: batch inference's
    publish step writes a whole scene's polygons this way.
    """
    return orjson.Fragment(shapely.to_geojson(geometry))


def feature(polygons: ClassPolygons, geometry: GeometryWriter = parsed_geometry) -> dict[str, Any]:
    """One GeoJSON Feature: the class's MultiPolygon, name, value, area and confidence."""
    properties: dict[str, Any] = {
        "class_name": polygons.name,
        "class_value": polygons.value,
        "area_m2": round(polygons.area_m2, 2),
    }
    if polygons.mean_confidence is not None:
        properties["mean_confidence"] = round(polygons.mean_confidence, 4)
    return {
        "type": "Feature",
        "geometry": geometry(polygons.geometry),
        "properties": properties,
    }


def feature_collection(
    classes: Iterable[ClassPolygons], geometry: GeometryWriter = parsed_geometry
) -> dict[str, Any]:
    """A FeatureCollection with one Feature per class; no classes give no features."""
    return {"type": "FeatureCollection", "features": [feature(c, geometry) for c in classes]}


def mask_to_geojson(
    mask: np.ndarray,
    transform: Affine | Sequence[float],
    crs: Any,
    *,
    classes: Iterable[Any] | Mapping[str, Any] | None = None,
    probabilities: np.ndarray | None = None,
    nodata: float | None = None,
    options: VectorizeOptions | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`~.vectorize.vectorize` followed by :func:`feature_collection`."""
    return feature_collection(
        vectorize(
            mask,
            transform,
            crs,
            classes=classes,
            probabilities=probabilities,
            nodata=nodata,
            options=options,
        )
    )


def write_geojson(collection: dict[str, Any], path: str | Path) -> Path:
    """Write ``collection`` to ``path`` atomically: readers see the old file or the new one.

    Geometries may be :func:`unparsed_geometry` fragments. NaN and infinite numbers are
    written as ``null`` (orjson), never as the invalid JSON tokens ``NaN``/``Infinity``.
    The JSON goes to a temporary file in the same directory, is flushed to disk, and
    replaces ``path`` in one rename; on any error the temporary file is removed.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise GeomlopsError(
            f"cannot write {target}: directory {target.parent} does not exist",
            hint="create the directory first or choose another output path",
        )
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(orjson.dumps(collection))
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).chmod(0o644)
        Path(temporary).replace(target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
