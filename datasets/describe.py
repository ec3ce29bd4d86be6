"""What a dataset's files are: count, size, per-file md5, footprint and time range.

The md5s are DVC's own (a directory's checksum is the md5 of its sorted file listing), so
the checksum computed here from bytes on disk can be compared with the one a version
recorded without trusting DVC's cache or the remote.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# TIFF/GDAL metadata keys that carry an acquisition time, most specific first.
_TIME_TAGS = ("ACQUISITION_DATETIME", "ACQUISITIONDATETIME", "DATETIME", "TIFFTAG_DATETIME")
_CHUNK = 1 << 20


@dataclass
class FileSummary:
    """Counts and checksums of the files under a directory, plus what georeferencing says."""

    files: dict[str, str] = field(default_factory=dict)
    """relpath (posix) -> md5 hex."""
    size: int = 0
    bbox: tuple[float, float, float, float] | None = None
    """Union of the georeferenced files' bounds, EPSG:4326."""
    start: datetime | None = None
    end: datetime | None = None
    georeferenced: int = 0

    @property
    def file_count(self) -> int:
        return len(self.files)

    @property
    def dir_md5(self) -> str:
        """DVC's checksum of the directory (without the ``.dir`` suffix)."""
        return dir_md5(self.files)


def file_md5(path: Path) -> str:
    """md5 of a file's bytes, as DVC computes it for a file."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dir_md5(files: dict[str, str]) -> str:
    """DVC's directory checksum: md5 of the JSON listing sorted by relpath (dvc-data Tree)."""
    listing = [{"md5": md5, "relpath": rel} for rel, md5 in sorted(files.items())]
    payload = json.dumps(listing, sort_keys=True).encode("utf-8")
    return hashlib.md5(payload, usedforsecurity=False).hexdigest()


def summarise(root: Path, *, geo: bool = True) -> FileSummary:
    """Walk ``root``: md5 and size of every file; footprint and time of rasters."""
    summary = FileSummary()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        summary.files[rel] = file_md5(path)
        summary.size += path.stat().st_size
        if geo:
            _add_georeference(summary, path)
    return summary


def _add_georeference(summary: FileSummary, path: Path) -> None:
    if path.suffix.lower() not in {".tif", ".tiff", ".vrt", ".jp2", ".nc"}:
        return
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.warp import transform_bounds

    try:
        with rasterio.open(path) as source:
            if source.crs is None:
                return
            bounds = transform_bounds(source.crs, "EPSG:4326", *source.bounds, densify_pts=21)
            tags = source.tags()
    except RasterioError as exc:
        log.warning("%s: not read as a raster (%s)", path, exc)
        return
    summary.georeferenced += 1
    if summary.bbox is None:
        summary.bbox = bounds
    else:
        west, south, east, north = summary.bbox
        summary.bbox = (
            min(west, bounds[0]),
            min(south, bounds[1]),
            max(east, bounds[2]),
            max(north, bounds[3]),
        )
    when = _tag_time(tags)
    if when is not None:
        summary.start = min(summary.start or when, when)
        summary.end = max(summary.end or when, when)


def _tag_time(tags: dict[str, Any]) -> datetime | None:
    for key in _TIME_TAGS:
        text = tags.get(key)
        if not text:
            continue
        for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
            try:
                parsed = datetime.strptime(str(text).strip().replace("Z", "+0000"), fmt)
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
