"""GeoTIFF input and output for model packages: bands chosen by name, outputs written whole.

Bands are selected by their description (``B4``, ``VV``), never by position, because the
same model must run on files that order or subset bands differently; a missing band or a
file without a CRS is refused up front, naming the file, rather than producing a mask in
the wrong place. Outputs are written under a temporary name and renamed into place, so a
reader never sees half a mask.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.session import DummySession
from rasterio.transform import Affine

from geomlops.errors import GeomlopsError, NotFoundError, ValidationFailed

MASK_NODATA = 255


def local_gdal() -> rasterio.Env:
    """A GDAL environment for rasters already in memory: no cloud credentials looked up.

    Without an explicit session, rasterio builds one from the ``AWS_*`` variables for every
    ``rasterio.open`` or ``rasterio.features`` call outside an environment: a new boto3
    session each time, 20 ms of a serving request whose pod has S3 credentials in its
    environment. The serving components get their rasters as bytes, so they never need one.
    """
    return rasterio.Env(session=DummySession())


@dataclass(frozen=True)
class Raster:
    """Pixels (bands x height x width) and where they are on Earth."""

    data: np.ndarray
    crs: CRS
    transform: Affine

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return self.data.shape[-2], self.data.shape[-1]


def _open(path: Path | str) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except RasterioIOError as error:
        if not str(path).startswith(("/vsi", "s3://", "http")) and not Path(path).exists():
            raise NotFoundError(f"input raster {path} does not exist") from None
        raise GeomlopsError(f"cannot read {path} as a raster: {error}") from None


def read_bands(path: Path | str, bands: Sequence[str]) -> Raster:
    """Read ``bands`` (by GeoTIFF band description) from ``path``, in that order, as float32.

    Nodata pixels of the file (its nodata tag) become NaN so downstream code has one
    representation of "no value".
    """
    bands = list(bands)
    with _open(path) as src:
        if src.crs is None:
            raise ValidationFailed(
                f"{path} has no CRS: a prediction could not be placed on the map",
                hint="write the CRS into the GeoTIFF (e.g. `rio edit-info --crs EPSG:4326`)",
            )
        names = list(src.descriptions)
        missing = [b for b in bands if b not in names]
        if missing:
            raise ValidationFailed(
                f"{path} lacks band(s) {', '.join(missing)} that the model reads",
                problems=[f"the file's band descriptions are {names}", f"the model reads {bands}"],
                hint="provide a GeoTIFF whose band descriptions name every band of mlm:input",
            )
        indexes = [names.index(b) + 1 for b in bands]
        data = src.read(indexes, out_dtype="float32")
        if src.nodata is not None and not np.isnan(src.nodata):
            data[data == src.nodata] = np.nan
        return Raster(data=data, crs=src.crs, transform=src.transform)


def read_label(path: Path | str) -> Raster:
    """Read the first band of a label raster as int16 (class values, e.g. -1 for no data)."""
    with _open(path) as src:
        return Raster(data=src.read(1).astype("int16"), crs=src.crs, transform=src.transform)


def write_raster(
    path: Path,
    data: np.ndarray,
    like: Raster,
    *,
    nodata: float,
    descriptions: list[str] | None = None,
    tags: dict[str, Any] | None = None,
) -> Path:
    """Write ``data`` (bands x H x W, or H x W) georeferenced like ``like``, atomically."""
    if data.ndim == 2:
        data = data[np.newaxis]
    height, width = data.shape[1:]
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": like.crs,
        "transform": like.transform,
        "nodata": nodata,
        "compress": "deflate",
        "tiled": height >= 256 and width >= 256,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique hidden name next to the target, so the rename is atomic (same filesystem).
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        with rasterio.open(temporary, "w", **profile) as dst:
            dst.write(data)
            for index, description in enumerate(descriptions or [], start=1):
                dst.set_band_description(index, description)
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
