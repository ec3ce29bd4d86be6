"""What a GeoTIFF's header must say before any pixel of it is decoded, checked one way.

Serving requests (``binData`` or a reference), ``geomlops imagery add`` and anything else
that takes a raster from outside read the header first and refuse, naming the file:

- no CRS, or an identity / degenerate transform (pixel coordinates, not places on Earth);
- complex sample types (no model of the platform reads them; GDAL would silently take the
  real part);
- bounds outside longitude [-180, 180] / latitude [-90, 90] in a geographic CRS;
- more decoded bytes (width x height x bands x sample size) than the caller allows. Pixels
  alone are not enough: a 4096 x 4096 file of 13 bands passes a pixel limit and decodes to
  13 times what a one-band file does (a 592 KB request took a model process to 2.3 GB).

The dataset is duck-typed (anything with rasterio's ``width``, ``height``, ``count``,
``dtypes``, ``crs``, ``transform``, ``bounds``), so the kernel imports no raster library.
"""

from __future__ import annotations

import math
from typing import Any

_ITEMSIZE = {
    "uint8": 1, "int8": 1, "uint16": 2, "int16": 2, "uint32": 4, "int32": 4, "float32": 4,
    "uint64": 8, "int64": 8, "float64": 8, "complex64": 8, "complex128": 16, "complex_int16": 4,
    "cint16": 4, "cint32": 8, "cfloat32": 8, "cfloat64": 16, "float16": 2,
}  # fmt: skip


def decoded_bytes(width: int, height: int, dtypes: tuple[str, ...] | list[str]) -> int:
    """Bytes the whole raster takes once decoded: every band, at its own sample size."""
    return sum(width * height * _ITEMSIZE.get(str(d), 8) for d in dtypes)


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def size_problem(src: Any, max_decoded_bytes: int) -> str | None:
    """Why the raster is too large to decode, or None."""
    dtypes = tuple(src.dtypes)
    total = decoded_bytes(src.width, src.height, dtypes)
    if total <= max_decoded_bytes:
        return None
    sample = _ITEMSIZE.get(dtypes[0], 8) if dtypes else 0
    return (
        f"decodes to {_human(total)} ({src.width} x {src.height} pixels x {src.count} band(s) "
        f"x {sample} byte(s)), more than the {_human(max_decoded_bytes)} accepted"
    )


def georeference_problems(src: Any) -> list[str]:
    """Why the raster cannot be placed on Earth (empty when it can)."""
    if src.crs is None:
        return ["has no CRS"]
    transform = src.transform
    if transform.is_identity:
        return ["is not georeferenced (identity transform: pixel coordinates, no geotransform)"]
    if not all(math.isfinite(v) for v in tuple(transform)[:6]) or transform.determinant == 0:
        return [f"has a degenerate geotransform {tuple(transform)[:6]}"]
    problems = []
    if src.crs.is_geographic:
        west, south, east, north = src.bounds
        low, high = min(south, north), max(south, north)
        if low < -90 or high > 90:
            problems.append(
                f"latitudes {low:g} to {high:g} are outside [-90, 90] "
                f"in its geographic CRS {src.crs.to_string()}"
            )
        left, right = min(west, east), max(west, east)
        if left < -180 or right > 180:
            problems.append(
                f"longitudes {left:g} to {right:g} are outside [-180, 180] "
                f"in its geographic CRS {src.crs.to_string()}"
            )
    return problems


def sample_type_problems(src: Any) -> list[str]:
    """Complex (or unknown) sample types, which no model of the platform reads."""
    odd = sorted({str(d) for d in src.dtypes if str(d).startswith(("complex", "c")) or not d})
    if odd:
        return [f"has complex sample type(s) {', '.join(odd)}; real-valued bands are required"]
    return []


def header_problems(src: Any, *, max_decoded_bytes: int) -> list[str]:
    """Every reason to refuse the raster before decoding it (empty when it may be read)."""
    problems = georeference_problems(src) + sample_type_problems(src)
    too_large = size_problem(src, max_decoded_bytes)
    if too_large:
        problems.append(too_large)
    return problems
