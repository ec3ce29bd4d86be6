"""Source scenes: GeoTIFF → Cloud Optimized GeoTIFF → STAC item with projection/raster/eo.

Everything here is local and checked before anything is uploaded or written: a file with no
CRS or no georeference is refused with a message naming it. The footprint is the raster's
bounds, densified and reprojected to EPSG:4326 in one call, so edges stay true in
projections where straight lines curve. Bands are named from the file (descriptions, else
colour interpretation) and enriched from a sensor profile (:mod:`geomlops.catalog.sensors`).
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pystac
import rasterio
import shapely
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape

from geomlops.catalog.collections import IMAGERY
from geomlops.catalog.sensors import PROFILES, SensorProfile, recognise
from geomlops.errors import ValidationFailed
from geomlops.model import properties as prop
from geomlops.raster_checks import header_problems

IMAGE_ASSET = "image"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_HLS_DATE = re.compile(r"\.(\d{4})(\d{3})(?:T(\d{6}))?\.")  # HLS names: .YYYYDDD[THHMMSS].
_COLOR_NAMES = {ColorInterp.red: "red", ColorInterp.green: "green", ColorInterp.blue: "blue"}


@dataclass(frozen=True)
class SceneFacts:
    """What a GeoTIFF says about itself, read once."""

    path: Path
    crs: rasterio.crs.CRS
    transform: rasterio.Affine
    width: int
    height: int
    bounds: tuple[float, float, float, float]
    dtypes: tuple[str, ...]
    nodata: float | None
    descriptions: tuple[str | None, ...]
    colorinterp: tuple[ColorInterp, ...]
    tags: dict[str, str]


def item_id_for(path: Path) -> str:
    """A STAC id from a file name: its stem with anything but ``A-Za-z0-9._-`` as ``_``."""
    return _ID_UNSAFE.sub("_", path.stem).strip("_") or "scene"


def read_facts(path: Path, max_decoded_bytes: int | None = None) -> SceneFacts:
    """Read a GeoTIFF's header; refuse one that is not georeferenced, complex or too large.

    The rules are the kernel's (:mod:`geomlops.raster_checks`), the same serving applies;
    ``max_decoded_bytes`` defaults to ``GEOMLOPS_IMAGERY_MAX_DECODED_BYTES``.
    """
    if max_decoded_bytes is None:
        from geomlops.settings import get_settings

        max_decoded_bytes = get_settings().catalog.imagery_max_decoded_bytes
    try:
        with warnings.catch_warnings():
            # Reported below as an error naming the file, not as a warning on the way.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                problems = header_problems(src, max_decoded_bytes=max_decoded_bytes)
                if problems:
                    gcps, _ = src.gcps
                    hint = (
                        "it has only ground control points: warp it to a grid first "
                        "(e.g. `gdalwarp`)"
                        if gcps
                        else "fix the file: assign a CRS and geotransform (e.g. `rio edit-info "
                        "--crs EPSG:4326 --transform ...`), keep real-valued bands, cut it into "
                        "smaller scenes, or raise GEOMLOPS_IMAGERY_MAX_DECODED_BYTES"
                    )
                    raise ValidationFailed(
                        f"{path}: {problems[0]}", problems=problems[1:], hint=hint
                    )
                return SceneFacts(
                    path=path,
                    crs=src.crs,
                    transform=src.transform,
                    width=src.width,
                    height=src.height,
                    bounds=tuple(src.bounds),
                    dtypes=tuple(src.dtypes),
                    nodata=src.nodata,
                    descriptions=tuple(src.descriptions),
                    colorinterp=tuple(src.colorinterp),
                    tags=dict(src.tags()),
                )
    except RasterioIOError as exc:
        raise ValidationFailed(f"{path}: not a readable raster ({exc})") from exc


def scene_datetime(facts: SceneFacts, given: datetime | None) -> datetime:
    """Acquisition time: as given, else the TIFF's DATETIME tag, else an HLS-style name."""
    if given is not None:
        return given if given.tzinfo else given.replace(tzinfo=UTC)
    tag = facts.tags.get("TIFFTAG_DATETIME")
    if tag:
        try:
            return datetime.strptime(tag, "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            pass
    match = _HLS_DATE.search(facts.path.name)
    if match:
        year, doy, hms = match.groups()
        stamp = datetime.strptime(f"{year}{doy}{hms or '000000'}", "%Y%j%H%M%S")
        return stamp.replace(tzinfo=UTC)
    raise ValidationFailed(
        f"{facts.path}: no acquisition time in the file (no TIFFTAG_DATETIME, no dated name)",
        hint="pass --datetime, e.g. --datetime 2019-09-18T10:50:00Z",
    )


def footprint(facts: SceneFacts) -> dict[str, Any]:
    """The raster's bounds as a GeoJSON polygon in EPSG:4326."""
    west, south, east, north = facts.bounds
    native = shapely.segmentize(
        box(west, south, east, north), max((east - west), (north - south)) / 16
    )
    geometry = transform_geom(facts.crs, "EPSG:4326", mapping(native))
    return mapping(shapely.set_precision(shape(geometry), 1e-9))


def _profile(facts: SceneFacts, sensor: str | None) -> SensorProfile | None:
    if sensor is None:
        return recognise(facts.descriptions)
    profile = PROFILES.get(sensor)
    if profile is None:
        raise ValidationFailed(
            f"unknown sensor profile {sensor!r}", hint=f"known: {', '.join(sorted(PROFILES))}"
        )
    if len(profile.bands) != len(facts.dtypes):
        raise ValidationFailed(
            f"{facts.path}: has {len(facts.dtypes)} bands, sensor {sensor} has {len(profile.bands)}"
        )
    return profile


def _eo_bands(facts: SceneFacts, profile: SensorProfile | None) -> list[Band]:
    if profile is not None:
        return [
            Band.create(
                name=b.name, common_name=b.common_name, center_wavelength=b.center_wavelength
            )
            for b in profile.bands
        ]
    bands = []
    for index, (description, colour) in enumerate(
        zip(facts.descriptions, facts.colorinterp, strict=True), start=1
    ):
        name = description or _COLOR_NAMES.get(colour) or f"b{index}"
        bands.append(Band.create(name=name, common_name=_COLOR_NAMES.get(colour)))
    return bands


def _raster_bands(facts: SceneFacts) -> list[RasterBand]:
    resolution = abs(facts.transform.a)
    nodata: Any = facts.nodata
    if nodata is not None and math.isnan(nodata):
        nodata = "nan"
    return [
        RasterBand.create(nodata=nodata, data_type=DataType(dtype), spatial_resolution=resolution)
        for dtype in facts.dtypes
    ]


def file_checksum(path: Path) -> str:
    """sha2-256 multihash (hex), as the file extension records checksums."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "1220" + digest.hexdigest()


def build_scene_item(
    cog: Path,
    *,
    item_id: str,
    href: str,
    when: datetime,
    sensor: str | None = None,
    source_name: str | None = None,
) -> pystac.Item:
    """The imagery item for a COG at ``href`` (read from the local copy ``cog``)."""
    facts = read_facts(cog)
    geometry = footprint(facts)
    profile = _profile(facts, sensor)
    props: dict[str, Any] = {}
    if source_name:
        props["title"] = source_name
    if profile is not None:
        props[prop.SENSOR] = profile.name
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=list(shape(geometry).bounds),
        datetime=when,
        properties=props,
        collection=IMAGERY,
    )
    asset = pystac.Asset(href=href, media_type=pystac.MediaType.COG, roles=["data"])
    item.add_asset(IMAGE_ASSET, asset)

    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = facts.crs.to_epsg()
    proj.apply(
        epsg=epsg,
        wkt2=None if epsg else facts.crs.to_wkt(),
        shape=[facts.height, facts.width],
        transform=list(facts.transform)[:6],
        bbox=list(facts.bounds),
    )
    RasterExtension.ext(asset, add_if_missing=True).apply(bands=_raster_bands(facts))
    EOExtension.ext(asset, add_if_missing=True).apply(bands=_eo_bands(facts, profile))
    file_ext = FileExtension.ext(asset, add_if_missing=True)
    file_ext.size = cog.stat().st_size
    file_ext.checksum = file_checksum(cog)
    return item
