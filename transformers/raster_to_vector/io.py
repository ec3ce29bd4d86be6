"""Reading a class mask and its georeferencing from a GeoTIFF."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError

from geomlops.errors import NotFoundError, ValidationFailed


@dataclass(frozen=True)
class MaskRaster:
    """A class mask with what :func:`~.vectorize.vectorize` needs to place it."""

    mask: np.ndarray
    transform: Affine
    crs: CRS
    nodata: float | None


def read_mask(path: str | Path, *, band: int = 1, nodata: float | None = None) -> MaskRaster:
    """Read band ``band`` of a mask GeoTIFF.

    ``nodata`` overrides the file's own no-data value, for files (like Sen1Floods11's hand
    labels, which use -1) that do not declare it.
    """
    source = Path(path)
    if not source.is_file():
        raise NotFoundError(f"mask file {source} does not exist")
    try:
        with rasterio.open(source) as dataset:
            if not 1 <= band <= dataset.count:
                raise ValidationFailed(
                    f"{source}: band {band} does not exist; the file has {dataset.count}"
                )
            if dataset.crs is None:
                raise ValidationFailed(
                    f"{source}: the raster has no CRS, so its polygons cannot be placed",
                    hint="write the mask with the CRS of the image it was predicted from",
                )
            return MaskRaster(
                mask=dataset.read(band),
                transform=dataset.transform,
                crs=dataset.crs,
                nodata=nodata if nodata is not None else dataset.nodatavals[band - 1],
            )
    except RasterioIOError as error:
        raise ValidationFailed(f"{source}: not a readable raster ({error})") from None
