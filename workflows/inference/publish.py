"""Publish a complete run: per-scene mosaic COGs, one GeoJSON, and ``predictions`` items.

Runs only when every planned tile has its record: a run with missing tiles publishes
nothing (its partial tiles stay in the run's ``tiles/`` folder, withheld, until ``geomlops
infer resume`` completes them). Mosaics are assembled window by window on local disk, then
converted to COG; every object is visible in S3 only once wholly written (one PUT or a
completed multipart upload); the items are written last, and ``published.json`` after
them, so the catalog never points at an object that is not there.

The AOI bounds all of it: the tiles' masks already hold no data outside it (the worker
masks by pixel centre), a mosaic covers only the AOI's pixels, polygons are clipped to the
AOI itself, statistics count the AOI's pixels only, and an item's geometry is the AOI ∩ the
scene's footprint (the run's: ∩ the union of its scenes'), its bbox that geometry's.

What is published follows the model output's kind
(:func:`geomlops.transformers.postprocess.postprocess`, the dispatcher serving runs too): a
class mask's mosaic, class polygons and per-class areas; a probability or continuous value's
float32 mosaic (its colour ramp named, ``raster:bands`` statistics), zonal statistics and,
where the output declares a threshold, the polygons above it and their area.

Each prediction item links ``derived_from`` to the model version item and to every source
imagery item, and records its lineage with the processing extension (software versions,
workflow run) plus summary statistics (area per class in km², no-data and cloud area), the
request (AOI document, date range) and the outside-region flag under ``geomlops:``.
"""

from __future__ import annotations

import logging
import math
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import rasterio
import rasterio.enums
import rasterio.shutil
import shapely
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from geomlops import objects
from geomlops.catalog.client import CatalogClient
from geomlops.catalog.collections import IMAGERY, MODELS, PREDICTIONS
from geomlops.catalog.extensions import (
    FILE_SCHEMA,
    PROCESSING_SCHEMA,
    PROJECTION_SCHEMA,
    RASTER_SCHEMA,
)
from geomlops.catalog.imagery import file_checksum
from geomlops.connections import Connections, get_connections
from geomlops.errors import GeomlopsError, ValidationFailed
from geomlops.model import properties as prop
from geomlops.model.kinds import OutputKind
from geomlops.settings import Settings, get_settings
from geomlops.transformers.postprocess import (
    RasterPrediction,
    band_statistics,
    postprocess,
    raster_dtype,
    raster_nodata,
)
from geomlops.transformers.raster_to_vector import unparsed_geometry, write_geojson
from geomlops.workflows.inference.aoi import area_m2, for_item, in_crs, polygonal
from geomlops.workflows.inference.config import InferenceRunConfig, ScenePin, Tile, TileRecord
from geomlops.workflows.inference.progress import PUBLISHED, missing_by_shard
from geomlops.workflows.inference.storage import gdal_env, get_file, put_file

log = logging.getLogger(__name__)

SOFTWARE = ("geomlops", "torch", "rasterio", "rio-cogeo", "shapely")


class OutputsWithheld(GeomlopsError):
    """The run has tiles missing: nothing is published."""


def scene_item_id(run: str, scene: str) -> str:
    """Item id of the prediction of ``scene`` by run ``run`` (the run's own item is ``run``)."""
    return f"{run}-{scene}"


def item_ids(config: InferenceRunConfig) -> dict[str, str]:
    """Item id of each scene's prediction, and of the run's (key ``""``)."""
    ids = {scene.item_id: scene_item_id(config.workflow, scene.item_id) for scene in config.scenes}
    ids[""] = config.workflow
    return ids


def software_versions() -> dict[str, str]:
    """Versions of the software that made a prediction (processing:software)."""
    versions = {name: metadata.version(name) for name in SOFTWARE}
    versions["gdal"] = rasterio.__gdal_version__
    return versions


def _scene_window(config: InferenceRunConfig, scene: ScenePin, tiles: list[Tile]) -> Window:
    """The pixels of the scene the outputs cover: its tiles', within the AOI's bounds.

    Every pixel whose centre lies in the AOI lies in its bounds, rounded outwards to whole
    pixels; a tile reaching beyond them contributes only no data there.
    """
    top = min(t.row for t in tiles)
    left = min(t.col for t in tiles)
    bottom = max(t.row + t.height for t in tiles)
    right = max(t.col + t.width for t in tiles)
    affine = rasterio.Affine(*scene.transform)
    bounds = rasterio.windows.from_bounds(
        *in_crs(shape(config.request.aoi), scene.crs).bounds, transform=affine
    )
    top = max(top, math.floor(bounds.row_off))
    left = max(left, math.floor(bounds.col_off))
    bottom = min(bottom, math.ceil(bounds.row_off + bounds.height))
    right = min(right, math.ceil(bounds.col_off + bounds.width))
    return Window(left, top, max(1, right - left), max(1, bottom - top))


