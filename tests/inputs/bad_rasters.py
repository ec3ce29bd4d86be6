"""Small generators of hostile GeoTIFFs, written with rasterio into a temporary folder.

Each case is a function ``(folder) -> path``; large ones are sparse (tiled, no tile written),
so a 4096 x 4096 x 13 bomb or a 100000 x 100000 header costs kilobytes on disk.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine, from_origin

UTM = "EPSG:32630"
GOOD = {"crs": UTM, "transform": from_origin(500000, 4200000, 10, 10)}


def write(
    path: Path,
    *,
    width: int = 64,
    height: int = 64,
    count: int = 2,
    dtype: str = "int16",
    data: bool = True,
    **profile: Any,
) -> Path:
    """A GeoTIFF with bands named B1..Bn; without ``data`` it is sparse (nothing written)."""
    options: dict[str, Any] = {**GOOD, **profile}
    if not data:
        options.update(tiled=True, blockxsize=256, blockysize=256, sparse_ok=True)
        options.setdefault("compress", "deflate")
        if width * height * count > 2**31:
            options["bigtiff"] = "YES"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver="GTiff", width=width, height=height, count=count, dtype=dtype,
            **options,
        ) as dst:  # fmt: skip
            for band in range(1, count + 1):
                dst.set_band_description(band, f"B{band}")
            if data:
                values = np.arange(width * height * count).reshape(count, height, width)
                dst.write(values.astype(dtype))
    return path


def identity_transform(folder: Path) -> Path:
    return write(folder / "identity.tif", transform=Affine.identity())


def no_crs(folder: Path) -> Path:
    return write(folder / "nocrs.tif", crs=None)


def gcps_only(folder: Path) -> Path:
    path = write(folder / "gcps.tif", crs=None, transform=Affine.identity())
    gcps = [GroundControlPoint(0, 0, -3.0, 40.0), GroundControlPoint(64, 64, -2.9, 39.9)]
    with rasterio.open(path, "r+") as dst:
        dst.gcps = (gcps, rasterio.crs.CRS.from_epsg(4326))
    return path


def degenerate_transform(folder: Path) -> Path:
    return write(folder / "degenerate.tif", transform=Affine(0.0, 0.0, 10.0, 0.0, 0.0, 20.0))


def latitude_150_200(folder: Path) -> Path:
    return write(folder / "lat150.tif", crs="EPSG:4326", transform=from_origin(10, 200, 0.5, 0.8))


def latitude_200_only(folder: Path) -> Path:
    return write(folder / "lat200.tif", crs="EPSG:4326", transform=from_origin(10, 201, 0.01, 0.01))


def longitude_400(folder: Path) -> Path:
    return write(folder / "lon400.tif", crs="EPSG:4326", transform=from_origin(400, 40, 0.01, 0.01))


def complex64(folder: Path) -> Path:
    return write(folder / "complex64.tif", dtype="complex64")


def complex_int16(folder: Path) -> Path:
    return write(folder / "cint16.tif", dtype="complex_int16", data=False)


def complex128(folder: Path) -> Path:
    return write(folder / "complex128.tif", dtype="complex128", count=1)


def bomb_4096x4096x13(folder: Path) -> Path:
    return write(folder / "bomb.tif", width=4096, height=4096, count=13, data=False)


def header_100000x100000(folder: Path) -> Path:
    return write(folder / "huge.tif", width=100_000, height=100_000, count=1, dtype="uint8",
                 data=False)  # fmt: skip


def truncated(folder: Path) -> Path:
    whole = write(folder / "whole.tif", width=256, height=256, compress="deflate")
    data = whole.read_bytes()
    path = folder / "truncated.tif"
    path.write_bytes(data[: len(data) // 2])
    return path


def not_a_tiff(folder: Path) -> Path:
    path = folder / "image.tif"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    return path


def tiff_magic_garbage(folder: Path) -> Path:
    path = folder / "garbage.tif"
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    return path


def empty_file(folder: Path) -> Path:
    path = folder / "empty.tif"
    path.write_bytes(b"")
    return path


CASES: dict[str, tuple[Callable[[Path], Path], list[str]]] = {
    # name: (generator, fragments the refusal must name besides the file)
    "identity-transform": (identity_transform, ["not georeferenced"]),
    "no-crs": (no_crs, ["no CRS"]),
    "gcps-only": (gcps_only, ["no CRS"]),
    "degenerate-transform": (degenerate_transform, ["degenerate geotransform"]),
    "latitude-150-to-200": (latitude_150_200, ["latitudes", "[-90, 90]"]),
    "latitude-200": (latitude_200_only, ["latitudes", "[-90, 90]"]),
    "longitude-400": (longitude_400, ["longitudes", "[-180, 180]"]),
    "complex64": (complex64, ["complex", "complex64"]),
    "complex-int16": (complex_int16, ["complex"]),
    "complex128": (complex128, ["complex"]),
    "bomb-4096x4096x13": (bomb_4096x4096x13, ["13 band(s)", "decodes to"]),
    "header-100000x100000": (header_100000x100000, ["100000 x 100000", "decodes to"]),
    "truncated": (truncated, ["truncated"]),
    "not-a-tiff": (not_a_tiff, []),
    "tiff-magic-garbage": (tiff_magic_garbage, []),
    "empty-file": (empty_file, []),
}