def _part(tile: Tile, window: Window) -> tuple[Window, Window] | None:
    """(window in the tile, window in the mosaic) of the tile's pixels the mosaic covers."""
    top = max(tile.row, int(window.row_off))
    left = max(tile.col, int(window.col_off))
    bottom = min(tile.row + tile.height, int(window.row_off + window.height))
    right = min(tile.col + tile.width, int(window.col_off + window.width))
    if bottom <= top or right <= left:
        return None
    height, width = bottom - top, right - left
    return (
        Window(left - tile.col, top - tile.row, width, height),
        Window(left - window.col_off, top - window.row_off, width, height),
    )


def mosaic(
    conn: Connections, config: InferenceRunConfig, scene: ScenePin, tiles: list[Tile], folder: Path
) -> tuple[Path, Window]:
    """Assemble the scene's tile rasters into one COG on local disk (window by window)."""
    kind = config.model.kind
    nodata = raster_nodata(kind)
    window = _scene_window(config, scene, tiles)
    transform = rasterio.windows.transform(window, rasterio.Affine(*scene.transform))
    plain = folder / f"{scene.item_id}.plain.tif"
    profile = {
        "driver": "GTiff",
        "width": int(window.width),
        "height": int(window.height),
        "count": 1,
        "dtype": raster_dtype(kind),
        "crs": CRS.from_user_input(scene.crs),
        "transform": transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    with rasterio.open(plain, "w", **profile) as dst:
        for tile in tiles:
            part = _part(tile, window)
            if part is None:
                continue
            local = get_file(conn, config.tile_mask_uri(tile.id), folder / f"{tile.id}.tif")
            with rasterio.open(local) as src:
                dst.write(src.read(1, window=part[0]), 1, window=part[1])
            local.unlink()
        if kind is OutputKind.CLASS_MASK:
            dst.set_band_description(1, "class")
            dst.update_tags(classes=",".join(f"{c.value}:{c.name}" for c in config.model.classes))
    cog = folder / f"{scene.item_id}.tif"
    if kind.float_raster:  # blocks no tile wrote read as NaN (the nodata), not zero
        with rasterio.open(plain, "r+") as dst:
            _describe_float_band(dst, config)
        _float_cog(plain, cog)
    else:
        cog_translate(
            str(plain), str(cog), cog_profiles.get("deflate"), in_memory=False, quiet=True,
            nodata=nodata,
        )  # fmt: skip
    plain.unlink()
    valid, errors, _ = cog_validate(str(cog), quiet=True)
    if not valid:
        raise ValidationFailed(f"mosaic of {scene.item_id} is not a valid COG", problems=errors)
    return cog, window


FLOAT_TAGS = {"kind": "output_kind", "colormap": "colormap", "threshold": "threshold"}
"""GDAL metadata names of a float mosaic's kind, colour ramp and threshold (GDAL reads a
``:`` in a name as a separator, so the ``geomlops:`` property names cannot be used)."""


def _describe_float_band(dst: Any, config: InferenceRunConfig) -> None:
    """A float mosaic's band: what it is, its unit, and its colour ramp (for readers).

    A colour table needs integer pixels, so the ramp is named and drawn by readers over the
    band's statistics, which GDAL's COG driver computes (``STATISTICS_*``, see
    :func:`_float_cog`).
    """
    spec = config.model.spec
    dst.set_band_description(1, spec.kind.value)
    dst.colorinterp = [rasterio.enums.ColorInterp.gray]
    if spec.unit:
        dst.set_band_unit(1, spec.unit)
    tags = {FLOAT_TAGS["kind"]: spec.kind.value, FLOAT_TAGS["colormap"]: spec.colormap}
    if spec.threshold is not None:
        tags[FLOAT_TAGS["threshold"]] = str(spec.threshold)
    dst.update_tags(**tags)


def _float_cog(plain: Path, cog: Path) -> None:
    """A float mosaic as a COG through GDAL's COG driver, which writes its statistics.

    rio-cogeo drops band metadata, and a COG updated in place would lose its layout; the
    class masks keep rio-cogeo's profile, so their files are as they always were.
    """
    rasterio.shutil.copy(
        str(plain), str(cog), driver="COG", compress="DEFLATE", statistics="YES",
        overview_resampling="AVERAGE", blocksize=512,
    )  # fmt: skip


def _stats(records: list[TileRecord], config: InferenceRunConfig, pixel_m2: float) -> dict:
    if config.model.kind.float_raster:
        return _float_stats(records, pixel_m2)
    pixels = {c.name: sum(r.pixels.get(c.name, 0) for r in records) for c in config.model.classes}
    nodata = sum(r.nodata_pixels for r in records)
    cloud = sum(r.cloud_pixels for r in records)
    valid = sum(pixels.values())
    stats: dict[str, Any] = {
        f"{name}_area_km2": round(count * pixel_m2 / 1e6, 6) for name, count in pixels.items()
    }
    stats.update(
        nodata_area_km2=round(nodata * pixel_m2 / 1e6, 6),
        cloud_area_km2=round(cloud * pixel_m2 / 1e6, 6),
        valid_pixels=valid,
        tiles=len(records),
    )
    for name, count in pixels.items():
        stats[f"{name}_fraction"] = round(count / valid, 6) if valid else None
    return stats


def _float_stats(records: list[TileRecord], pixel_m2: float) -> dict:
    """A float output's area figures (its zonal statistics come from the mosaic)."""
    nodata = sum(r.nodata_pixels for r in records)
    cloud = sum(r.cloud_pixels for r in records)
    return {
        "nodata_area_km2": round(nodata * pixel_m2 / 1e6, 6),
        "cloud_area_km2": round(cloud * pixel_m2 / 1e6, 6),
        "valid_pixels": sum(r.pixels.get("valid", 0) for r in records),
        "tiles": len(records),
    }


def _pixel_area_m2(scene: ScenePin, footprint: BaseGeometry, window: Window) -> float:
    """Mean ground area of one pixel of the scene (geodesic: works for lon/lat grids too)."""
    return area_m2(footprint) / float(window.width * window.height)


def _footprint(scene: ScenePin, window: Window) -> BaseGeometry:
    """The window of the scene in lon/lat (edges densified: they bend in another CRS)."""
    west, south, east, north = rasterio.windows.bounds(window, rasterio.Affine(*scene.transform))
    native = shapely.segmentize(box(west, south, east, north), max(east - west, north - south) / 8)
    return shape(transform_geom(CRS.from_user_input(scene.crs), "EPSG:4326", mapping(native)))


def _covered(config: InferenceRunConfig, scene: ScenePin) -> BaseGeometry:
    """What a scene's prediction covers: the AOI ∩ the scene's footprint, in lon/lat.

    Simplified to a bounded number of vertices: this is the item's geometry, which every
    search reads (a 200,000-vertex AOI made a 3.2 MB item that slowed them all to 4 s).
    """
    whole = Window(0, 0, scene.width, scene.height)
    covered = polygonal(shapely.intersection(shape(config.request.aoi), _footprint(scene, whole)))
    return for_item(covered, get_settings().inference.item_geometry_vertices)


def _link(stac_url: str, rel: str, collection: str, item_id: str, title: str) -> dict[str, str]:
    return {
        "rel": rel,
        "href": f"{stac_url}/collections/{collection}/items/{quote(item_id, safe='')}",
        "type": "application/geo+json",
        "title": title,
    }


def _common_properties(config: InferenceRunConfig, workflow_runs: list[str]) -> dict[str, Any]:
    model = config.model
    nodata = "NaN" if model.kind.float_raster else "255"
    common = {
        "processing:lineage": (
            f"Predicted by {model.name} version {model.version} ({model.stage}, "
            f"{model.model_uri}) over the scenes linked as derived_from, in tiles of "
            f"{config.tile_size} px blended over {config.overlap} px, in workflow run "
            f"{config.workflow}; pixels without data or under cloud are no data ({nodata})."
        ),
        "processing:software": software_versions(),
        "processing:datetime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "processing:facility": "geomlops-batch-inference",
        prop.WORKFLOW: config.workflow,
        prop.WORKFLOW_RUNS: workflow_runs,
        prop.MODEL: model.name,
        prop.MODEL_VERSION: model.version,
        prop.MODEL_ITEM: model.item_id,
        prop.OUTSIDE_REGION: config.outside_region,
        prop.OUTSIDE_FRACTION: config.request.outside_fraction,
        prop.REQUEST_DATETIME: config.request.datetime,
        prop.REQUEST_AOI: config.request.aoi_uri,
        prop.CLASSES: [{"value": c.value, "name": c.name} for c in model.classes],
        # Not complete until the run's generic processors have run (the `process` step).
        **({prop.PROCESSING: "pending"} if config.processors else {}),
    }
    if model.kind is not OutputKind.CLASS_MASK:  # a flood item reads as it always did
        spec = model.spec
        common[prop.OUTPUT_KIND] = spec.kind.value
        if spec.threshold is not None:
            common[prop.THRESHOLD] = spec.threshold
        if spec.unit:
            common[prop.UNIT] = spec.unit
    return common


def publish(
    config_uri: str, *, workflow_run: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Assemble and publish a complete run; OutputsWithheld if any tile is missing."""
    from geomlops.workflows.inference.progress import shard_plans

    settings = settings or get_settings()
    conn = get_connections(settings)
    config = InferenceRunConfig.load(conn, config_uri)
    missing = {s: t for s, t in missing_by_shard(conn, config).items() if t}
    if missing:
        count = sum(len(t) for t in missing.values())
        raise OutputsWithheld(
            f"{count} of {config.tile_count} tile(s) are missing (shards "
            f"{', '.join(map(str, sorted(missing)))}): nothing is published",
            hint=f"`geomlops infer resume {config.workflow}` runs only the missing tiles",
        )
    tiles = [t for plan in shard_plans(conn, config) for t in plan.tiles]
    runs = [config.workflow]
    if workflow_run and workflow_run != config.workflow:
        runs.append(workflow_run)
    records = [
        TileRecord.model_validate(objects.read_json(conn, config.tile_record_uri(t.id)))
        for t in tiles
    ]
    ids = item_ids(config)
    stac_url = get_connections(settings).stac_url
    common = _common_properties(config, runs)
    items: list[dict[str, Any]] = []
    features: list[dict[str, Any]] = []
    covered: list[BaseGeometry] = []
    totals: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="geomlops-publish-") as tmp, gdal_env(conn):
        folder = Path(tmp)
        for scene in config.scenes:
            scene_records = [r for r in records if r.scene == scene.item_id]
            if not scene_records:
                continue
            scene_tiles = [t for t in tiles if t.scene == scene.item_id]
            cog, window = mosaic(conn, config, scene, scene_tiles, folder)
            footprint = _footprint(scene, window)
            stats = _stats(scene_records, config, _pixel_area_m2(scene, footprint, window))
            scene_features, processed = _scene_features(cog, config, scene)
            zonal = processed if config.model.kind.float_raster else None
            if zonal is not None and "above_threshold_area_km2" in zonal:
                stats["above_threshold_area_km2"] = zonal["above_threshold_area_km2"]
            covered.append(_covered(config, scene))
            for key, value in stats.items():
                if key.endswith("_km2"):
                    totals[key] = round(totals.get(key, 0.0) + value, 6)
            features += scene_features
            uri = config.uri(f"{scene.item_id}.tif")
            put_file(conn, cog, uri)
            items.append(
                _scene_item(
                    config,
                    scene,
                    ids,
                    uri,
                    cog,
                    window,
                    covered[-1],
                    stats,
                    common,
                    stac_url,
                    zonal=zonal,
                )
            )
            cog.unlink()
        geojson = folder / f"{config.workflow}.geojson"
        write_geojson({"type": "FeatureCollection", "features": features}, geojson)
        vectors_uri = config.uri(f"{config.workflow}.geojson")
        put_file(conn, geojson, vectors_uri)
        geometry = for_item(shapely.union_all(covered), settings.inference.item_geometry_vertices)
        items.append(
            _run_item(config, ids, vectors_uri, geojson, geometry, totals, common, stac_url)
        )
    with CatalogClient.from_settings(settings) as catalog:
        outcomes = {item["id"]: catalog.upsert_item(item, PREDICTIONS) for item in items}
    result = {
        "items": outcomes,
        "vectors": vectors_uri,
        "masks": [config.uri(f"{s.item_id}.tif") for s in config.scenes],
        "stats": totals,
        "outside_region": config.outside_region,
    }
    objects.write_json(conn, config.uri(PUBLISHED), result)
    log.info("published %d item(s): %s", len(items), ", ".join(outcomes))
    return result


def _scene_features(
    cog: Path, config: InferenceRunConfig, scene: ScenePin
) -> tuple[list[dict], dict[str, Any]]:
    """The scene mosaic's features, tagged with scene and date, and its post-processing stats.

    One feature per class (a class mask), or the polygons above the declared threshold (a
    probability or continuous value, whose statistics are its zonal ones).
    """
    spec = config.model.spec
    with rasterio.open(cog) as src:
        values = src.read(1)
        transform, crs = src.transform, src.crs
    options: dict[str, Any] = {
        "min_area_m2": config.min_area_m2,
        "simplify_tolerance_m": config.simplify_tolerance_m,
    }
    if spec.kind is OutputKind.CLASS_MASK:
        options["skip_values"] = config.vector_skip_values
    processed = postprocess(
        spec,
        RasterPrediction(values, transform, crs, nodata=raster_nodata(spec.kind)),
        options=options,
        clip=shape(config.request.aoi),
    )
    out = []
    for data in processed.features(geometry=unparsed_geometry):
        data["properties"].update(
            scene=scene.item_id,
            datetime=scene.datetime,
            outside_region=config.outside_region,
        )
        out.append(data)
    return out, processed.stats


def _scene_item(
    config: InferenceRunConfig,
    scene: ScenePin,
    ids: dict[str, str],
    uri: str,
    cog: Path,
    window: Window,
    geometry: BaseGeometry,
    stats: dict[str, Any],
    common: dict[str, Any],
    stac_url: str,
    *,
    zonal: dict[str, Any] | None = None,
) -> dict[str, Any]:
    transform = rasterio.windows.transform(window, rasterio.Affine(*scene.transform))
    crs = CRS.from_user_input(scene.crs)
    epsg = crs.to_epsg()
    asset = {
        "href": uri,
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "roles": ["data"],
        "title": "Class mask (255 = no data or cloud)",
        "file:size": cog.stat().st_size,
        "file:checksum": file_checksum(cog),
    }
    extensions = [PROCESSING_SCHEMA, PROJECTION_SCHEMA, FILE_SCHEMA]
    extra: dict[str, Any] = {}
    if zonal is not None:  # a probability or continuous output
        spec = config.model.spec
        asset["title"] = f"{spec.kind.value.capitalize()} (float32, NaN = no data or cloud)"
        asset[prop.COLORMAP] = spec.colormap
        with rasterio.open(cog) as src:
            statistics = band_statistics(src.read(1))
        band: dict[str, Any] = {"data_type": "float32", "nodata": "nan", "statistics": statistics}
        if spec.unit:
            band["unit"] = spec.unit
        asset["raster:bands"] = [band]
        extensions.append(RASTER_SCHEMA)
        extra[prop.ZONAL] = zonal
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": extensions,
        "id": ids[scene.item_id],
        "collection": PREDICTIONS,
        "geometry": mapping(geometry),
        "bbox": list(geometry.bounds),
        "properties": {
            "datetime": scene.datetime,
            "title": f"{config.model.name} v{config.model.version} on {scene.item_id}",
            **common,
            prop.SCENE: scene.item_id,
            prop.STATS: stats,
            **extra,
            **({"proj:code": f"EPSG:{epsg}"} if epsg else {"proj:wkt2": crs.to_wkt()}),
            "proj:shape": [int(window.height), int(window.width)],
            "proj:transform": list(transform)[:6],
        },
        "links": [
            _link(stac_url, "derived_from", MODELS, config.model.item_id, "model version"),
            _link(stac_url, "derived_from", IMAGERY, scene.item_id, "source scene"),
            _link(stac_url, "related", PREDICTIONS, ids[""], "the run's polygons"),
        ],
        "assets": {"mask": asset},
    }


def _run_item(
    config: InferenceRunConfig,
    ids: dict[str, str],
    uri: str,
    geojson: Path,
    geometry: BaseGeometry,
    totals: dict[str, float],
    common: dict[str, Any],
    stac_url: str,
) -> dict[str, Any]:
    times = sorted(s.datetime for s in config.scenes)
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [PROCESSING_SCHEMA, FILE_SCHEMA],
        "id": ids[""],
        "collection": PREDICTIONS,
        "geometry": mapping(geometry),
        "bbox": list(geometry.bounds),
        "properties": {
            "datetime": None,
            "start_datetime": times[0],
            "end_datetime": times[-1],
            "title": f"{config.model.name} v{config.model.version}: polygons of run "
            f"{config.workflow}",
            **common,
            prop.STATS: totals,
            prop.SCENES: [s.item_id for s in config.scenes],
        },
        "links": [
            _link(stac_url, "derived_from", MODELS, config.model.item_id, "model version"),
            *(
                _link(stac_url, "derived_from", IMAGERY, s.item_id, "source scene")
                for s in config.scenes
            ),
            *(
                _link(stac_url, "item", PREDICTIONS, ids[s.item_id], "per-scene mask")
                for s in config.scenes
            ),
        ],
        "assets": {
            "vectors": {
                "href": uri,
                "type": "application/geo+json",
                "roles": ["data"],
                "title": "Predicted polygons per class and scene (GeoJSON, EPSG:4326)",
                "file:size": geojson.stat().st_size,
                "file:checksum": file_checksum(geojson),
            }
        },
    }
